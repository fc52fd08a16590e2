"""Feature extraction for latency predictors.

Two levels:

* block features: a fixed-length vector per :class:`~latnas.schema.spec.BlockSpec`
  (op one-hot, shape hyper-parameters, analytic costs from
  :func:`latnas.schema.features.block_cost`), used by block-level predictors;
* arch features: for a search space, the per-layer choice one-hot
  (``n_layers * n_choices`` columns) plus whole-model totals (MFLOPs, params),
  used by arch-level predictors.

Feature-name lists are fixed and stored in model metadata, so a saved model
can refuse features it was not trained on.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from latnas.schema.features import block_cost
from latnas.schema.spec import BlockSpec

#: op types known to the block featuriser (others map to "other")
BLOCK_OPS = ("conv", "mbconv", "skip", "classifier", "dbb", "other")
_NUMERIC = (
    "cin", "cout", "kernel", "stride", "expansion", "groups", "h", "w",
    "log_mflops", "log_kparams", "log_kbytes_moved", "arithmetic_intensity",
)
BLOCK_FEATURE_NAMES: tuple[str, ...] = tuple(f"op_{o}" for o in BLOCK_OPS) + _NUMERIC


@contextmanager
def one_torch_thread():
    """Run block_cost (tiny torch graphs) on one thread: far faster on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@lru_cache(maxsize=65536)
def _block_vector(spec: BlockSpec) -> tuple[float, ...]:
    cost = block_cost(spec)
    op = spec.op if spec.op in BLOCK_OPS else "other"
    onehot = [1.0 if o == op else 0.0 for o in BLOCK_OPS]
    moved = cost.weight_bytes + cost.activation_bytes
    numeric = [
        spec.cin, spec.cout, spec.kernel, spec.stride, spec.expansion, spec.groups, spec.h, spec.w,
        math.log1p(cost.flops / 1e6), math.log1p(cost.params / 1e3), math.log1p(moved / 1e3),
        cost.arithmetic_intensity,
    ]
    return tuple(float(v) for v in (*onehot, *numeric))


def block_features(specs: list[BlockSpec] | BlockSpec) -> np.ndarray:
    """(n, len(BLOCK_FEATURE_NAMES)) feature matrix of blocks (cached per spec)."""
    if isinstance(specs, BlockSpec):
        specs = [specs]
    if not specs:
        return np.zeros((0, len(BLOCK_FEATURE_NAMES)))
    with one_torch_thread():
        return np.array([_block_vector(s) for s in specs], dtype=np.float64)


def onehot_feature_names(space) -> list[str]:
    """Names of the per-layer choice one-hot columns: ``L<layer>_<choice>``."""
    return [f"L{l}_{c.name}" for l in range(space.n_layers) for c in space.choices]


def arch_feature_names(space, totals: bool = True) -> list[str]:
    """Names of :func:`arch_features` columns."""
    names = onehot_feature_names(space)
    return names + ["total_mflops", "total_mparams"] if totals else names


def check_archs(archs, n_layers: int, n_choices: int) -> np.ndarray:
    """Validate an (n, n_layers) integer arch matrix; one-line DataError if bad."""
    from latnas.schema.errors import DataError

    a = np.asarray(archs)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != n_layers:
        raise DataError(f"archs must be an (n, {n_layers}) integer matrix, got shape {a.shape}")
    if a.size and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
        raise DataError("archs must hold integer choice indices")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= n_choices):
        raise DataError(f"arch choices must be in 0..{n_choices - 1}")
    return a


def onehot(archs: np.ndarray, n_layers: int, n_choices: int) -> np.ndarray:
    """(n, n_layers * n_choices) 0/1 matrix of an (n, n_layers) arch matrix."""
    a = check_archs(archs, n_layers, n_choices)
    out = np.zeros((a.shape[0], n_layers * n_choices), dtype=np.float64)
    out[np.arange(a.shape[0])[:, None], a + np.arange(n_layers) * n_choices] = 1.0
    return out


@lru_cache(maxsize=16)
def _space_cost_tables(space_name: str, batch: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    from latnas.schema.spaces import get_space

    space = get_space(space_name, batch=batch)
    with one_torch_thread():
        costs = {(layer, choice): [block_cost(s) for s in blocks] for layer, choice, blocks in space.layer_table()}
        fixed = [block_cost(s) for s in space.fixed_blocks()]
    flops = np.zeros((space.n_layers, space.n_choices))
    params = np.zeros((space.n_layers, space.n_choices))
    for (layer, choice), parts in costs.items():
        flops[layer, choice] = sum(c.flops for c in parts) / 1e6
        params[layer, choice] = sum(c.params for c in parts) / 1e6
    return flops, params, sum(c.flops for c in fixed) / 1e6, sum(c.params for c in fixed) / 1e6


def arch_totals(space, archs: np.ndarray) -> np.ndarray:
    """(n, 2) whole-model MFLOPs and Mparams (stem and head included)."""
    flops, params, f0, p0 = _space_cost_tables(space.name, space.batch)
    a = check_archs(archs, space.n_layers, space.n_choices)
    rows = np.arange(space.n_layers)
    return np.column_stack([flops[rows, a].sum(axis=1) + f0, params[rows, a].sum(axis=1) + p0])


def arch_features(space, archs: np.ndarray, totals: bool = True) -> np.ndarray:
    """Per-layer one-hot (+ totals) for an (n, n_layers) arch matrix."""
    x = onehot(archs, space.n_layers, space.n_choices)
    return np.hstack([x, arch_totals(space, archs)]) if totals else x


def layer_cost_tables(space) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-(layer, choice) MFLOPs and Mparams tables plus the fixed stem+head totals."""
    flops, params, f0, p0 = _space_cost_tables(space.name, space.batch)
    return flops.copy(), params.copy(), f0, p0
