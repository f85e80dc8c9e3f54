"""Seldon protocol <-> ``ExplainRequest``: the request shapes the explainer accepts and the answers it gives.

Rows come as the model's own request (``data.ndarray``/``data.tensor``, optional ``data.names``) with
options in ``meta.tags.explain``, or as ``jsonData`` holding rows and options together. See
docs/explain.md for examples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glassbox.errors import InvalidInput
from glassbox.explain.instances import FeatureSchema
from glassbox.explain.params import ExplainParams
from glassbox.explain.service import ExplainRequest


class ExplainOptions(BaseModel):
    """How to explain: in ``meta.tags.explain`` or beside the rows in ``jsonData``."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="AnchorTabular.explain parameters.")
    seed: int | None = Field(None, description="RNG seed; the default is GLASSBOX_EXPLAINER_SEED.")
    job: Literal["submit"] | None = Field(None, description="'submit': answer with a job handle at once.")


class ExplainJson(ExplainOptions):
    """A ``jsonData`` request: rows to explain, or ``job_id`` alone to poll a job."""

    instances: list[Any] | None = Field(
        None, description="Rows: lists in alibi's encoding or {feature: value}."
    )
    names: list[str] | None = Field(None, description="Feature names of list rows, in the model's order.")
    job_id: str | None = Field(None, description="Poll this job instead of explaining.")


def parse_request(
    features: Any, names: Sequence[str] | None, meta: Mapping[str, Any] | None, schema: FeatureSchema
) -> ExplainRequest:
    """The ``ExplainRequest`` in what Seldon's wrapper hands to ``predict(X, names, meta)``."""
    if isinstance(features, Mapping):
        body = _validate(ExplainJson, features, "jsonData")
        if body.job_id is not None:
            if body.instances is not None:
                raise InvalidInput("send either jsonData.job_id (to poll) or jsonData.instances, not both")
            return ExplainRequest(job_id=body.job_id)
        if body.instances is None:
            raise InvalidInput("jsonData needs 'instances' (rows to explain) or 'job_id' (a job to poll)")
        return _request(schema.encode_rows(body.instances, body.names), body)
    if isinstance(features, (str, bytes)):
        raise InvalidInput("strData/binData are not explained: send data.ndarray, data.tensor or jsonData")
    if not isinstance(features, np.ndarray) or features.size == 0:
        raise InvalidInput("no rows to explain: send data.ndarray, data.tensor or jsonData.instances")
    tags = (meta or {}).get("tags") or {}
    options = _validate(ExplainOptions, tags.get("explain") or {}, "meta.tags.explain")
    return _request(schema.encode_rows(features, names or None), options)


def to_seldon(body: dict[str, Any], response_format: str) -> dict[str, Any] | str:
    """jsonData (a dict) or, for the classic demo's callers, a JSON string for strData."""
    if response_format == "strData" and "explanations" in body:
        return json.dumps(
            {"names": body["names"], "precision": body["precision"], "coverage": body["coverage"]}
        )
    return body


def _request(rows: np.ndarray, options: ExplainOptions) -> ExplainRequest:
    return ExplainRequest(
        rows=rows,
        params=ExplainParams.parse(options.params),
        seed=options.seed,
        submit=options.job == "submit",
    )


def _validate[M: BaseModel](model: type[M], value: Any, where: str) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or where}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad {where}: {problems}") from None
