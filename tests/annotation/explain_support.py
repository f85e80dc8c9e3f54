"""What the queue's tests ask the real explainer for: every method it can answer for the model under
test (issue 13), anchors alone with an explainer from before ``method`` (the request is configurable).

Attributions need the compact forest's per-node cover, which models trained before issue 13 lack (the
explainer answers 409 naming it): with such artifacts (e.g. an old ``GLASSBOX_TEST_ARTIFACTS``) the
tests ask for anchors and counterfactuals; a session that trains its own model asks for all three.
"""

from __future__ import annotations

from pathlib import Path

from glassbox.annotation.explanations import ANCHOR_METHOD, METHODS


def has_cover(artifacts: Path) -> bool:
    """Whether the model version ``artifacts/LATEST`` names has per-node cover in its compact forest."""
    import numpy as np

    version = (artifacts / "LATEST").read_text().strip()
    with np.load(artifacts / version / "compact.npz", allow_pickle=False) as arrays:
        return "cover" in arrays.files


def explainer_methods(artifacts: Path) -> list[str]:
    """The methods this tree's explainer component answers for the model in ``artifacts``."""
    from glassbox.explain.wire import ExplainOptions

    if "method" not in ExplainOptions.model_fields:
        return ["anchors"]
    return [m for m in METHODS if m != "attributions" or has_cover(artifacts)]


def queue_env(artifacts: Path) -> dict[str, str]:
    """The queue settings asking the explainer for ``explainer_methods(artifacts)``."""
    return {"GLASSBOX_QUEUE_EXPLAIN_METHODS": ",".join(explainer_methods(artifacts))}


def expected_method(artifacts: Path) -> str:
    """The lineage's ``method`` of an explanation the queue computed with ``explainer_methods()``."""
    methods = explainer_methods(artifacts)
    return ANCHOR_METHOD if methods == ["anchors"] else "+".join(methods)
