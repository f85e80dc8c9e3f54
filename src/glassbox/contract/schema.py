"""A model version's input schema, taken from its manifest: feature order, types, categories.

Encoding (names to codes, with a message naming the row and feature of any bad cell) and decoding (codes
back to names, for people) live together so that every part reads and writes rows the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glassbox.errors import InvalidInput


class RejectedInput(InvalidInput):
    """A request the model refuses (HTTP 400); ``reason`` is the metric label of the rejection."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _field(manifest: Any, name: str) -> Any:
    # The manifest may be the pipeline's object or the raw manifest.json dict (init_metadata reads that).
    return manifest[name] if isinstance(manifest, Mapping) else getattr(manifest, name)


@dataclass(frozen=True)
class FeatureSchema:
    """Columns in alibi's encoding: numbers as they are, categoricals as integer codes."""

    feature_names: tuple[str, ...]
    categories: dict[int, tuple[str, ...]]  # column index -> category names in code order
    class_names: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False)
    category_codes: dict[int, dict[str, int]] = field(init=False, repr=False)
    categorical_columns: np.ndarray = field(init=False, repr=False)
    category_counts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: derived lookups are computed once here
        set_(self, "index", {name: i for i, name in enumerate(self.feature_names)})
        set_(
            self, "category_codes", {j: {c: k for k, c in enumerate(cs)} for j, cs in self.categories.items()}
        )
        columns = sorted(self.categories)
        set_(self, "categorical_columns", np.array(columns, dtype=np.intp))
        set_(self, "category_counts", np.array([len(self.categories[j]) for j in columns], dtype=np.float64))

    @classmethod
    def of(
        cls,
        feature_names: Sequence[str],
        category_map: Mapping[int | str, Sequence[str]],
        class_names: Sequence[str] = (),
    ) -> FeatureSchema:
        """From alibi's ``category_map`` (column keys as ints, or as strings as in JSON)."""
        categories = {int(j): tuple(str(c) for c in cs) for j, cs in category_map.items()}
        return cls(tuple(feature_names), categories, tuple(class_names))

    @classmethod
    def from_manifest(cls, manifest: Any) -> FeatureSchema:
        return cls.of(
            _field(manifest, "feature_names"),
            _field(manifest, "category_map"),
            _field(manifest, "class_names"),
        )

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def is_categorical(self, column: int) -> bool:
        return column in self.categories

    def decode(self, row: Sequence[float]) -> dict[str, Any]:
        """``{feature: readable value}``: category names for categoricals, ints where the value is whole."""
        return decode_row(row, self.feature_names, self.categories)

    def column_order(self, names: Sequence[str], where: str = "data.names") -> np.ndarray | None:
        """Indices that put columns sent under ``names`` into feature order (None: already in order)."""
        if list(names) == list(self.feature_names):
            return None
        unknown = [n for n in names if n not in self.index]
        if unknown:
            raise RejectedInput(
                "unknown_feature",
                f"unknown feature name(s) {', '.join(map(repr, unknown))} in {where}; "
                f"the model's features are {', '.join(self.feature_names)}",
            )
        if len(set(names)) != len(names):
            duplicated = sorted({n for n in names if list(names).count(n) > 1})
            raise RejectedInput("duplicate_feature", f"feature name(s) sent twice in {where}: {duplicated}")
        missing = [n for n in self.feature_names if n not in set(names)]
        if missing:
            raise RejectedInput("missing_feature", f"{where} lacks feature(s): {', '.join(missing)}")
        position = {n: i for i, n in enumerate(names)}
        return np.array([position[n] for n in self.feature_names], dtype=np.intp)

    def check_encoded(self, X: np.ndarray) -> None:
        """Refuse NaN/Inf anywhere and category codes outside ``category_map`` (vectorised)."""
        finite = np.isfinite(X)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise RejectedInput(
                "non_finite",
                f"row {row}, feature {self.feature_names[col]!r}: {X[row, col]} is not allowed "
                "(NaN, Infinity and null are not numbers the model can use)",
            )
        if not len(self.categorical_columns):
            return
        codes = X[:, self.categorical_columns]
        bad = (codes < 0) | (codes >= self.category_counts) | (codes != np.floor(codes))
        if bad.any():
            row, k = np.argwhere(bad)[0]
            col = int(self.categorical_columns[k])
            names = self.categories[col]
            raise RejectedInput(
                "unknown_category",
                f"row {row}, feature {self.feature_names[col]!r}: code {codes[row, k]:g} is not a category "
                f"code (expected an integer 0..{len(names) - 1} or one of {list(names)})",
            )

    def encode_value(self, row: int, column: int, value: Any) -> float:
        """One cell of a request that is not all numbers: category strings become codes."""
        name = self.feature_names[column]
        if value is None:
            raise RejectedInput("missing_value", f"row {row}, feature {name!r}: value is missing (null)")
        if isinstance(value, bool | int | float):
            return float(value)
        if isinstance(value, str) and column in self.categories:
            code = self.category_codes[column].get(value)
            if code is None:
                raise RejectedInput(
                    "unknown_category",
                    f"row {row}, feature {name!r}: unknown category {value!r} "
                    f"(expected one of {list(self.categories[column])})",
                )
            return float(code)
        if isinstance(value, str):
            raise RejectedInput(
                "not_a_number", f"row {row}, feature {name!r}: expected a number, got text {value!r}"
            )
        if isinstance(value, list | dict):
            raise RejectedInput(
                "bad_dimensions",
                f"row {row}, feature {name!r}: expected a single value, got a nested {type(value).__name__}",
            )
        raise RejectedInput("not_a_number", f"row {row}, feature {name!r}: unsupported value {value!r}")


def decode_row(
    row: Sequence[float], feature_names: Sequence[str], category_map: Mapping[int | str, Sequence[str]]
) -> dict[str, Any]:
    """One encoded row as {feature: value}, categoricals as their names (keys int or str, as in JSON)."""
    decoded: dict[str, Any] = {}
    for index, (name, value) in enumerate(zip(feature_names, row, strict=True)):
        names = category_map.get(index, category_map.get(str(index)))
        if names is None:
            decoded[name] = int(value) if float(value).is_integer() else float(value)
        else:
            decoded[name] = names[int(value)]
    return decoded
