"""Ask the explainer microservice for a record's explanation (docs/contracts.md, docs/explain.md).

The queue asks for the methods it is configured with (``explain_methods``: anchors, attributions,
counterfactuals) in ``meta.tags.explain``; asking for anchors alone sends no ``method`` at all, so an
explainer that predates the other methods is still asked the way it understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from glassbox.contract.explanations import METHODS
from glassbox.errors import UpstreamUnavailable

__all__ = ["METHODS", "ExplainerRefused", "explain_options", "fetch_explanation", "method_of"]
# What an explanation was computed with when it does not say (an explainer from before ``method``).
ANCHOR_METHOD = "AnchorTabular"
# 4xx answers that say "later", not "never".
TRANSIENT_4XX = frozenset({408, 425, 429})


class ExplainerRefused(UpstreamUnavailable):
    """The explainer answered 4xx (other than 408/425/429): asking again the same way will not help."""


def seldon_request(record: dict[str, Any]) -> dict[str, Any]:
    """The Seldon request the model saw for this record: its encoded features, in feature order."""
    return {"data": {"names": list(record["features"]), "ndarray": [list(record["features"].values())]}}


def explain_options(
    methods: Sequence[str], params: dict[str, Any] | None = None, counterfactuals: int = 1
) -> dict[str, Any]:
    """The ``meta.tags.explain`` object asking for ``methods`` (empty for the explainer's default)."""
    options: dict[str, Any] = {}
    if list(methods) != ["anchors"]:
        options["method"] = list(methods)
    if params:
        options["params"] = dict(params)
    if "counterfactuals" in methods:
        options["counterfactuals"] = {"k": counterfactuals}
    return options


def explain_request(record: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
    body = seldon_request(record)
    if options:
        body["meta"] = {"tags": {"explain": options}}
    return body


def method_of(explanation: dict[str, Any]) -> str:
    """The method(s) an explanation holds, for the lineage: ``AnchorTabular`` (anchors alone, or an
    explainer from before issue 13) or e.g. ``anchors+attributions``."""
    methods = explanation.get("methods")
    if isinstance(methods, list) and methods and methods != ["anchors"]:
        return "+".join(str(m) for m in methods)
    return ANCHOR_METHOD if "anchor" in explanation else "unknown"


def fetch_explanation(
    explainer_url: str,
    record: dict[str, Any],
    timeout: float,
    options: dict[str, Any] | None = None,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """The first explanation of the explainer's ``jsonData``.

    ``ExplainerRefused`` for a permanent refusal (a 4xx naming the problem), ``UpstreamUnavailable``
    for anything that may pass (no answer, a 5xx, 408/425/429, an answer without an explanation).
    """
    url = f"{explainer_url.rstrip('/')}/api/v1.0/predictions"
    try:
        answer = (session or requests).post(url, json=explain_request(record, options), timeout=timeout)
    except requests.RequestException as exc:
        raise UpstreamUnavailable(f"explainer at {url} unreachable: {exc}") from exc
    code = answer.status_code
    if code != 200:
        message = f"explainer answered {code}: {answer.text.strip()[:500]}"
        if 400 <= code < 500 and code not in TRANSIENT_4XX:
            raise ExplainerRefused(message)
        raise UpstreamUnavailable(message)
    try:
        explanation = answer.json()["jsonData"]["explanations"][0]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise UpstreamUnavailable(
            f"explainer answer has no jsonData.explanations[0]: {answer.text[:300]}"
        ) from exc
    if not isinstance(explanation, dict):
        raise UpstreamUnavailable(f"explainer's explanations[0] is not an object: {answer.text[:300]}")
    return explanation
