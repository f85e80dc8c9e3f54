"""Load the configured table and encode it the way ``alibi.datasets.fetch_adult`` does.

Alibi's encoding is the contract every part speaks (an instance is 12 floats, categoricals as integer
codes), so this module reproduces it step for step: read with the same separator, fill empty cells
with ``?`` (kept as a category), regroup values, drop columns, then label-encode each categorical
column in sorted order (``LabelEncoder``). ``tests/pipeline/test_data.py`` proves equality with
alibi's own function fed the bundled file. Nothing here downloads anything.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import LabelEncoder

from glassbox.errors import ConfigError
from glassbox.pipeline.config import TrainingConfig


@dataclass
class Dataset:
    """The encoded table: ``X[i]`` is the row at position ``row_index[i]`` of the CSV (0-based data rows)."""

    X: np.ndarray  # float64 (n, n_features), alibi's encoding
    y: np.ndarray  # int64 (n,), 1 = positive class
    row_index: np.ndarray  # int64 (n,), original data-row position in the file
    feature_names: list[str]
    feature_types: dict[str, str]
    category_map: dict[int, list[str]]  # column index -> category names in code order
    class_names: list[str]  # [negative, positive]
    data_sha256: str

    @property
    def categorical_columns(self) -> list[int]:
        return sorted(self.category_map)

    @property
    def numeric_columns(self) -> list[int]:
        return [i for i in range(len(self.feature_names)) if i not in self.category_map]

    def group_labels(self, attribute: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Category names of a categorical feature for every row (or the given positions)."""
        col = self.feature_names.index(attribute)
        codes = self.X[:, col] if rows is None else self.X[rows, col]
        names = np.asarray(self.category_map[col], dtype=object)
        return names[codes.astype(int)]


def read_source(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz: the hash is over the uncompressed table."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"dataset.path: file not found: {path}") from None
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def read_frame(config: TrainingConfig, content: bytes) -> pd.DataFrame:
    """Raw columns as strings (categoricals) and numbers (numerics), before any regrouping."""
    ds = config.dataset
    if not content.strip():
        raise ConfigError(f"dataset.path: {ds.path} is empty")
    categorical = [name for name, kind in config.features.items() if kind == "categorical"]
    str_columns = [*categorical, config.target.column]
    try:
        frame = pd.read_csv(
            io.BytesIO(content),
            names=ds.columns if not ds.header else None,
            header=0 if ds.header else None,
            sep=ds.delimiter,
            engine="python" if len(ds.delimiter) > 1 else "c",
            dtype={name: str for name in str_columns} if ds.header or ds.columns else None,
            skipinitialspace=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise ConfigError(f"dataset.path: cannot read {ds.path} as CSV: {exc}") from None
    if frame.empty:
        raise ConfigError(f"dataset.path: {ds.path} has no data rows")
    wanted = [*config.features, config.target.column, *ds.drop, *ds.regroup]
    missing = [name for name in dict.fromkeys(wanted) if name not in frame.columns]
    if missing:
        raise ConfigError(f"dataset: column(s) {missing} not in {ds.path}; it has {list(frame.columns)}")
    return frame


def encode(config: TrainingConfig, frame: pd.DataFrame) -> tuple[np.ndarray, dict[int, list[str]]]:
    """Features in alibi's encoding and the category map (codes = sorted order of the names)."""
    ds = config.dataset
    columns: list[np.ndarray] = []
    category_map: dict[int, list[str]] = {}
    for index, (name, kind) in enumerate(config.features.items()):
        series = frame[name]
        if kind == "numeric":
            values = pd.to_numeric(series, errors="coerce")
            bad = series[values.isna() & series.notna()]
            if len(bad):
                raise ConfigError(
                    f"features.{name}: declared numeric but row {bad.index[0]} holds {bad.iloc[0]!r}"
                )
            columns.append(values.to_numpy(dtype=np.float64))
            continue
        values = series.fillna(ds.missing_value).astype(str)
        groups = ds.regroup.get(name)
        if groups:
            values = values.map(lambda v, g=groups: g.get(v, v))
        encoder = LabelEncoder()
        columns.append(encoder.fit_transform(values.to_numpy()).astype(np.float64))
        category_map[index] = [str(c) for c in encoder.classes_]
    return np.column_stack(columns), category_map


def encode_target(config: TrainingConfig, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    target = config.target
    values = frame[target.column].fillna(config.dataset.missing_value).astype(str)
    classes = sorted(values.unique())
    if len(classes) < 2:
        raise ConfigError(f"target.column: {target.column!r} has a single class {classes}; need two")
    if target.positive not in classes:
        raise ConfigError(
            f"target.positive: {target.positive!r} never occurs in {target.column!r}: {classes}"
        )
    if len(classes) > 2:
        raise ConfigError(f"target.column: {target.column!r} has {len(classes)} classes {classes}; need two")
    negative = next(c for c in classes if c != target.positive)
    return (values == target.positive).to_numpy(dtype=np.int64), [negative, target.positive]


def load_dataset(config: TrainingConfig) -> Dataset:
    """Read, validate and encode the configured dataset (the one function other parts reuse)."""
    content = read_source(config.dataset.path)
    frame = read_frame(config, content)
    X, category_map = encode(config, frame)
    y, class_names = encode_target(config, frame)
    return Dataset(
        X=X,
        y=y,
        row_index=frame.index.to_numpy(dtype=np.int64),
        feature_names=config.feature_names,
        feature_types=dict(config.features),
        category_map=category_map,
        class_names=class_names,
        data_sha256=hashlib.sha256(content).hexdigest(),
    )
