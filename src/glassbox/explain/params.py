"""The parameters of one explanation, validated: a typo or an out-of-range value is a 400, not a 500."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glassbox.errors import InvalidInput


class ExplainParams(BaseModel):
    """AnchorTabular.explain's search parameters (alibi's defaults), frozen so they can key the cache."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.95, gt=0, le=1, description="Minimum anchor precision.")
    delta: float = Field(0.1, gt=0, lt=1, description="Significance level of the precision bound.")
    tau: float = Field(0.15, gt=0, lt=1, description="Bandit tolerance; larger converges faster.")
    batch_size: int = Field(100, ge=1, le=10_000, description="Rows per model call while sampling.")
    coverage_samples: int = Field(10_000, ge=1, le=100_000, description="Samples used to estimate coverage.")
    beam_size: int = Field(1, ge=1, le=10, description="Candidate anchors kept per step.")
    stop_on_first: bool = Field(False, description="Return the first anchor that meets the threshold.")
    max_anchor_size: int | None = Field(None, ge=1, description="Most predicates in the anchor.")
    min_samples_start: int = Field(100, ge=1, le=10_000, description="Samples drawn for each new candidate.")
    n_covered_ex: int = Field(10, ge=0, le=100, description="Examples kept per anchor in the raw output.")

    @classmethod
    def parse(cls, values: dict[str, Any] | None) -> ExplainParams:
        try:
            return cls.model_validate(values or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"bad explanation parameters: {problems}") from None

    def key(self) -> tuple:
        """A hashable identity: same parameters, same key, whatever their order in the request."""
        return tuple(sorted(self.model_dump().items()))
