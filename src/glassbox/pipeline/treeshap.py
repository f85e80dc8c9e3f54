"""Path-dependent TreeSHAP over the compact forest (``compact.py``), in numba.

The algorithm is Algorithm 2 of Lundberg, Erion & Lee, "Consistent Individualized Feature Attribution
for Tree Ensembles" (2018, arXiv:1802.03888), as shap's C++ ``tree_shap_recursive`` implements it: one
walk down each tree carrying the "unique path" of the features split on so far, with the share of
training samples (cover) that went each way, and at every leaf the exact Shapley weights of the path's
features. It is exact for the "path-dependent" value function: a feature left out of a coalition
follows both children in proportion to their cover (the training data as it reached each node), so
no background sample is needed and the values are shap's ``TreeExplainer(model,
feature_perturbation="tree_path_dependent")`` to rounding (tests/explain/test_attributions.py).

Why by hand: shap computes the same values, but over sklearn's objects (the 57 preprocessed columns,
~0.5 s a row on the reference forest) and it is a training-time dependency; the explainer image
needs neither shap nor sklearn. Here the walk runs over the compact forest's 12-byte nodes (which
child is "next" and where NaN goes are flags, see ``compact.py``), the trees are spread over threads
(numba ``prange``, each tree into its own row of the output), and the preprocessed columns are summed
back to the input feature they come from (``source``). Shapley values are linear, so a feature's
value is the sum of its columns'; and the negative class is ``1 - p``, so its values are the
negatives of these and its base value ``1 - base``.

Leaves hold the positive-class probability as float32 (as the compact forest predicts), so
``base + sum(values)`` equals the compact forest's probability to float64 rounding, and sklearn's
within the compact forest's 1e-7.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from glassbox.errors import Conflict, InvalidInput
from glassbox.pipeline.compact import FEATURE, LEAF, MISSING_IS_NEXT, NEXT_IS_RIGHT, ONE_HOT, CompactPipeline

_jit = numba.njit(nogil=True, cache=True)
# numba's default threading layer (workqueue) aborts the process when two threads launch parallel
# work at once: one forest walk at a time per process (it uses every core anyway).
_PARALLEL = threading.Lock()


class NoCover(Conflict):
    """The compact forest was written without per-node cover (trained before issue #13)."""


@dataclass(frozen=True)
class Attribution:
    """Path-dependent TreeSHAP of one row for the positive class (index 1)."""

    base_value: float  # the forest's expected probability over the training data (cover-weighted)
    values: np.ndarray  # float64 per input feature: the sum of its preprocessed columns' values
    probability: float  # the compact forest's probability of the positive class for this row


class TreeShap:
    """TreeSHAP over one compact forest; build once per loaded bundle, call per row."""

    def __init__(self, compact: CompactPipeline):
        if compact.cover is None:
            raise NoCover(
                "this model's compact.npz has no per-node cover, which attributions need: it was trained "
                "before attributions existed; retrain it (glassbox train)"
            )
        self.compact = compact
        self.n_trees = len(compact.roots)
        ends = np.append(compact.roots[1:], len(compact.nodes)).astype(np.int64)
        self.depths = _depths(compact.nodes, compact.roots.astype(np.int64), ends)
        self.base_value = float(_expected_value(compact.nodes, compact.cover, compact.roots, ends))

    def preprocess(self, row: np.ndarray) -> np.ndarray:
        """One raw row as the trees see it (float32 per column), exactly as ``compact._preprocess_row``."""
        c = self.compact
        x = np.asarray(row, dtype=np.float64).reshape(-1)
        if x.shape != (c.n_features,):
            raise InvalidInput(f"expected a row of {c.n_features} features, got shape {list(x.shape)}")
        x = np.where(np.isnan(x), c.impute, x)
        v = x[c.source]
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = ((v - c.a) / c.b).astype(np.float32)
        same = (v == c.a) | (np.isnan(v) & np.isnan(c.a))
        z = np.where(c.kind == ONE_HOT, same.astype(np.float32), scaled).astype(np.float32)
        bad = np.isinf(z) | np.isinf(v) | (np.isnan(z) & (not c.nan_ok))
        if bad.any():
            raise InvalidInput(f"feature {int(c.source[np.argmax(bad)])}: a value the model cannot use")
        return z

    def explain(self, row: np.ndarray) -> Attribution:
        """The positive class's attribution of one raw row (``n_features`` values in alibi's encoding)."""
        z = self.preprocess(row)
        c = self.compact
        with _PARALLEL:
            per_tree, leaf_sum = _shap_forest(z, c.nodes, c.cover, c.roots, self.depths, len(c.kind))
        columns = per_tree.sum(axis=0) / self.n_trees
        values = np.bincount(c.source, weights=columns, minlength=c.n_features)
        return Attribution(self.base_value, values, float(leaf_sum / self.n_trees))


# --- the compiled loops ---------------------------------------------------------------------------


@_jit
def _depths(nodes, roots, ends):  # pragma: no cover - compiled
    """Each tree's depth (edges on its longest root-to-leaf path): the size of its path buffers."""
    out = np.zeros(roots.shape[0], np.int64)
    for t in range(roots.shape[0]):
        depth = np.zeros(ends[t] - roots[t], np.int64)  # per node of the tree, by offset from the root
        deepest = 0
        for k in range(roots[t], ends[t]):  # depth-first order: a parent comes before its children
            d = depth[k - roots[t]]
            if d > deepest:
                deepest = d
            if nodes[k].feature != LEAF:
                depth[k + 1 - roots[t]] = d + 1
                depth[nodes[k].far - roots[t]] = d + 1
        out[t] = deepest
    return out


@_jit
def _expected_value(nodes, cover, roots, ends):  # pragma: no cover - compiled
    """The forest's mean over trees of each tree's cover-weighted mean leaf value (shap's base value)."""
    total = 0.0
    for t in range(roots.shape[0]):
        tree = 0.0
        for k in range(roots[t], ends[t]):
            if nodes[k].feature == LEAF:
                tree += np.float64(nodes[k].value) * cover[k]
        total += tree / cover[roots[t]]
    return total / roots.shape[0]


@_jit
def _extend(feature, zero, one, weight, start, depth, zero_fraction, one_fraction, index):  # pragma: no cover
    """Algorithm 2's EXTEND: the path ``start..start+depth`` grows by a split on ``index``."""
    feature[start + depth] = index
    zero[start + depth] = zero_fraction
    one[start + depth] = one_fraction
    weight[start + depth] = 1.0 if depth == 0 else 0.0
    for i in range(depth - 1, -1, -1):
        weight[start + i + 1] += one_fraction * weight[start + i] * (i + 1) / (depth + 1)
        weight[start + i] = zero_fraction * weight[start + i] * (depth - i) / (depth + 1)


@_jit
def _unwind(feature, zero, one, weight, start, depth, path_index):  # pragma: no cover - compiled
    """Algorithm 2's UNWIND: the path without element ``path_index`` (a feature split on again)."""
    one_fraction = one[start + path_index]
    zero_fraction = zero[start + path_index]
    next_one_portion = weight[start + depth]
    for i in range(depth - 1, -1, -1):
        if one_fraction != 0.0:
            tmp = weight[start + i]
            weight[start + i] = next_one_portion * (depth + 1) / ((i + 1) * one_fraction)
            next_one_portion = tmp - weight[start + i] * zero_fraction * (depth - i) / (depth + 1)
        else:
            weight[start + i] = weight[start + i] * (depth + 1) / (zero_fraction * (depth - i))
    for i in range(path_index, depth):
        feature[start + i] = feature[start + i + 1]
        zero[start + i] = zero[start + i + 1]
        one[start + i] = one[start + i + 1]


@_jit
def _unwound_sum(zero, one, weight, start, depth, path_index):  # pragma: no cover - compiled
    """The total weight of the path without element ``path_index``, without changing the path."""
    one_fraction = one[start + path_index]
    zero_fraction = zero[start + path_index]
    next_one_portion = weight[start + depth]
    total = 0.0
    if one_fraction != 0.0:
        for i in range(depth - 1, -1, -1):
            tmp = next_one_portion / ((i + 1) * one_fraction)
            total += tmp
            next_one_portion = weight[start + i] - tmp * zero_fraction * (depth - i)
    else:
        for i in range(depth - 1, -1, -1):
            total += weight[start + i] / (zero_fraction * (depth - i))
    return total * (depth + 1)


@_jit
def _leaf(
    phi, feature, zero, one, weight, inverse, hot_z, hot_portion, hot_total, start, depth, leaf
):  # pragma: no cover
    """Every path feature's share of ``leaf``: ``_unwound_sum`` for each, without redoing shared work.

    On this path a feature's ``one`` fraction is 1 (every split on it followed the row) or 0, as in
    Fast TreeSHAP v1 (Yang 2021, arXiv:2109.09847). For 0 the unwound sum is ``(depth + 1) / zero *
    sum_i weight_i / (depth - i)`` and the share ``(one - zero)`` times it: ``zero`` cancels, one sum
    serves them all, where shap's loop redoes it per feature.
    For 1 the O(depth) recurrence remains, but the features' recurrences are independent: they run
    side by side (the loop over features inside the loop over the path), so the CPU overlaps them
    instead of waiting on one multiply-subtract chain at a time. Same sums, rounded differently
    (within 1e-12 of shap's here).
    """
    cold_sum = 0.0
    n_hot = 0
    for i in range(depth):
        cold_sum += weight[start + i] * inverse[depth - i]
    scale = (depth + 1) * leaf
    for p in range(1, depth + 1):
        zero_fraction = zero[start + p]
        if one[start + p] == 0.0:
            phi[feature[start + p]] -= cold_sum * scale
        elif one[start + p] == 1.0:
            hot_z[n_hot] = zero_fraction
            hot_portion[n_hot] = weight[start + depth]
            hot_total[n_hot] = 0.0
            n_hot += 1
        else:  # a fraction other than 0 or 1 cannot occur here; the general recurrence, for safety
            total = 0.0
            portion = weight[start + depth]
            for i in range(depth - 1, -1, -1):
                tmp = portion * inverse[i + 1] / one[start + p]
                total += tmp
                portion = weight[start + i] - tmp * zero_fraction * (depth - i)
            phi[feature[start + p]] += total * (one[start + p] - zero_fraction) * scale
    if n_hot == 0:
        return
    for i in range(depth - 1, -1, -1):
        w = weight[start + i]
        per = inverse[i + 1]
        steps = np.float64(depth - i)
        for h in range(n_hot):
            tmp = hot_portion[h] * per
            hot_total[h] += tmp
            hot_portion[h] = w - tmp * hot_z[h] * steps
    h = 0
    for p in range(1, depth + 1):
        if one[start + p] == 1.0:
            phi[feature[start + p]] += hot_total[h] * (1.0 - hot_z[h]) * scale
            h += 1


@_jit
def _tree(z, nodes, cover, phi, root, max_depth):  # pragma: no cover - compiled
    """Algorithm 2's RECURSE over one tree, as a loop over an explicit stack of pending children.

    A child copies its parent's path into a segment of its own right after the parent's, extends it
    and either scores a leaf or unwinds a repeated feature and pushes its own children (the row's
    child last, so it runs first, as shap does). A child's subtree writes only beyond its segment, so
    the parent's path is intact when its second child starts. A loop rather than recursion: numba's
    recursive calls pass every array with reference counting, which cost more than the walk.
    """
    size = (max_depth + 2) * (max_depth + 3) // 2 + max_depth + 3  # every level's path segment
    feature = np.full(size, -1, np.int64)
    zero = np.zeros(size)
    one = np.zeros(size)
    weight = np.zeros(size)
    inverse = 1.0 / np.arange(0.0, max_depth + 3)  # 1/n without a division per use (inverse[0] unused)
    hot_z = np.empty(max_depth + 2)  # scratch for _leaf: the path's features with one fraction 1
    hot_portion = np.empty(max_depth + 2)
    hot_total = np.empty(max_depth + 2)
    stack_node = np.empty(2 * max_depth + 4, np.int64)
    stack_depth = np.empty(2 * max_depth + 4, np.int64)
    stack_parent = np.empty(2 * max_depth + 4, np.int64)
    stack_zero = np.empty(2 * max_depth + 4)
    stack_one = np.empty(2 * max_depth + 4)
    stack_feature = np.empty(2 * max_depth + 4, np.int64)
    top = 0
    stack_node[0], stack_depth[0], stack_parent[0] = root, 0, 0
    stack_zero[0], stack_one[0], stack_feature[0] = 1.0, 1.0, -1
    while top >= 0:
        k, depth, parent = stack_node[top], stack_depth[top], stack_parent[top]
        zero_fraction, one_fraction, index = stack_zero[top], stack_one[top], stack_feature[top]
        top -= 1
        start = parent + depth + 1 if depth > 0 else 0
        for i in range(depth):
            feature[start + i] = feature[parent + i]
            zero[start + i] = zero[parent + i]
            one[start + i] = one[parent + i]
            weight[start + i] = weight[parent + i]
        _extend(feature, zero, one, weight, start, depth, zero_fraction, one_fraction, index)
        flagged = nodes[k].feature
        if flagged == LEAF:
            value = np.float64(nodes[k].value)
            _leaf(
                phi, feature, zero, one, weight, inverse, hot_z, hot_portion, hot_total, start, depth, value
            )
            continue
        split = flagged & FEATURE
        v = z[split]
        if np.isnan(v):
            goes_next = (flagged & MISSING_IS_NEXT) != 0
        else:
            goes_next = (v <= nodes[k].value) == (flagged < NEXT_IS_RIGHT)
        hot = k + 1 if goes_next else nodes[k].far
        cold = nodes[k].far if goes_next else k + 1
        incoming_zero = 1.0
        incoming_one = 1.0
        path_index = 0
        while path_index <= depth and feature[start + path_index] != split:
            path_index += 1
        if path_index != depth + 1:  # split on this feature before: undo that split, carry its fractions
            incoming_zero = zero[start + path_index]
            incoming_one = one[start + path_index]
            _unwind(feature, zero, one, weight, start, depth, path_index)
            depth -= 1
        w = cover[k]
        top += 1  # the other child waits ...
        stack_node[top], stack_depth[top], stack_parent[top] = cold, depth + 1, start
        stack_zero[top], stack_one[top], stack_feature[top] = cover[cold] / w * incoming_zero, 0.0, split
        top += 1  # ... while the row's child goes first
        stack_node[top], stack_depth[top], stack_parent[top] = hot, depth + 1, start
        stack_zero[top], stack_one[top], stack_feature[top] = (
            cover[hot] / w * incoming_zero,
            incoming_one,
            split,
        )


@numba.njit(nogil=True, cache=True, parallel=True)
def _shap_forest(z, nodes, cover, roots, depths, n_columns):  # pragma: no cover - compiled
    """(values per tree and column, sum over trees of the row's leaf value); the trees run in parallel."""
    n_trees = roots.shape[0]
    out = np.zeros((n_trees, n_columns))
    leaves = np.zeros(n_trees)
    for t in numba.prange(n_trees):
        _tree(z, nodes, cover, out[t], roots[t], depths[t])
        k = roots[t]
        while nodes[k].feature != LEAF:  # the row's own leaf: base + sum(values) must reach it
            flagged = nodes[k].feature
            v = z[flagged & FEATURE]
            if np.isnan(v):
                goes_next = (flagged & MISSING_IS_NEXT) != 0
            else:
                goes_next = (v <= nodes[k].value) == (flagged < NEXT_IS_RIGHT)
            k = k + 1 if goes_next else nodes[k].far
        leaves[t] = nodes[k].value
    return out, leaves.sum()
