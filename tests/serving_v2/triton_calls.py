"""Run tritonclient calls for the tests: a JSON list of calls on stdin, a JSON list of results on stdout.

Runs in the V2 virtualenv (``.venv-v2/bin/python``), where ``tritonclient[http,grpc]`` is installed (its
gRPC client needs protobuf 6; the main virtualenv pins 5.29.5 for seldon-core). Each call is

    {"transport": "http" | "grpc", "url": "127.0.0.1:PORT", "op": "live" | "ready" | "model_ready"
     | "metadata" | "infer", "model": NAME, "version": VERSION, "inputs": [{"name", "shape", "datatype",
     "data"}], "parameters": {...}, "id": REQUEST_ID}

and its result ``{"ok": true, ...}`` or ``{"ok": false, "status": ..., "message": ...}`` for an
``InferenceServerException`` (any other exception fails the script: a test sees it).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

NUMPY = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "BYTES": np.object_}


def _client(transport: str, url: str) -> Any:
    module = httpclient if transport == "http" else grpcclient
    return module.InferenceServerClient(url=url)


def _inputs(transport: str, tensors: list[dict]) -> list:
    module = httpclient if transport == "http" else grpcclient
    built = []
    for tensor in tensors:
        infer_input = module.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
        values = np.array(tensor["data"], dtype=NUMPY[tensor["datatype"]]).reshape(tensor["shape"])
        if transport == "http":  # MLServer's REST takes JSON tensors, not Triton's binary extension
            infer_input.set_data_from_numpy(values, binary_data=False)
        else:
            infer_input.set_data_from_numpy(values)
        built.append(infer_input)
    return built


def _metadata(transport: str, answer: Any) -> dict:
    if transport == "http":
        return answer
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(answer, preserving_proto_field_name=True)


def run(call: dict) -> dict:
    transport, op = call["transport"], call["op"]
    client = _client(transport, call["url"])
    version = call.get("version", "")
    try:
        if op == "live":
            return {"ok": True, "value": client.is_server_live()}
        if op == "ready":
            return {"ok": True, "value": client.is_server_ready()}
        if op == "model_ready":
            return {"ok": True, "value": client.is_model_ready(call["model"], version)}
        if op == "metadata":
            return {
                "ok": True,
                "value": _metadata(transport, client.get_model_metadata(call["model"], version)),
            }
        if op == "infer":
            result = client.infer(
                call["model"],
                _inputs(transport, call["inputs"]),
                model_version=version,
                parameters=call.get("parameters"),
                request_id=call.get("id", ""),
            )
            response = result.get_response()
            names = [o["name"] for o in response["outputs"]] if transport == "http" else None
            if names is None:
                names = [o.name for o in response.outputs]
            outputs = {}
            for name in names:
                values = result.as_numpy(name)
                if values.dtype == np.object_:
                    values = np.vectorize(
                        lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object]
                    )(values)
                outputs[name] = values.tolist()
            return {"ok": True, "outputs": outputs}
        raise ValueError(f"unknown op {op!r}")
    except InferenceServerException as exc:
        return {"ok": False, "status": str(exc.status()), "message": exc.message()}
    finally:
        client.close()


def main() -> None:
    calls = json.load(sys.stdin)
    json.dump([run(call) for call in calls], sys.stdout)


if __name__ == "__main__":
    main()
