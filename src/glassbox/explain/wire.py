"""Seldon protocol <-> ``ExplainRequest``: the request shapes the explainer accepts and the answers it gives.

Rows come as the model's own request (``data.ndarray``/``data.tensor``, optional ``data.names``, or
``jsonData`` records) with options in ``meta.tags.explain``, or as ``jsonData`` holding rows and options
together (``{"instances": [...], "params": ...}``). Rows are parsed by the contract's parser, so a bad row
gets the same 400 message here as from the model. See docs/explain.md for examples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glassbox.contract.explanations import ExplainMethods
from glassbox.contract.payload import parse_request, parse_rows, request_meta
from glassbox.contract.schema import FeatureSchema, RejectedInput
from glassbox.explain.params import ExplainParams
from glassbox.explain.service import ExplainRequest


class ExplainOptions(BaseModel):
    """How to explain: in ``meta.tags.explain`` or beside the rows in ``jsonData``."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="AnchorTabular.explain parameters.")
    seed: int | None = Field(None, description="RNG seed; the default is GLASSBOX_EXPLAINER_SEED.")
    job: Literal["submit"] | None = Field(None, description="'submit': answer with a job handle at once.")
    method: Any = Field(
        None, description="'anchors' (default), 'attributions', 'counterfactuals', or a list of them."
    )
    attributions: Any = Field(None, description='{"classes": "predicted" | "all"}.')
    reason_codes: Any = Field(None, description='{"top_k": 1..12} (they come with attributions).')
    counterfactuals: Any = Field(
        None, description='{"k": 1..10, "method": "random" | "genetic", "sample_size", "max_iterations"}.'
    )


class ExplainJson(ExplainOptions):
    """A ``jsonData`` request: rows to explain, or ``job_id`` alone to poll a job."""

    instances: Any = Field(None, description="Rows: lists in alibi's encoding or {feature: value}.")
    names: Any = Field(None, description="Feature names of list rows, in the order the rows give them.")
    job_id: str | None = Field(None, description="Poll this job instead of explaining.")


# A jsonData object holding any of these is the explainer's own shape; any other is a model request.
EXPLAIN_KEYS = frozenset(ExplainJson.model_fields)


def parse_payload(payload: Any, schema: FeatureSchema, max_rows: int) -> ExplainRequest:
    """The ``ExplainRequest`` in a Seldon request body, or ``RejectedInput`` (400) naming the problem."""
    if not isinstance(payload, Mapping):
        raise RejectedInput(
            "bad_payload", f"the request body must be a JSON object, got {type(payload).__name__}"
        )
    json_data = payload.get("jsonData")
    if isinstance(json_data, Mapping) and EXPLAIN_KEYS & json_data.keys():
        body = _validate(ExplainJson, json_data, "jsonData")
        if body.job_id is not None:
            if body.instances is not None:
                raise RejectedInput(
                    "bad_payload", "send either jsonData.job_id (to poll) or jsonData.instances, not both"
                )
            return ExplainRequest(job_id=body.job_id)
        if body.instances is None:
            raise RejectedInput(
                "bad_payload", "jsonData needs 'instances' (rows to explain) or 'job_id' (a job to poll)"
            )
        rows = parse_rows(body.instances, schema, max_rows, body.names, "jsonData.instances")
        return _request(rows, body, "jsonData")
    if "jsonData" not in payload and "data" not in payload and ("strData" in payload or "binData" in payload):
        raise RejectedInput(
            "bad_payload", "strData/binData are not explained: send data.ndarray, data.tensor or jsonData"
        )
    tags = request_meta(payload).get("tags") or {}
    options = _validate(ExplainOptions, tags.get("explain") or {}, "meta.tags.explain")
    return _request(parse_request(payload, schema, max_rows), options, "meta.tags.explain")


def to_seldon(body: dict[str, Any], response_format: str) -> dict[str, Any]:
    """The Seldon message: ``jsonData`` or, for the classic demo's callers, a JSON string in ``strData``."""
    if response_format == "strData" and "explanations" in body:
        return {
            "strData": json.dumps(
                {"names": body["names"], "precision": body["precision"], "coverage": body["coverage"]}
            )
        }
    return {"jsonData": body}


def _request(rows: np.ndarray, options: ExplainOptions, where: str) -> ExplainRequest:
    methods = {
        name: value
        for name in ("method", "attributions", "reason_codes", "counterfactuals")
        if (value := getattr(options, name)) is not None
    }
    return ExplainRequest(
        rows=rows,
        params=ExplainParams.parse(options.params),
        seed=options.seed,
        submit=options.job == "submit",
        methods=_validate(ExplainMethods, methods, where),
    )


def _validate[M: BaseModel](model: type[M], value: Any, where: str) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or where}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise RejectedInput("bad_options", f"bad {where}: {problems}") from None
