"""Rows to explain: checked against the model's schema, encoded for alibi, decoded for people.

A row arrives in alibi's encoding (12 numbers, categoricals as codes into ``category_map``) or as a
mapping ``{feature name: value}`` whose categoricals may be given by name. Every problem is an
``InvalidInput`` that names the row and the feature.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from glassbox.errors import InvalidInput
from glassbox.pipeline.data import decode_row


class FeatureSchema:
    """Feature order and categories of one model version (manifest ``feature_names``, ``category_map``)."""

    def __init__(self, feature_names: Sequence[str], category_map: Mapping[Any, Sequence[str]]):
        self.feature_names = list(feature_names)
        # The manifest stores alibi's map with JSON (string) keys; index it by column position.
        self.categories = {int(k): list(v) for k, v in category_map.items()}

    def encode_rows(self, rows: Any, names: Sequence[str] | None = None) -> np.ndarray:
        """An (n, n_features) float64 array from a list of rows, an array, or a list of mappings."""
        if isinstance(rows, np.ndarray) and rows.dtype.kind in "fiu":
            array = np.atleast_2d(rows).astype(np.float64)
        else:
            if isinstance(rows, np.ndarray):
                rows = rows.tolist()
            if isinstance(rows, Mapping):
                rows = [rows]
            if not isinstance(rows, list) or not rows:
                raise InvalidInput("no rows to explain: send at least one row")
            if all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rows):
                rows = [rows]  # a single flat row
            array = np.array([self._encode_row(i, row) for i, row in enumerate(rows)], dtype=np.float64)
        if names:
            self._check_names(names)
        if array.ndim != 2 or array.shape[1] != len(self.feature_names):
            width = array.shape[-1] if array.ndim else 0
            raise InvalidInput(
                f"each row needs {len(self.feature_names)} features {self.feature_names}, got {width}"
            )
        for i, row in enumerate(array):
            self._check_encoded(i, row)
        return array

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        """``{feature: readable value}``: category names for categoricals, ints where the value is whole."""
        return decode_row(row, self.feature_names, self.categories)

    def _check_names(self, names: Sequence[str]) -> None:
        if list(names) != self.feature_names:
            raise InvalidInput(
                f"data.names must be the model's features in order {self.feature_names}, got {list(names)}"
            )

    def _encode_row(self, i: int, row: Any) -> list[float]:
        if isinstance(row, Mapping):
            unknown = sorted(set(row) - set(self.feature_names))
            missing = [f for f in self.feature_names if f not in row]
            if unknown or missing:
                raise InvalidInput(f"row {i}: unknown features {unknown}, missing features {missing}")
            return [self._encode_value(i, j, row[name]) for j, name in enumerate(self.feature_names)]
        if not isinstance(row, (list, tuple)):
            raise InvalidInput(
                f"row {i}: expected a list of {len(self.feature_names)} numbers or a mapping, got {row!r}"
            )
        if len(row) != len(self.feature_names):
            raise InvalidInput(
                f"row {i}: needs {len(self.feature_names)} features {self.feature_names}, got {len(row)}"
            )
        return [self._encode_value(i, j, value) for j, value in enumerate(row)]

    def _encode_value(self, i: int, j: int, value: Any) -> float:
        name = self.feature_names[j]
        if isinstance(value, str) and j in self.categories:
            try:
                return float(self.categories[j].index(value))
            except ValueError:
                raise InvalidInput(f"row {i}: {name}={value!r} is not one of {self.categories[j]}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"row {i}: {name} must be a number, got {value!r}")
        return float(value)

    def _check_encoded(self, i: int, row: np.ndarray) -> None:
        for j, value in enumerate(row):
            name = self.feature_names[j]
            if not math.isfinite(value):
                raise InvalidInput(f"row {i}: {name} is {value}, not a finite number")
            if j in self.categories:
                n = len(self.categories[j])
                if not float(value).is_integer() or not 0 <= value < n:
                    raise InvalidInput(f"row {i}: {name}={value} is not a category code in 0..{n - 1}")
