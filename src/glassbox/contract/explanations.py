"""The explainer's methods: the options a request may give and the record each row's explanation is.

Shared by the explainer (which validates requests with ``ExplainMethods`` and writes records) and the
review queue (which reads records with ``ExplanationRecord``); docs/contracts.md, "Explainer response",
describes the same shape. Everything here is pydantic and plain data: no part's internals.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

METHODS = ("anchors", "attributions", "counterfactuals")
Method = Literal["anchors", "attributions", "counterfactuals"]
DEFINITION = (
    "path-dependent TreeSHAP (Lundberg, Erion & Lee 2018, Algorithm 2): exact Shapley values of the forest's "
    "probability, a feature left out following each split in proportion to the training samples that went "
    "each way (no background sample); one-hot columns summed back to their feature"
)


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttributionOptions(_Options):
    classes: Literal["predicted", "all"] = Field(
        "predicted", description="'all' adds by_class: every class's base value and values."
    )


class ReasonCodeOptions(_Options):
    top_k: int = Field(4, ge=1, le=12, description="At most this many reasons, the strongest first.")


class CounterfactualOptions(_Options):
    k: int = Field(3, ge=1, le=10, description="At most this many diverse counterfactuals.")
    method: Literal["random", "genetic"] = Field("random", description="DiCE's search method.")
    sample_size: int = Field(
        1000, ge=10, le=10_000, description="Random method: candidates sampled per round (its budget)."
    )
    max_iterations: int = Field(
        100, ge=1, le=1000, description="Genetic method: most generations (its budget)."
    )


class ExplainMethods(_Options):
    """Which methods to run and their options (anchor parameters stay in ``params``, as before)."""

    method: tuple[Method, ...] = Field(("anchors",), description="One method or several, in any order.")
    attributions: AttributionOptions = Field(default_factory=AttributionOptions)
    reason_codes: ReasonCodeOptions = Field(default_factory=ReasonCodeOptions)
    counterfactuals: CounterfactualOptions = Field(default_factory=CounterfactualOptions)

    @field_validator("method", mode="before")
    @classmethod
    def _one_or_several(cls, value: Any) -> Any:
        if value is None:
            return ("anchors",)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            unknown = [v for v in value if v not in METHODS]
            if unknown:
                raise ValueError(f"unknown method {unknown[0]!r}; known: {', '.join(METHODS)}")
            if not value:
                raise ValueError(f"name at least one method of {', '.join(METHODS)}")
            return tuple(m for m in METHODS if m in value)  # canonical order: the same cache key
        return value

    @property
    def anchors_only(self) -> bool:
        return self.method == ("anchors",)

    def key(self) -> tuple:
        """Hashable identity: the options of the methods asked for (reason codes come with attributions)."""
        parts: list[Any] = [self.method]
        if "attributions" in self.method:
            parts += [self.attributions.classes, self.reason_codes.top_k]
        if "counterfactuals" in self.method:
            parts.append(tuple(sorted(self.counterfactuals.model_dump().items())))
        return tuple(parts)


# --- the record (one per row, in jsonData.explanations) ---------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class ClassAttribution(_Record):
    base_value: float
    values: dict[str, float]


class Attributions(_Record):
    definition: str
    class_: str = Field(alias="class")
    probability: float
    base_value: float
    values: dict[str, float] = Field(description="One value per feature, toward ``class``.")
    by_class: dict[str, ClassAttribution] | None = None


class Reason(_Record):
    feature: str
    value: Any
    contribution: float = Field(description="How much it moved the score toward the adverse class (> 0).")
    protected: bool = Field(False, description="The feature is a protected attribute of the model.")
    sentence: str


class ReasonCodes(_Record):
    adverse_class: str
    adverse: bool = Field(description="The decision is the adverse class.")
    reasons: list[Reason]


class Change(_Record):
    feature: str
    from_: Any = Field(alias="from")
    to: Any


class Counterfactual(_Record):
    changes: list[Change]
    prediction: str
    probability: float
    verified: bool = Field(description="The served model gave this prediction to the changed row.")
    sentence: str


class Counterfactuals(_Record):
    found: bool
    message: str
    items: list[Counterfactual]


class ExplanationRecord(_Record):
    """One row's explanation; anchor fields (anchor, precision, coverage, ...) are there when asked."""

    methods: list[str] = Field(default_factory=lambda: ["anchors"])
    instance: dict[str, Any]
    prediction: str
    model_version: str
    seed: int | None = None
    anchor: list[str] | None = None
    precision: float | None = None
    coverage: float | None = None
    threshold: float | None = None
    threshold_met: bool | None = None
    attributions: Attributions | None = None
    reason_codes: ReasonCodes | None = None
    counterfactuals: Counterfactuals | None = None
