"""Call the deployed model over the Seldon protocol and turn its probabilities into labels for alibi.

AnchorTabular calls its predictor ~25-60 times per explanation with ~100 rows each, so the cost of
one call is mostly HTTP and JSON. We use urllib3's connection pool directly (keep-alive, a
``Retry`` for connection errors only, connect/read timeouts): it is the pool ``requests`` is built
on, minus ``requests``' per-call layers, which cost 1-2 ms of a ~5 ms call here (measured, see
docs/explain.md). A read timeout is never retried: the model may be busy, not gone.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import numpy as np
import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, TimeoutError

from glassbox.contract.labels import argmax_like_sklearn
from glassbox.contract.seldon import EXPLAINER_TRAFFIC, TRAFFIC_HEADER
from glassbox.errors import GlassboxError, UpstreamUnavailable


class BadModelAnswer(GlassboxError):
    """The model answered, but not with probabilities we can use."""

    status_code = 502


class ModelMismatch(GlassboxError):
    """The model serves another artifact, or other classes, than the explainer was fitted for."""

    status_code = 502


class RemotePredictor:
    """``predictor(X) -> labels``: posts ``X`` to the model's predictions endpoint, argmaxes the answer."""

    def __init__(
        self,
        url: str,
        feature_names: Sequence[str],
        class_names: Sequence[str],
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 10.0,
        retries: int = 2,
        pool_size: int = 8,
        artifact_sha256: str | None = None,
        max_rows_per_call: int = 1000,
    ):
        self.url = url
        self.feature_names = list(feature_names)
        self.class_names = list(class_names)
        self.timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self.artifact_sha256 = artifact_sha256
        retry = urllib3.Retry(
            total=retries,
            connect=retries,
            read=0,
            status=0,
            other=0,
            backoff_factor=0.1,
            raise_on_status=False,
        )
        self.pool = urllib3.PoolManager(maxsize=pool_size, retries=retry, timeout=self.timeout)
        # The model neither forwards nor counts requests so marked (docs/contracts.md).
        self.headers = {"Content-Type": "application/json", TRAFFIC_HEADER: EXPLAINER_TRAFFIC}
        self.max_rows_per_call = max_rows_per_call
        # The artifact_sha256 the model's last answer to this thread named; attributions check it.
        self._last = threading.local()

    def __call__(self, X: np.ndarray) -> np.ndarray:
        # The pipeline's own rule (ties to the first class, like sklearn), so remote labels match local ones.
        return argmax_like_sklearn(self.predict_proba(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(X)
        if len(X) <= self.max_rows_per_call:
            return self._call(X)
        # Batched draws can exceed what the model takes in one request (its GLASSBOX_MODEL_MAX_ROWS).
        chunks = range(0, len(X), self.max_rows_per_call)
        return np.concatenate([self._call(X[i : i + self.max_rows_per_call]) for i in chunks])

    def _body(self, X: np.ndarray) -> str:
        """The request body for ``X`` (the V2 predictor, ``remote_v2``, sends V2 tensors instead)."""
        return json.dumps({"data": {"names": self.feature_names, "ndarray": X.tolist()}})

    def _call(self, X: np.ndarray) -> np.ndarray:
        body = self._body(X)
        try:
            response = self.pool.request("POST", self.url, body=body, headers=self.headers)
        except (TimeoutError, MaxRetryError, HTTPError) as exc:
            raise UpstreamUnavailable(self._unavailable(exc)) from None
        if response.status != 200:
            text = response.data[:300].decode(errors="replace")
            problem = f"model at {self.url} answered {response.status}: {text}"
            # A 4xx means the model refused what we sent: not "down", and retrying will not help.
            raise BadModelAnswer(problem) if response.status < 500 else UpstreamUnavailable(problem)
        return self._probabilities(response.data, X.shape[0])

    def _unavailable(self, exc: Exception) -> str:
        reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
        # NewConnectionError subclasses ConnectTimeoutError in urllib3 2.x: test for "refused" first.
        if isinstance(reason, TimeoutError) and not isinstance(reason, NewConnectionError):
            limits = f"connect {self.timeout.connect_timeout}s, read {self.timeout.read_timeout}s"
            return f"model at {self.url} did not answer within the timeouts ({limits}): {reason}"
        return f"model at {self.url} is unreachable: {reason}"

    def _probabilities(self, content: bytes, n_rows: int) -> np.ndarray:
        try:
            message = json.loads(content)
            data = message["data"]
            if "ndarray" in data:
                probabilities = np.asarray(data["ndarray"], dtype=np.float64)
            else:
                tensor = data["tensor"]
                probabilities = np.asarray(tensor["values"], dtype=np.float64).reshape(tensor["shape"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadModelAnswer(f"model at {self.url} sent an unreadable answer: {exc!r}") from None
        if probabilities.shape != (n_rows, len(self.class_names)):
            raise BadModelAnswer(
                f"model at {self.url} sent probabilities of shape {probabilities.shape}, "
                f"expected ({n_rows}, {len(self.class_names)})"
            )
        names = data.get("names")
        if names and list(names) != self.class_names:
            raise ModelMismatch(f"model classes {names} differ from the explainer's {self.class_names}")
        remote_sha = (message.get("meta") or {}).get("tags", {}).get("artifact_sha256")
        self._last.artifact_sha256 = remote_sha if isinstance(remote_sha, str) else None
        if self.artifact_sha256 and remote_sha and remote_sha != self.artifact_sha256:
            # An explanation of another model version would be silently wrong: refuse it.
            raise ModelMismatch(
                f"model serves artifact {remote_sha[:12]}, "
                f"the explainer was fitted for {self.artifact_sha256[:12]}"
            )
        return probabilities

    @property
    def last_artifact_sha256(self) -> str | None:
        """The ``artifact_sha256`` the model's last answer on this thread named (None: it named none)."""
        return getattr(self._last, "artifact_sha256", None)

    def close(self) -> None:
        self.pool.clear()
