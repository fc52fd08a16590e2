"""Structural checks of loaded tree models, in Python, before any use.

A predictor folder is untrusted input. Tree arrays drive index arithmetic
(our random-forest evaluator) and native code (``xgboost.Booster.load_model``),
so a crafted child index, a cycle or a split feature out of range must be
refused first, as one :class:`~latnas.schema.errors.PredictorFileError` line:

* :func:`check_tree`: children in range, every node reached exactly once from
  the root (a tree: no cycle, no shared child), split features below the
  feature count, finite thresholds and leaf values, bounded size;
* :func:`check_xgb_json`: the same for every tree of an XGBoost ``model.json``
  plus its header (gbtree, numerical splits only, feature count, tree count).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from latnas.schema.errors import PredictorFileError

MAX_NODES = 1 << 20  # nodes per tree; our trees hold a few thousand
MAX_TREES = 100_000
#: per-node arrays of an XGBoost JSON tree, each exactly num_nodes long
NODE_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_conditions", "base_weights",
               "default_left", "split_type", "loss_changes", "sum_hessian")
CATEGORY_ARRAYS = ("categories", "categories_nodes", "categories_segments", "categories_sizes")


def _int_array(values, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        arr = np.asarray([])
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.ndim == 1):
        raise PredictorFileError(f"{what}: child and feature indices must be integers")
    return arr.astype(np.int64)


def check_tree(left, right, feature, n_features: int, threshold=None, value=None, what: str = "tree",
               allow_unreachable: bool = False) -> None:
    """Refuse a binary tree in array form that is not a finite, well-formed tree.

    ``left[i] == right[i] == -1`` marks a leaf; internal nodes need both
    children in ``1..n-1`` and ``0 <= feature[i] < n_features``.
    """
    left, right, feature = (_int_array(a, what) for a in (left, right, feature))
    n = left.size
    if left.ndim != 1 or n == 0 or n > MAX_NODES or right.shape != left.shape or feature.shape != left.shape:
        raise PredictorFileError(f"{what}: node arrays must be 1-D, of equal length, 1..{MAX_NODES} nodes")
    for name, arr in (("threshold", threshold), ("value", value)):
        if arr is None:
            continue
        a = np.asarray(arr, dtype=np.float64)
        if a.shape != left.shape:
            raise PredictorFileError(f"{what}: {name} has {a.size} entries for {n} nodes")
        if not np.all(np.isfinite(a)):
            raise PredictorFileError(f"{what}: {name} holds NaN or infinite values")
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise PredictorFileError(f"{what}: a node has exactly one child")
    inner = ~leaf
    kids = np.concatenate([left[inner], right[inner]])
    if kids.size and (kids.min() < 1 or kids.max() >= n):
        raise PredictorFileError(f"{what}: child index out of range 1..{n - 1}")
    if np.any((feature[inner] < 0) | (feature[inner] >= n_features)):
        raise PredictorFileError(f"{what}: split feature index out of range 0..{n_features - 1}")
    # a tree: no child listed twice, the root nobody's child, and a walk from the root that never
    # meets a node twice (so no cycle); nodes it does not reach must be leaves (XGBoost's deleted nodes)
    if np.unique(kids).size != kids.size:
        raise PredictorFileError(f"{what}: a node is the child of two nodes (not a tree)")
    seen = np.zeros(n, dtype=bool)
    seen[0] = True
    frontier = np.array([0])
    for _ in range(n):
        frontier = frontier[inner[frontier]]
        if frontier.size == 0:
            break
        frontier = np.concatenate([left[frontier], right[frontier]])
        if seen[frontier].any():
            raise PredictorFileError(f"{what}: the tree has a cycle")
        seen[frontier] = True
    if not seen.all() and not (allow_unreachable and leaf[~seen].all()):
        raise PredictorFileError(f"{what}: the tree has unreachable nodes")


def _int_field(d: dict, key: str, what: str) -> int:
    try:
        return int(str(d[key]))
    except (KeyError, TypeError, ValueError):
        raise PredictorFileError(f"{what}: missing or bad {key!r}") from None


def check_xgb_json(doc: Any, n_features: int, what: str = "XGBoost model.json") -> int:
    """Refuse an XGBoost JSON model that is not a plain gbtree over ``n_features``
    numerical features with well-formed trees; returns the number of trees."""
    try:
        learner = doc["learner"]
        booster = learner["gradient_booster"]
        model = booster["model"]
        trees = model["trees"]
        header = learner["learner_model_param"]
    except (KeyError, TypeError):
        raise PredictorFileError(f"{what} is not an XGBoost JSON model") from None
    if booster.get("name") != "gbtree" or not isinstance(trees, list):
        raise PredictorFileError(f"{what}: only gbtree models are accepted")
    if _int_field(header, "num_feature", what) != n_features:
        raise PredictorFileError(f"{what}: model has {header.get('num_feature')} features, expected {n_features}")
    if _int_field(header, "num_class", what) not in (0, 1) or _int_field(header, "num_target", what) != 1:
        raise PredictorFileError(f"{what}: only single-target regression models are accepted")
    if len(trees) > MAX_TREES:
        raise PredictorFileError(f"{what}: more than {MAX_TREES} trees")
    param = model.get("gbtree_model_param") if isinstance(model, dict) else None
    info = model.get("tree_info")
    if not isinstance(param, dict) or _int_field(param, "num_trees", what) != len(trees):
        raise PredictorFileError(f"{what}: num_trees does not match the {len(trees)} trees")
    if not isinstance(info, list) or len(info) != len(trees) or any(v != 0 for v in info):
        raise PredictorFileError(f"{what}: tree_info must list one group 0 per tree")
    if model.get("iteration_indptr") != list(range(len(trees) + 1)) or param.get("num_parallel_tree", "1") != "1":
        raise PredictorFileError(f"{what}: iteration_indptr must be 0..{len(trees)} (one tree per round)")
    for i, t in enumerate(trees):
        tw = f"{what} tree {i}"
        if not isinstance(t, dict) or not isinstance(t.get("tree_param"), dict):
            raise PredictorFileError(f"{tw} is not a tree object")
        n_nodes = _int_field(t["tree_param"], "num_nodes", tw)
        if _int_field(t["tree_param"], "num_feature", tw) != n_features:
            raise PredictorFileError(f"{tw}: num_feature does not match the model's {n_features}")
        if not 1 <= n_nodes <= MAX_NODES or _int_field(t["tree_param"], "size_leaf_vector", tw) not in (0, 1):
            raise PredictorFileError(f"{tw}: 1..{MAX_NODES} nodes with scalar leaves expected")
        for key in NODE_ARRAYS:
            if not isinstance(t.get(key), list) or len(t[key]) != n_nodes:
                raise PredictorFileError(f"{tw}: {key} must be a list of {n_nodes} entries")
        if any(s != 0 for s in t["split_type"]) or any(t.get(k) for k in CATEGORY_ARRAYS):
            raise PredictorFileError(f"{tw}: only numerical splits are accepted")
        left, right, parents = t["left_children"], t["right_children"], t["parents"]
        check_tree(left, right, t["split_indices"], n_features, threshold=t["split_conditions"],
                   value=t["base_weights"], what=tw, allow_unreachable=True)
        for j, (lc, rc) in enumerate(zip(left, right)):
            if lc != -1 and (parents[lc] != j or parents[rc] != j):
                raise PredictorFileError(f"{tw}: parents do not match the children")
    return len(trees)
