"""Seldon's ``/metadata`` for a model version, built from its manifest (model and explainer alike)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from glassbox.contract.schema import FeatureSchema
from glassbox.errors import GlassboxError

logger = logging.getLogger(__name__)


def describe(
    artifacts: Path, answers: Literal["probabilities", "explanations"], custom: dict[str, str]
) -> dict[str, Any]:
    """Inputs (ndarray, tensor, jsonData with category names) and outputs of a component serving the
    version at ``artifacts``. Seldon asks before ``load()``, so only the manifest is read (no unpickling)."""
    from glassbox.pipeline.artifacts import read_manifest, resolve_version_dir

    try:
        manifest = read_manifest(resolve_version_dir(artifacts))
    except GlassboxError as exc:  # load() fails loudly on the same problem
        logger.error("no model metadata: %s", exc.message)
        return {"name": "loanclassifier", "platform": "seldon"}
    schema = FeatureSchema.from_manifest(manifest)
    names, classes = list(schema.feature_names), list(schema.class_names)
    features = {
        name: {"type": "categorical", "categories": list(schema.categories[j])}
        if schema.is_categorical(j)
        else {"type": "numeric"}
        for j, name in enumerate(names)
    }
    return {
        "name": manifest.name,
        "versions": [manifest.version],
        "platform": "seldon",
        "inputs": [
            {"messagetype": "ndarray", "schema": {"names": names, "shape": [len(names)]}},
            {"messagetype": "tensor", "schema": {"names": names, "shape": [len(names)]}},
            {"messagetype": "jsonData", "schema": {"type": "object", "properties": features}},
        ],
        "outputs": [
            {"messagetype": "ndarray", "schema": {"names": classes, "shape": [len(classes)]}}
            if answers == "probabilities"
            else {"messagetype": "jsonData", "schema": {"type": "object", "required": ["explanations"]}}
        ],
        "custom": {"artifact_sha256": manifest.artifact_sha256, **custom},
    }
