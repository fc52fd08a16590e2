"""Benchmark: Diverse-Branch-Block latency multi-branch vs fused vs a plain conv, ONNX Runtime and ExecuTorch.

For each block shape (channels 32/64/128 at 56/28/14 px, stride 1 and 2,
dense and depthwise) and for a whole RepNAS model, three models are exported
and timed on one CPU thread:

- ``multi``: the four-branch DBB (kxk + 1x1 + 1x1_kxk + 1x1_avg) + ReLU, with random BN statistics;
- ``fused``: the same block after ``reparameterize_model`` (one conv with bias + ReLU);
- ``plain``: a freshly built ``Conv2d(bias=True)`` + ReLU of the same shape.

Timing uses ``profilers.protocol.measure`` (warm-up, then repeats until the
running median settles), interleaved over several rounds (multi, fused, plain,
multi, ...) and summarised as the median of the round medians, which is more
robust on a shared machine. Parity is the fused runtime output against the
multi-branch torch eval output (relative max abs diff).

``--backend NAME`` times through any available profiler backend instead
(``backend.prepare`` + ``backend.measure``: e.g. ``torch-cuda`` with CUDA-graph
replay, ``tensorrt``, ``onnxruntime-cuda``); its parity column is the fused
torch module against the multi-branch one.

    .venv/bin/python benchmarks/fusion.py [--quick] [--json out.json]
    PYTHONPATH=. python benchmarks/fusion.py --quick --backend torch-cuda
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latnas import get_space  # noqa: E402
from latnas.schema.blocks import DiverseBranchBlock  # noqa: E402
from latnas.export.executorch import load_executorch_method, lower_to_executorch, set_executorch_threads  # noqa: E402
from profilers.runtimes.onnx import export_onnx  # noqa: E402
from latnas.reparam import reparameterize_model  # noqa: E402
from profilers.base import ProtocolConfig  # noqa: E402
from profilers.protocol import measure  # noqa: E402

FOUR = "kxk+1x1+1x1_kxk+1x1_avg"
HW = {32: 56, 64: 28, 128: 14}


def randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return model.eval()


def block_case(c: int, stride: int, depthwise: bool, seed: int = 0):
    torch.manual_seed(seed)
    g = c if depthwise else 1
    multi = randomise_bn(DiverseBranchBlock(c, c, 3, stride, g, branches=FOUR), seed)
    plain = nn.Sequential(nn.Conv2d(c, c, 3, stride, 1, groups=g, bias=True), nn.ReLU()).eval()
    name = f"c{c} {HW[c]}px s{stride} {'dw' if depthwise else 'dense'}"
    return name, multi, plain, torch.randn(1, c, HW[c], HW[c])


def model_case(seed: int = 0):
    space = get_space("repnas")
    from latnas.schema.spaces.repnas import FOUR_BRANCH_DBB, KXK_ONLY

    four = [FOUR_BRANCH_DBB] * space.n_layers  # the four-branch DBB (+ id where the shape is kept)
    torch.manual_seed(seed)
    multi = randomise_bn(space.build(four), seed)
    plain = reparameterize_model(space.build([KXK_ONLY] * space.n_layers))  # fused: plain convs
    return "RepNAS model (9 layers, 4-branch)", multi, plain, torch.randn(1, *space.input_shape)


def onnx_runner(model: nn.Module, x: torch.Tensor, tmp: Path, tag: str):
    import onnxruntime as ort

    path = tmp / f"{tag}.onnx"
    export_onnx(model, x, path, dynamo=True)  # what `latnas export` ships
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return (lambda: sess.run(None, feed)), (lambda: sess.run(None, feed)[0])


def executorch_runner(model: nn.Module, x: torch.Tensor, tmp: Path, tag: str):
    path = tmp / f"{tag}.pte"
    _, program = lower_to_executorch(model, x)
    path.write_bytes(program.buffer)
    method = load_executorch_method(path)
    inputs = [x.contiguous()]
    return (lambda: method.execute(inputs)), (lambda: method.execute(inputs)[0].numpy())


RUNTIMES = {"onnxruntime": onnx_runner, "executorch": executorch_runner}


def rel_diff(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out - ref).max()) / max(1.0, float(np.abs(ref).max()))


def backend_runner(name: str):
    """A runner over a profiler backend: ``prepare`` a copy (GPU backends move modules), time with its ``measure``."""
    from profilers import get_backend, require_available

    backend = require_available(get_backend(name))

    def make(model: nn.Module, x: torch.Tensor, tmp: Path, tag: str):
        return backend.prepare(copy.deepcopy(model), x.clone(), CONFIG[0]), None

    make.backend = backend
    return make


CONFIG: list[ProtocolConfig] = [ProtocolConfig()]  # the run's protocol (backend runners prepare with it)


def bench_case(name, multi, plain, x, runtime, tmp: Path, config: ProtocolConfig, rounds: int) -> dict:
    fused = reparameterize_model(multi)
    with torch.no_grad():
        ref = multi(x).numpy()
    CONFIG[0] = config
    make = RUNTIMES[runtime]
    timer = make.backend.measure if hasattr(make, "backend") else measure
    runners = {}
    for tag, model in (("multi", multi), ("fused", fused), ("plain", plain)):
        runners[tag] = make(model, x, tmp, f"{runtime}_{tag}_{abs(hash(name))}")
    if runners["fused"][1] is not None:
        parity = rel_diff(runners["fused"][1](), ref)
    else:  # a profiler backend returns no outputs: the fused torch module stands in
        with torch.no_grad():
            parity = rel_diff(fused(x).numpy(), ref)
    medians: dict[str, list[float]] = {t: [] for t in runners}
    for _ in range(rounds):
        for tag, (fn, _) in runners.items():
            medians[tag].append(timer(fn, config).median_ms)
    ms = {t: statistics.median(v) for t, v in medians.items()}
    return {
        "case": name,
        "runtime": runtime,
        "multi_ms": ms["multi"],
        "fused_ms": ms["fused"],
        "plain_ms": ms["plain"],
        "speedup": ms["multi"] / ms["fused"],
        "fused_vs_plain": ms["fused"] / ms["plain"] - 1.0,
        "parity": parity,
    }


def print_table(rows: list[dict]) -> None:
    head = f"{'case':36s} {'runtime':12s} {'multi ms':>9s} {'fused ms':>9s} {'plain ms':>9s} {'multi/fused':>11s} {'fused vs plain':>14s} {'parity':>8s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['case']:36s} {r['runtime']:12s} {r['multi_ms']:9.3f} {r['fused_ms']:9.3f} {r['plain_ms']:9.3f} "
              f"{r['speedup']:10.2f}x {100 * r['fused_vs_plain']:+13.1f}% {r['parity']:8.1e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer shapes, fewer repeats (about a minute or two)")
    ap.add_argument("--runtimes", default=None, help="onnxruntime,executorch (default, unless --backend is given)")
    ap.add_argument("--backend", default=None,
                    help="profiler backend(s) to time through, comma separated (e.g. torch-cuda, tensorrt, onnxruntime-cuda)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    set_executorch_threads(1)
    if args.quick:
        shapes = [(32, 1, False), (128, 2, True)]
        config = ProtocolConfig(warmup_runs=3, warmup_seconds=0.02, min_repeats=10, max_repeats=40,
                                max_seconds=0.3, rel_tolerance=0.02, stable_windows=2, window=5)
        rounds = 3
    else:
        shapes = [(c, s, dw) for c in (32, 64, 128) for s in (1, 2) for dw in (False, True)]
        config = ProtocolConfig(warmup_runs=10, warmup_seconds=0.1, min_repeats=30, max_repeats=200,
                                max_seconds=1.0, rel_tolerance=0.01, stable_windows=3, window=10)
        rounds = 5
    cases = [block_case(c, s, dw) for c, s, dw in shapes] + [model_case()]
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        names = (args.runtimes or ("" if args.backend else "onnxruntime,executorch")) + "," + (args.backend or "")
        for runtime in [r.strip() for r in names.split(",") if r.strip()]:
            if runtime not in RUNTIMES:
                from latnas.schema.errors import LatnasError

                try:
                    RUNTIMES[runtime] = backend_runner(runtime)
                except LatnasError as exc:  # unavailable here: say so, time the rest
                    print(f"skipped {runtime}: {exc}", file=sys.stderr)
                    continue
            for name, multi, plain, x in cases:
                rows.append(bench_case(name, multi, plain, x, runtime, Path(tmp), config, rounds))
                print(f"  done {runtime:12s} {name}  ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    if not rows:
        print("nothing was timed")
        return 1
    print(f"\nbatch 1, fp32, 1 thread, torch {torch.__version__}; median of {rounds} interleaved round medians")
    print_table(rows)
    speedups = [r["speedup"] for r in rows]
    gaps = [r["fused_vs_plain"] for r in rows]
    print(f"\nheadline: fused is {statistics.median(speedups):.2f}x faster than the four-branch block "
          f"(median over rows; min {min(speedups):.2f}x, max {max(speedups):.2f}x); "
          f"fused vs plain conv: median {100 * statistics.median(gaps):+.1f}%, worst {100 * max(gaps):+.1f}%; "
          f"worst parity {max(r['parity'] for r in rows):.1e}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
