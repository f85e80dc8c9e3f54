"""Fetch an anchor explanation for a record from the explainer microservice (docs/contracts.md)."""

from __future__ import annotations

from typing import Any

import requests

from glassbox.errors import UpstreamUnavailable


def seldon_request(record: dict[str, Any]) -> dict[str, Any]:
    """The Seldon request the model saw for this record: its encoded features, in feature order."""
    return {"data": {"names": list(record["features"]), "ndarray": [list(record["features"].values())]}}


def fetch_explanation(explainer_url: str, record: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The first explanation of the explainer's ``jsonData``; ``UpstreamUnavailable`` on any failure."""
    url = f"{explainer_url.rstrip('/')}/api/v1.0/predictions"
    try:
        answer = requests.post(url, json=seldon_request(record), timeout=timeout)
    except requests.RequestException as exc:
        raise UpstreamUnavailable(f"explainer at {url} unreachable: {exc}") from exc
    if answer.status_code != 200:
        raise UpstreamUnavailable(f"explainer answered {answer.status_code}: {answer.text[:300]}")
    try:
        return answer.json()["jsonData"]["explanations"][0]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise UpstreamUnavailable(
            f"explainer answer has no jsonData.explanations[0]: {answer.text[:300]}"
        ) from exc
