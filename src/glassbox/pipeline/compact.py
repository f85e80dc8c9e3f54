"""The fitted preprocessing + forest, laid out for prediction and run as one compiled numba loop.

Why not onnxruntime for forests: the default recipe grows 50 unbounded trees (~480k nodes), which
onnxruntime keeps in ~20 MB. Between two requests the forest drops out of the CPU caches (the L3 is
shared with everything else on the host), and every step down a tree then waits on a miss: 100 rows
took 3.3-3.6 ms instead of 0.6 ms warm, one row 0.2 ms of mostly onnxruntime's own cold start. Here
a node is 12 bytes, ``(feature, value, far)``, and a leaf keeps the positive-class probability in
``value``. Nodes are in depth-first order taking the child more training rows went to first, so that
child is the next node and the usual path runs through consecutive memory; ``far`` is the other
child, and flags in ``feature`` say which side the next node is and where a missing value goes. The
same forest is 5.8 MB, and the cold numbers become about 1.0 ms and 0.1 ms (benchmarks/fastpath.py).

Exactness, step by step as sklearn computes it: impute NaN with the fitted statistics, scale as
``(x - mean) / scale`` in float64, one-hot by equality with the fitted categories (NaN matches a NaN
category; an unknown code gives all zeros, as ``handle_unknown="ignore"`` does), cast to float32,
then walk the trees. sklearn compares a float32 feature ``x`` with a float64 threshold ``t``;
``x <= t`` holds exactly when ``x <= t32``, ``t32`` being the largest float32 not above ``t``, which
is the threshold kept here. A NaN that reaches a tree (a column without an imputer) goes where the
node's ``missing_go_to_left`` sends it (sklearn >= 1.3); rows holding one take a second, slower loop,
so rows without NaN walk exactly the loop they did before. Leaf probabilities are float32 summed in
float64: within 1e-7 of sklearn. Inputs sklearn refuses are refused too (``InvalidInput``): infinity
in a used column, a value that overflows float32 once scaled, a NaN reaching the trees when the
ColumnTransformer's output is sparse (sklearn's trees take NaN only in dense input).

Only what ``estimator.build_preprocessor`` builds is compiled (ColumnTransformer of SimpleImputer,
StandardScaler, OneHotEncoder) in front of a two-class RandomForest/ExtraTrees classifier; anything
else keeps the ONNX fast path (``supports``). scikit-learn is imported only to compile (training):
serving loads ``compact.npz`` with numpy and numba alone, or with numpy alone when the loops were
built ahead of time (``compact_aot``: the model image does; same code, bit-identical results).

``compact.npz`` carries ``format_version`` (``FORMAT_VERSION``), checked on load. Files written
before the key existed are read as version 1 when every column the trees see is imputed: that is
what ``glassbox train`` always wrote (``build_preprocessor`` imputes every column), NaN then never
reaches a tree, and the only difference of version 2 (the missing-value flag) cannot matter. Any
other version, or a version-1 file that would let NaN reach its trees, is refused.

Since issue #13 a file may also hold ``cover`` (``OPTIONAL_ARRAYS``): float64 per node, the training
samples that reached it (sklearn's ``weighted_n_node_samples``), which path-dependent TreeSHAP needs
(``treeshap.py``) and prediction does not. It is optional within version 2: older files load as before
(``cover`` is None and attributions are refused, naming the retrain), and prediction never reads it;
``from_bytes`` loads it only when asked (``with_cover``), so the model component's memory is unchanged.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from glassbox.errors import ArtifactIntegrityError, InvalidInput
from glassbox.pipeline import compact_aot

# The loops below built ahead of time (compact_aot: the model image), else numba compiles them here.
_AOT = compact_aot.load()
if _AOT is None:
    import numba

    _jit = numba.njit(nogil=True, cache=True)
else:

    def _jit(function):  # the extension runs the loops: they stay plain Python, numba is not imported
        return function


if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

FORMAT_VERSION = 2  # 1: no missing-value flag (files without the key); 2: MISSING_IS_NEXT, nan_ok
NODE = np.dtype([("feature", np.int32), ("value", np.float32), ("far", np.int32)])
LEAF = -1  # ``feature`` of a leaf
NEXT_IS_RIGHT = 1 << 30  # set in ``feature`` when the next node is the right child (x > threshold)
MISSING_IS_NEXT = 1 << 29  # set in ``feature`` when a NaN goes to the next node (else to ``far``)
FEATURE = MISSING_IS_NEXT - 1  # the feature index bits
SCALED, ONE_HOT = 0, 1  # kinds of output column
ARRAYS = ("impute", "kind", "source", "a", "b", "nodes", "roots")
ARRAY_TYPES = (np.float64, np.int8, np.int32, np.float64, np.float64, NODE, np.int32)  # as built here
OPTIONAL_ARRAYS = ("cover",)  # float64 per node: training samples reaching it (TreeSHAP only)
CLEAN, HAS_NAN = -1, -2  # what ``_preprocess_row`` reports when it refuses nothing


class Unsupported(Exception):
    """The pipeline has a step this module does not compile; the ONNX fast path takes it."""


def supports(pipeline: Pipeline) -> bool:
    try:
        _check(pipeline)
    except Unsupported:
        return False
    return True


@dataclass(frozen=True)
class CompactPipeline:
    """The fitted pipeline as plain arrays (saved without pickle) and the loops that run them."""

    impute: np.ndarray  # float64 per input column: the value that replaces NaN (NaN: none)
    kind: np.ndarray  # int8 per preprocessed column: SCALED or ONE_HOT
    source: np.ndarray  # int32 per preprocessed column: the input column it comes from
    a: np.ndarray  # float64: the mean (SCALED) or the category (ONE_HOT)
    b: np.ndarray  # float64: the scale (SCALED)
    nodes: np.ndarray  # NODE records of every tree, one tree after the other
    roots: np.ndarray  # int32: each tree's root in ``nodes``
    nan_ok: bool = True  # a NaN may reach the trees (dense output); sklearn refuses it in sparse output
    cover: np.ndarray | None = None  # float64 per node: training samples reaching it (TreeSHAP); optional

    def __post_init__(self) -> None:
        if _AOT is not None:  # the extension takes exactly the array types it was built for, unchecked
            for name, dtype in zip(ARRAYS, ARRAY_TYPES, strict=True):
                array = getattr(self, name)
                if array.dtype != dtype or array.ndim != 1 or not array.flags.c_contiguous:
                    raise ArtifactIntegrityError(f"compact forest array {name}: {array.dtype} {array.shape}")

    @property
    def n_features(self) -> int:
        return len(self.impute)

    @classmethod
    def from_sklearn(cls, pipeline: Pipeline, n_features: int) -> CompactPipeline:
        preprocessor, forest = _check(pipeline)
        if preprocessor.n_features_in_ != n_features:
            raise Unsupported(f"the pipeline takes {preprocessor.n_features_in_} features, not {n_features}")
        impute = np.full(n_features, np.nan)
        kind, source, a, b = _columns(preprocessor, impute)
        parts, covers, roots, offset = [], [], [], 0
        for estimator in forest.estimators_:
            nodes, cover = _tree_nodes(estimator.tree_, offset)
            parts.append(nodes)
            covers.append(cover)
            roots.append(offset)
            offset += len(nodes)
        nan_ok = not preprocessor.sparse_output_
        return cls(
            impute, kind, source, a, b, np.concatenate(parts), np.array(roots, np.int32), nan_ok,
            np.concatenate(covers),
        )  # fmt: skip

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities (rows, classes) for C-contiguous float64 rows of ``n_features`` raw values."""
        if _AOT is not None:  # its arguments are unboxed unchecked: give it the types it was built for
            rows = np.ascontiguousarray(rows, dtype=np.float64)
            if rows.ndim != 2:
                raise InvalidInput(f"expected a 2-D array of rows, got shape {list(rows.shape)}")
        predict = _predict if _AOT is None else _AOT.predict
        out, row, column = predict(
            rows, self.impute, self.kind, self.source, self.a, self.b, self.nan_ok, self.nodes, self.roots
        )
        if row >= 0:
            raise InvalidInput(_refusal(rows[row, column], row, column))
        return out

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {name: getattr(self, name) for name in ARRAYS}
        if self.cover is not None:
            arrays["cover"] = self.cover
        np.savez(buffer, format_version=np.int32(FORMAT_VERSION), nan_ok=np.bool_(self.nan_ok), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "compact.npz", with_cover: bool = False) -> CompactPipeline:
        """Load ``to_bytes``' output; ``name`` (the file) is what an ``ArtifactIntegrityError`` names.

        ``with_cover`` also loads the per-node cover when the file holds it (TreeSHAP needs it).
        """
        skipped = () if with_cover else OPTIONAL_ARRAYS
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:  # plain arrays: nothing runs
                stored = {key: arrays[key] for key in arrays.files if key not in skipped}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ArtifactIntegrityError(f"{name}: not a compact forest file ({exc})") from None
        version = _format_version(stored, name)
        missing = [key for key in ARRAYS + (("nan_ok",) if version > 1 else ()) if key not in stored]
        if missing:
            raise ArtifactIntegrityError(f"{name}: arrays {missing} are missing")
        fields = {key: stored[key] for key in ARRAYS}
        if fields["nodes"].dtype != NODE or fields["roots"].dtype != np.int32:
            raise ArtifactIntegrityError(
                f"{name}: unexpected array types: {fields['nodes'].dtype}, {fields['roots'].dtype}"
            )
        if version == 1:
            # Written before versions: valid only if NaN never reaches a tree (see the module docstring).
            unimputed = sorted({int(c) for c in fields["source"] if np.isnan(fields["impute"][c])})
            if unimputed:
                raise ArtifactIntegrityError(
                    f"{name}: format version 1 (no format_version key) with columns {unimputed} not "
                    f"imputed, whose missing values it routes unlike sklearn; version {FORMAT_VERSION} "
                    "expected: retrain the model"
                )
            return cls(**fields, nan_ok=False)
        cover = stored.get("cover")
        if cover is not None and (cover.dtype != np.float64 or cover.shape != fields["nodes"].shape):
            raise ArtifactIntegrityError(f"{name}: cover {cover.dtype} {cover.shape} does not fit the nodes")
        return cls(**fields, nan_ok=bool(stored["nan_ok"]), cover=cover)


