"""Synthetic latency data with known structure, for tests and demos.

Latency of a block is a roofline-like function of its analytic cost, so
whole-model latency is additive over layers (plus optional multiplicative
noise), like the LUT-style devices of the shared FBNet data.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from latnas.schema.features import block_cost
from predictors.data import ArchTable


def block_latency_ms(spec, device_scale: float = 1.0) -> float:
    """A smooth, op-dependent toy latency of one block (ms)."""
    c = block_cost(spec)
    compute = c.flops / 2e9
    memory = (c.weight_bytes + c.activation_bytes) / 4e9
    launch = 0.01 if spec.op != "skip" else 0.002
    return device_scale * (max(compute, memory) * 1e3 + launch)


def synthetic_layer_table(space, device_scale: float = 1.0) -> tuple[np.ndarray, float]:
    table = np.full((space.n_layers, space.n_choices), np.nan)
    for layer, choice, blocks in space.layer_table():
        table[layer, choice] = sum(block_latency_ms(s, device_scale) for s in blocks)
    fixed = sum(block_latency_ms(s, device_scale) for s in space.fixed_blocks())
    return table, fixed


def synthetic_arch_table(space, n: int = 300, seed: int = 0, noise: float = 0.01,
                         devices: dict[str, float] | None = None) -> ArchTable:
    """``n`` random archs with additive latency columns (``<name>_ms``) per device scale."""
    devices = devices or {"toy_ms": 1.0, "toy2x_ms": 2.0}
    rng = np.random.default_rng(seed)
    archs = np.array(space.random_archs(n, rng), dtype=np.int64)
    cols = {}
    rows = np.arange(space.n_layers)
    for name, scale in devices.items():
        table, fixed = synthetic_layer_table(space, scale)
        clean = table[rows, archs].sum(axis=1) + fixed
        cols[name] = clean * np.exp(rng.normal(0.0, noise, size=n))
    return ArchTable(space.name, [space.format_arch(a) for a in archs], archs, cols)


def write_arch_csv(table: ArchTable, path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", *table.columns])
        for i, a in enumerate(table.arch_strings):
            w.writerow([a, *(f"{table.columns[c][i]:.6f}" for c in table.columns)])
    return path


def synthetic_block_records(space, backend: str = "toy", fingerprint: str = "f00d", n_models: int = 30,
                            seed: int = 0, model_scale: float = 1.1) -> list[dict]:
    """Plain profile records: every unique block of ``space`` plus ``n_models``
    whole-model rows (latency = ``model_scale`` * block sum, i.e. a correction to learn)."""
    rng = np.random.default_rng(seed)
    recs = [{"key": s.key, "kind": "block", "backend": backend, "fingerprint": fingerprint, "batch": s.batch,
             "median_ms": block_latency_ms(s) * float(np.exp(rng.normal(0, 0.01))), "spec": s.to_dict()}
            for s in space.unique_blocks()]
    for a in space.random_archs(n_models, rng):
        total = sum(block_latency_ms(s) for s in space.blocks(a))
        text = space.format_arch(a)
        recs.append({"key": f"model:{space.name}:{text}", "kind": "model", "backend": backend,
                     "fingerprint": fingerprint, "batch": space.batch, "median_ms": model_scale * total,
                     "spec": {"space": space.name, "arch": text}})
    return recs
