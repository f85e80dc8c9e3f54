"""The remote predictor against real loopback sockets: what each way of failing answers."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from glassbox.contract.seldon import TRAFFIC_HEADER
from glassbox.errors import UpstreamUnavailable
from glassbox.explain.remote import BadModelAnswer, ModelMismatch, RemotePredictor
from glassbox.stack.process import LOOPBACK, free_port

CLASSES = ["<=50K", ">50K"]


@pytest.fixture
def fake_model(answer_json):
    """A loopback HTTP server answering each POST with ``answer(rows) -> (status, body)``; records headers."""
    state = {"answer": None, "headers": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["headers"].append(dict(self.headers))
            answer_json(self, *state["answer"](request["data"]["ndarray"]))

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://{LOOPBACK}:{server.server_address[1]}/api/v1.0/predictions"
    yield state
    server.shutdown()
    server.server_close()


def probabilities(rows, tags=None, names=CLASSES):
    body = {"data": {"names": names, "ndarray": [[0.3, 0.7] for _ in rows]}, "meta": {"tags": tags or {}}}
    return 200, body


def test_labels_from_probabilities_and_the_explainer_header(fake_model):
    fake_model["answer"] = probabilities
    predictor = RemotePredictor(fake_model["url"], ["a", "b"], CLASSES, artifact_sha256="abc")
    assert predictor(np.zeros((3, 2))).tolist() == [1, 1, 1]
    sent = fake_model["headers"][-1]
    assert sent[TRAFFIC_HEADER] == "explainer"


def test_large_batches_are_split_to_the_models_row_limit(fake_model):
    sizes = []

    def answer(rows):
        sizes.append(len(rows))
        return probabilities(rows)

    fake_model["answer"] = answer
    predictor = RemotePredictor(fake_model["url"], ["a"], CLASSES, max_rows_per_call=40)
    assert len(predictor(np.zeros((100, 1)))) == 100
    assert sizes == [40, 40, 20]


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (lambda rows: (400, {"status": {"info": "bad row"}}), BadModelAnswer, "answered 400"),
        (lambda rows: (500, {"status": {"info": "boom"}}), UpstreamUnavailable, "answered 500"),
        (lambda rows: (200, {"data": {"ndarray": [[1.0]]}}), BadModelAnswer, "probabilities of shape (1, 1)"),
        (lambda rows: (200, {"strData": "?"}), BadModelAnswer, "unreadable answer"),
        (lambda rows: probabilities(rows, names=["no", "yes"]), ModelMismatch, "model classes ['no', 'yes']"),
        (
            lambda rows: probabilities(rows, tags={"artifact_sha256": "other"}),
            ModelMismatch,
            "serves artifact other",
        ),
    ],
)
def test_unusable_answers_are_named(fake_model, answer, error, message):
    fake_model["answer"] = answer
    predictor = RemotePredictor(fake_model["url"], ["a"], CLASSES, artifact_sha256="abc")
    with pytest.raises(error, match=re.escape(message)):
        predictor(np.zeros((1, 1)))


def test_refused_connection_is_503_unreachable_after_quick_retries():
    url = f"http://{LOOPBACK}:{free_port()}/api/v1.0/predictions"
    start = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match=r"is unreachable.*Connection refused") as caught:
        RemotePredictor(url, ["a"], CLASSES, retries=2)(np.zeros((1, 1)))
    assert caught.value.status_code == 503 and time.monotonic() - start < 2


def test_silent_model_times_out_without_retrying():
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen(4)
        url = f"http://{LOOPBACK}:{silent.getsockname()[1]}/api/v1.0/predictions"
        start = time.monotonic()
        with pytest.raises(
            UpstreamUnavailable, match=r"did not answer within the timeouts \(connect 2.0s, read 0.5s\)"
        ):
            RemotePredictor(url, ["a"], CLASSES, read_timeout_s=0.5, retries=3)(np.zeros((1, 1)))
        assert time.monotonic() - start < 1.5  # one read timeout (0.5 s); retried it would take >= 2 s
