"""Smoke test of a deployed release: one prediction and one explanation through the gateway.

Uses Seldon's own ``SeldonClient``, so the paths are exactly the ones users call:
``/seldon/<ns>/<model>/api/v1.0/predictions`` and, for the explainer, either the explainer
SeldonDeployment's predictions path (chart mode ``component``) or Seldon's
``/seldon/<ns>/<model>-explainer/<predictor>/api/v1.0/explain`` (mode ``native``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import requests
from seldon_core.seldon_client import SeldonClient, SeldonClientPrediction

from glassbox.deploy.errors import ClusterUnreachable, NotAvailable

# One applicant in alibi's encoding (the classic Seldon income demo's first row).
SAMPLE_ROW = [52.0, 4.0, 0.0, 2.0, 8.0, 4.0, 2.0, 0.0, 0.0, 0.0, 60.0, 9.0]


@dataclass(frozen=True)
class SmokeResult:
    probabilities: dict[str, float]
    anchor: list[str] | None


def _call(what: str, fn, **kwargs) -> dict:
    try:
        result: SeldonClientPrediction = fn(**kwargs)
    except requests.RequestException as exc:
        raise ClusterUnreachable(f"{what}: gateway unreachable: {exc}") from None
    if not result.success or not isinstance(result.response, dict):
        raise NotAvailable(f"{what} failed: {result.msg or 'no JSON answer'}")
    return result.response


def check_prediction(response: dict) -> dict[str, float]:
    """Class name -> probability from a predict answer; raises unless it is one row summing to 1."""
    data = response.get("data") or {}
    names, rows = data.get("names") or [], data.get("ndarray") or []
    if len(rows) != 1 or len(rows[0]) != len(names) or not names:
        raise NotAvailable(f"predict answered an unexpected shape: {json.dumps(response)[:300]}")
    probabilities = {str(n): float(p) for n, p in zip(names, rows[0], strict=True)}
    if not math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-3):
        raise NotAvailable(f"predict's probabilities do not sum to 1: {probabilities}")
    return probabilities


def check_explanation(response: dict) -> list[str]:
    """The anchor from the Glassbox explainer's jsonData/strData or Seldon's native explainer."""
    if isinstance(response.get("jsonData"), dict) and response["jsonData"].get("explanations"):
        anchor = response["jsonData"]["explanations"][0].get("anchor")
    elif "strData" in response:
        anchor = json.loads(response["strData"]).get("names")
    else:  # Seldon's alibi explainer server: alibi's Explanation as JSON
        anchor = (response.get("data") or {}).get("anchor")
    if not isinstance(anchor, list):
        raise NotAvailable(f"explain answered no anchor: {json.dumps(response)[:300]}")
    return [str(a) for a in anchor]


def smoke(
    client: SeldonClient,
    model: str,
    explainer: str | None = None,
    native_explainer_predictor: str | None = None,
    row: list[float] = SAMPLE_ROW,
) -> SmokeResult:
    """Predict once; explain once unless neither ``explainer`` nor a native predictor is given."""
    data = np.array([row])
    probabilities = check_prediction(
        _call(f"predict on {model}", client.predict, deployment_name=model, data=data, payload_type="ndarray")
    )
    anchor = None
    if explainer:
        answer = _call(
            f"explain on {explainer}",
            client.predict,
            deployment_name=explainer,
            data=data,
            payload_type="ndarray",
        )
        anchor = check_explanation(answer)
    elif native_explainer_predictor:
        answer = _call(
            f"explain on {model}-explainer",
            client.explain,
            deployment_name=model,
            predictor=native_explainer_predictor,
            data=data,
            payload_type="ndarray",
        )
        anchor = check_explanation(answer)
    return SmokeResult(probabilities=probabilities, anchor=anchor)