def _format_version(stored: dict[str, np.ndarray], name: str) -> int:
    """The file's format version: 1 without the key (files from before it), else the stored one."""
    if "format_version" not in stored:
        return 1
    value = stored["format_version"]
    found = int(value) if value.shape == () and np.issubdtype(value.dtype, np.integer) else repr(value)
    if found != FORMAT_VERSION:
        raise ArtifactIntegrityError(
            f"{name}: format version {found}, expected {FORMAT_VERSION} (or a file without a version, "
            "read as version 1): written by another Glassbox; retrain the model with this one"
        )
    return FORMAT_VERSION


def _refusal(value: float, row: int, column: int) -> str:
    where = f"row {row}, feature {column}"
    if np.isnan(value):
        return (
            f"{where}: a missing value (NaN) this model's preprocessing does not impute and its trees "
            "cannot take (sparse features)"
        )
    if np.isinf(value):
        return f"{where}: {value} is not a number the model can use"
    return f"{where}: {value!r} is too large: scaled, it overflows float32"


# --- reading the fitted sklearn objects (training only: sklearn is imported here, not at import time) --


def _check(pipeline: object) -> tuple:
    """The fitted (ColumnTransformer, forest) of a pipeline this module compiles; else Unsupported."""
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise Unsupported("not a two-step Pipeline(preprocessor, classifier)")
    preprocessor, forest = pipeline.steps[0][1], pipeline.steps[-1][1]
    kind, _source, _a, _b = _columns(preprocessor)
    _check_forest(forest, len(kind))
    return preprocessor, forest


