"""Call the deployed model over the Open Inference Protocol (V2): MLServer, KServe, Seldon Core 2.

The same predictor as ``remote.RemotePredictor`` (pool, timeouts, retries on connection errors only,
chunks of at most ``max_rows_per_call``, the artifact check), with V2 bodies: the rows go as one
``[n, width]`` ``FP64`` tensor (``glassbox.contract.v2.encode_rows``) marked as explainer traffic in
the request's ``parameters``, and the probabilities come back as the ``probabilities`` output.
Chosen with ``GLASSBOX_EXPLAINER_MODEL_PROTOCOL=v2``.
"""

from __future__ import annotations

import json

import numpy as np

from glassbox.contract.seldon import EXPLAINER_TRAFFIC, TRAFFIC_TAG
from glassbox.contract.v2 import decode_probabilities, encode_rows
from glassbox.explain.remote import BadModelAnswer, ModelMismatch, RemotePredictor


class RemoteV2Predictor(RemotePredictor):
    """``predictor(X) -> labels`` for a model at a V2 infer URL (``.../v2/models/<name>/infer``)."""

    def _body(self, X: np.ndarray) -> str:
        return json.dumps({"inputs": [encode_rows(X)], "parameters": {TRAFFIC_TAG: EXPLAINER_TRAFFIC}})

    def _probabilities(self, content: bytes, n_rows: int) -> np.ndarray:
        try:
            message = json.loads(content)
            probabilities = decode_probabilities(message.get("outputs"), n_rows, len(self.class_names))
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadModelAnswer(f"model at {self.url} sent an unreadable V2 answer: {exc}") from None
        parameters = message.get("parameters") or {}
        remote_sha = parameters.get("artifact_sha256") if isinstance(parameters, dict) else None
        # What ``last_artifact_sha256`` reports (the attributions' version check), as the Seldon predictor.
        self._last.artifact_sha256 = remote_sha if isinstance(remote_sha, str) else None
        if self.artifact_sha256 and remote_sha and remote_sha != self.artifact_sha256:
            # An explanation of another model version would be silently wrong: refuse it.
            raise ModelMismatch(
                f"model serves artifact {str(remote_sha)[:12]}, "
                f"the explainer was fitted for {self.artifact_sha256[:12]}"
            )
        return probabilities