def _input_columns(spec: object, n_features: int) -> np.ndarray:
    """A ColumnTransformer column selection (ints, negatives, slice, boolean mask) as input indices."""
    try:
        columns = np.arange(n_features)[np.asarray(spec) if isinstance(spec, list) and spec else spec]
    except (IndexError, TypeError, ValueError):
        raise Unsupported(f"column selection {spec!r}") from None
    if columns.ndim != 1:
        raise Unsupported(f"column selection {spec!r}")
    return columns


def _columns(preprocessor: object, impute: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """The preprocessed columns in ColumnTransformer's output order; fills ``impute`` per input."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if not isinstance(preprocessor, ColumnTransformer) or not hasattr(preprocessor, "transformers_"):
        raise Unsupported("the first step is not a fitted ColumnTransformer")
    kind, source, a, b = [], [], [], []
    for _name, steps, spec in preprocessor.transformers_:
        columns = _input_columns(spec, preprocessor.n_features_in_)
        if steps == "drop" or len(columns) == 0:  # sklearn neither fits nor runs an empty selection
            continue
        parts = steps.steps if isinstance(steps, Pipeline) else [("", steps)]
        objects = [step for _, step in parts]
        if objects and isinstance(objects[0], SimpleImputer):
            imputer = objects.pop(0)
            if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
                raise Unsupported("SimpleImputer with missing_values other than NaN")
            if getattr(imputer, "add_indicator", False):
                raise Unsupported("SimpleImputer(add_indicator=True)")
            if impute is not None:
                impute[columns] = imputer.statistics_
            # A column with nothing observed at fit has a NaN statistic and leaves the imputer's output.
            columns = columns[~np.isnan(imputer.statistics_)]
        if len(objects) != 1:
            raise Unsupported(f"transformer steps {objects!r}")
        step = objects[0]
        if isinstance(step, StandardScaler):
            for j, column in enumerate(columns):
                kind.append(SCALED)
                source.append(column)
                a.append(step.mean_[j] if step.with_mean else 0.0)
                b.append(step.scale_[j] if step.with_std else 1.0)
        elif isinstance(step, OneHotEncoder):
            if step.drop is not None or getattr(step, "_infrequent_enabled", False):
                raise Unsupported("OneHotEncoder with drop or infrequent categories")
            if step.handle_unknown != "ignore":  # an unknown code must score as all zeros, not raise
                raise Unsupported(f"OneHotEncoder(handle_unknown={step.handle_unknown!r})")
            for column, categories in zip(columns, step.categories_, strict=True):
                for category in categories:
                    kind.append(ONE_HOT)
                    source.append(column)
                    a.append(float(category))
                    b.append(1.0)
        else:
            raise Unsupported(f"transformer {step!r}")
    return (
        np.array(kind, np.int8),
        np.array(source, np.int32),
        np.array(a, np.float64),
        np.array(b, np.float64),
    )


def _check_forest(forest: object, n_columns: int) -> None:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    if not isinstance(forest, RandomForestClassifier | ExtraTreesClassifier) or forest.n_outputs_ != 1:
        raise Unsupported("the classifier is not a single-output RandomForest/ExtraTrees classifier")
    if forest.n_classes_ != 2:
        raise Unsupported(f"{forest.n_classes_} classes; the compact forest holds two")
    if forest.n_features_in_ != n_columns or n_columns > FEATURE:
        raise Unsupported(
            f"the forest takes {forest.n_features_in_} features, the preprocessing gives {n_columns}"
        )


def _tree_nodes(tree, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """One sklearn ``tree_`` as NODE records, the busier child of each node right after it, and each
    node's cover (``weighted_n_node_samples``, what shap's path-dependent TreeSHAP weighs by)."""
    left, right, rows = tree.children_left, tree.children_right, tree.weighted_n_node_samples
    next_is_left = rows[np.maximum(left, 0)] >= rows[np.maximum(right, 0)]
    order, stack = [], [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if left[node] >= 0:  # push the far child first: the busier one is visited next
            stack += [int(right[node]), int(left[node])][:: 1 if next_is_left[node] else -1]
    order = np.array(order, np.int64)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    is_leaf, next_left = left[order] < 0, next_is_left[order]
    missing_next = tree.missing_go_to_left[order].astype(bool) == next_left
    far = np.where(next_left, right[order], left[order])
    threshold = tree.threshold[order]
    below = threshold.astype(np.float32)
    below = np.where(below.astype(np.float64) > threshold, np.nextafter(below, np.float32(-np.inf)), below)
    counts = tree.value[order, 0, :]
    positive = counts[:, 1] / np.where(counts.sum(axis=1) == 0, 1.0, counts.sum(axis=1))
    flags = np.where(next_left, 0, NEXT_IS_RIGHT) | np.where(missing_next, MISSING_IS_NEXT, 0)
    nodes = np.empty(len(order), NODE)
    nodes["feature"] = np.where(is_leaf, LEAF, tree.feature[order] | flags)
    nodes["value"] = np.where(is_leaf, positive.astype(np.float32), below)
    nodes["far"] = np.where(is_leaf, 0, position[np.maximum(far, 0)] + offset)
    return nodes, rows[order].astype(np.float64)


# --- the compiled loops (numba; compiled on first call, cached beside this file when writable) -----
# (or built ahead of time by compact_aot, which fingerprints this section: see compact_aot.load)


@_jit
def _preprocess_row(X, i, impute, kind, source, a, b, nan_ok, x, z):  # pragma: no cover - compiled
    """Row ``i`` of ``X`` preprocessed into ``z``: CLEAN, HAS_NAN, or the input column sklearn refuses."""
    status = CLEAN
    for c in range(X.shape[1]):
        x[c] = impute[c] if np.isnan(X[i, c]) else X[i, c]
    for o in range(kind.shape[0]):
        v = x[source[o]]
        if kind[o] == 0:  # SCALED: NaN stays NaN, infinity or a float32 overflow is refused
            z[o] = np.float32((v - a[o]) / b[o])
            if np.isinf(z[o]):
                return source[o]
            if np.isnan(z[o]):
                if not nan_ok:
                    return source[o]
                status = HAS_NAN
        else:  # ONE_HOT: equality, NaN matching a NaN category; infinity is refused
            if np.isinf(v):
                return source[o]
            same = v == a[o] or (np.isnan(v) and np.isnan(a[o]))
            z[o] = np.float32(1.0) if same else np.float32(0.0)
    return status


@_jit
def _leaf_with_missing(z, nodes, k):  # pragma: no cover - compiled
    """The leaf a row holding NaN reaches from node ``k``: NaN goes where ``missing_go_to_left`` says."""
    while nodes[k].feature >= 0:
        flagged = nodes[k].feature
        v = z[flagged & FEATURE]
        if np.isnan(v):
            goes_next = (flagged & MISSING_IS_NEXT) != 0
        else:
            goes_next = (v <= nodes[k].value) == (flagged < NEXT_IS_RIGHT)
        k = k + 1 if goes_next else nodes[k].far
    return k


@_jit
def _predict(X, impute, kind, source, a, b, nan_ok, nodes, roots):  # pragma: no cover - compiled
    """(probabilities, -1, -1) over the rows of ``X``, or (_, row, column) of the first refused value."""
    out = np.empty((X.shape[0], 2))
    x = np.empty(X.shape[1])
    z = np.empty(kind.shape[0], np.float32)
    for i in range(X.shape[0]):
        status = _preprocess_row(X, i, impute, kind, source, a, b, nan_ok, x, z)
        if status >= 0:
            return out, i, status
        total = 0.0
        if status == CLEAN:  # the hot loop: no NaN, so no missing-value test per node
            for root in roots:
                k = root
                while nodes[k].feature >= 0:
                    flagged = nodes[k].feature
                    goes_left = z[flagged & FEATURE] <= nodes[k].value
                    k = k + 1 if goes_left == (flagged < NEXT_IS_RIGHT) else nodes[k].far
                total += nodes[k].value
        else:
            for root in roots:
                total += nodes[_leaf_with_missing(z, nodes, root)].value
        p1 = total / roots.shape[0]
        out[i, 0] = 1.0 - p1
        out[i, 1] = p1
    return out, -1, -1
