"""Kernel profiling: sample kernel configs per kernel type, time them, store them (kind ``kernel``).

Configs are drawn from a prior shaped like real CNNs (resolution halves per
stage while channels grow; a stem conv sees 3 channels at full resolution),
then refined adaptively as nn-Meter's builder does: a quick forest is fit per
type, the configs it predicts worst out-of-bag (where the latency surface
bends) get perturbed neighbours, which are measured too. Every config is one
small ONNX model (:mod:`profilers.kernel_graphs`) timed with the backend's own
sessions and the profiling protocol (:mod:`profilers.sessions`), under the
machine's profiling lock; results go to the store keyed ``kernel:<signature>``
and a rerun measures only what is missing. Whole ONNX files go through the
same path (:func:`profile_onnx_file`, kind ``model``).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from latnas.schema.errors import BackendUnavailable, LatnasError
from latnas.schema.kernels.records import ACTIVATIONS, Kernel, kernel_features
from profilers.base import Backend, ProtocolConfig
from profilers.fingerprint import device_fingerprint
from profilers.items import measurement_of
from profilers.kernel_graphs import kernel_onnx
from profilers.lock import profiling_lock
from profilers.sessions import SessionHooks, SessionItem, run_sessions

#: kernel type -> configs sampled before the adaptive round (``scale`` multiplies)
SAMPLES = {"conv": 420, "dwconv": 260, "fc": 40, "pool": 30, "gap": 50, "add": 60, "mul": 60, "act": 100,
           "concat": 40, "slice": 30, "transpose": 40, "layernorm": 40}
ADAPTIVE_SHARE = 0.25  # extra configs in the adaptive round, as a share of the first round
#: a lighter protocol for kernels: µs-scale items settle fast, and there are a thousand of them
KERNEL_CONFIG = ProtocolConfig(warmup_runs=5, warmup_seconds=0.02, min_repeats=20, max_repeats=200, max_seconds=0.4,
                               sessions=2, extra_sessions=1, session_agree=0.05)
#: one short session per kernel: smoke tests and a first look (`latnas kernels profile --quick`)
QUICK_KERNEL_CONFIG = ProtocolConfig(warmup_runs=2, warmup_seconds=0.005, min_repeats=5, max_repeats=40, max_seconds=0.05,
                                     sessions=1, extra_sessions=0, session_agree=0.2)
CONV_ACTS = ("none", "relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish")
ELEM_ACTS = ("relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish", "gelu")


def _r8(x: float, lo: int = 8, hi: int = 2048) -> int:
    return int(min(max(8 * round(x / 8), lo), hi))


def _place(rng) -> tuple[int, int, int]:
    """(stage, h, typical channels) of a layer in a CNN at a random input resolution."""
    res = int(rng.integers(96, 289))
    stage = int(rng.integers(1, 6))
    h = max(int(np.ceil(res / 2 ** stage)), 1)
    return stage, h, _r8(12 * 2 ** stage * float(np.exp(rng.normal(0, 0.7))))


def sample_kernel(op: str, rng) -> Kernel:
    """One config of kernel type ``op`` from the CNN-shaped prior."""
    stage, h, c = _place(rng)
    if op in ("conv", "dwconv"):
        k = int(rng.choice([1, 1, 3, 3, 5, 7] if op == "dwconv" else [1, 1, 1, 3, 3, 5, 7]))
        s = int(rng.choice([1, 1, 1, 2]))
        if op == "conv" and rng.random() < 0.08:  # stem: 3 channels at (half) the input resolution
            cin, h, k, s = 3, h * 2 ** stage // int(rng.choice([1, 2])), 3, 2
        else:
            cin = c * (int(rng.choice([1, 1, 2, 4, 6])) if op == "dwconv" else 1)
        cout = cin if op == "dwconv" else _r8(cin * float(np.exp(rng.uniform(np.log(0.15), np.log(6)))))
        groups = cin if op == "dwconv" else 1
        if op == "conv" and cin >= 16 and rng.random() < 0.08:
            groups = int(rng.choice([2, 4, 8]))
            cin, cout = _r8(cin, 8 * groups), _r8(cout, 8 * groups)
            cin, cout = cin - cin % groups, cout - cout % groups
        residual = int(s == 1 and rng.random() < 0.25)
        if residual and op == "conv":
            cout = cin
        ho = (h + 2 * (k // 2) - k) // s + 1
        return Kernel(op, cin=cin, cout=cout, kernel=k, stride=s, groups=groups, h=h, w=h, ho=ho, wo=ho,
                      act=str(rng.choice(CONV_ACTS)), residual=residual)
    if op == "fc":
        cin, cout = _r8(c * 4, 8, 4096), int(rng.choice([1000, _r8(c * 4, 8, 4096)]))
        rows = 1 if rng.random() < 0.6 else h * h
        return Kernel("fc", cin=cin, cout=cout, h=rows, ho=rows, act=str(rng.choice(["none", "relu", "hswish"])))
    if op == "pool":
        k, s = int(rng.choice([2, 3])), 2
        h = h * 2
        return Kernel("pool", cin=c, cout=c, kernel=k, stride=s, h=h, w=h, ho=(h + 2 * ((k - 1) // 2) - k) // s + 1,
                      wo=(h + 2 * ((k - 1) // 2) - k) // s + 1, variant=str(rng.choice(["max", "ave"])))
    if op == "gap":
        c = c * int(rng.choice([1, 4, 6]))
        return Kernel("gap", cin=c, cout=c, h=h, w=h)
    c = c * int(rng.choice([1, 1, 2, 4, 6]))
    if op in ("add", "mul"):
        variant = str(rng.choice(["same", "broadcast", "scalar"]))
        return Kernel(op, cin=c, cout=c, h=h, w=h, ho=h, wo=h, inputs=2, variant=variant)
    if op == "act":
        return Kernel("act", cin=c, cout=c, h=h, w=h, ho=h, wo=h, variant=str(rng.choice(ELEM_ACTS)))
    if op == "concat":
        n = int(rng.choice([2, 2, 3, 4]))
        return Kernel("concat", cin=c // 2 * n, cout=c // 2 * n, h=h, w=h, ho=h, wo=h, inputs=n)
    if op == "slice":
        return Kernel("slice", cin=c, cout=max(c // int(rng.choice([2, 4])), 1), h=h, w=h, ho=h, wo=h)
    if op == "transpose":
        return Kernel("transpose", cin=c, cout=c, h=h, w=h, ho=h, wo=h, variant=str(rng.choice(["0231", "0312"])))
    if op == "layernorm":
        return Kernel("layernorm", cin=c, cout=c, h=h * h, ho=h * h)
    raise BackendUnavailable(f"no sampler for kernel type {op!r}")


def neighbour(k: Kernel, rng) -> Kernel:
    """A perturbed copy of ``k`` (channels and resolution nudged), same type and pattern."""
    f = float(np.exp(rng.uniform(-0.35, 0.35)))
    g = float(np.exp(rng.uniform(-0.25, 0.25)))
    n = replace(k, nodes=[])
    if k.op in ("conv", "dwconv") and k.cin > 3:
        n.cin = _r8(k.cin * f)
        n.cout = n.cin if (k.op == "dwconv" or k.residual) else _r8(k.cout * float(np.exp(rng.uniform(-0.35, 0.35))))
        if k.op == "dwconv":
            n.groups = n.cin
        elif k.groups > 1:
            n.cin, n.cout = max(n.cin - n.cin % k.groups, k.groups), max(n.cout - n.cout % k.groups, k.groups)
    elif k.op not in ("conv", "dwconv"):
        n.cin = max(_r8(k.cin * f), 1)
        n.cout = n.cin if k.cout == k.cin else max(_r8(k.cout * f), 1)
        if k.op == "concat":  # equal parts per input
            n.cin = n.cout = max(n.cin - n.cin % k.inputs, k.inputs)
    if k.h > 1 and k.op not in ("fc", "layernorm"):
        n.h = n.w = max(int(round(k.h * g)), 2)
        if k.op in ("conv", "dwconv"):
            n.ho = n.wo = (n.h + 2 * (k.kernel // 2) - k.kernel) // k.stride + 1
        elif k.op == "pool":
            n.ho = n.wo = (n.h + 2 * ((k.kernel - 1) // 2) - k.kernel) // k.stride + 1
        else:
            n.ho = n.wo = 1 if k.op == "gap" else n.h
    if k.op == "slice":
        n.cout = min(n.cout, n.cin)
    return n


# ------------------------------------------------------------------ measuring
@dataclass
class OnnxItem:
    """One ONNX model to time: store key, stored spec, serialized model, input shape."""

    key: str
    spec: dict
    onnx: bytes
    shape: tuple[int, ...]


@dataclass
class KernelRun:
    """What a run did: counts, wall time, the stored measurements' medians by key."""

    backend: str
    fingerprint: str = ""
    total: int = 0
    done: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    medians: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def require_onnx_backend(backend: Backend) -> Backend:
    """Kernels and ONNX files run on backends that open ONNX files (onnxruntime, onnxruntime-cuda)."""
    if not backend.name.startswith("onnxruntime"):
        raise BackendUnavailable(f"kernel and ONNX-file profiling run on onnxruntime backends, not {backend.name!r}")
    ok, reason = backend.availability()
    if not ok:
        raise BackendUnavailable(f"backend {backend.name!r} is not available here: {reason}")
    return backend


def _session_item(backend: Backend, it: OnnxItem, config: ProtocolConfig) -> SessionItem:
    from profilers.backends.onnxruntime import OnnxArtifact

    def build():
        folder = Path(tempfile.mkdtemp(prefix="latnas-kernel-"))
        (folder / "model.onnx").write_bytes(it.onnx)
        x = np.random.default_rng(0).standard_normal(it.shape).astype(np.float32)
        return OnnxArtifact(folder / "model.onnx", x)

    return SessionItem(it.key, build, lambda art: backend.measure_session(art, config), backend.release)


def measure_onnx_items(backend: Backend, items: list[OnnxItem], store, config: ProtocolConfig, kind: str,
                       force: bool = False, wait: bool = True, say: Callable[[str], None] = lambda s: None) -> KernelRun:
    """Time ``items`` not yet in ``store`` (interleaved sessions, under the profiling lock); store each as ``kind``."""
    require_onnx_backend(backend)
    fp, info = device_fingerprint(backend, config.threads)
    store.use_device(fp, info)
    run = KernelRun(backend=backend.name, fingerprint=fp, total=len(items))
    start = time.perf_counter()
    with profiling_lock(wait=wait, notify=say):
        stored = set() if force else store.stored_keys(backend.name, fp)
        todo = [it for it in items if (it.key, 1) not in stored]
        run.skipped = len(items) - len(todo)
        by_key = {it.key: it for it in todo}

        def on_done(item: SessionItem) -> None:
            it = by_key[item.key]
            m = measurement_of(backend, kind, it.key, 1, it.spec, item.sessions, config, fp)
            if store.put(m, replace=force):
                run.done += 1
            run.medians[it.key] = m.stats.median_ms

        def on_fail(item: SessionItem, exc: BaseException) -> None:
            run.failures.append((item.key, " ".join(str(exc).split())[:200] or type(exc).__name__))

        run_sessions([_session_item(backend, it, config) for it in todo], config, SessionHooks(on_done=on_done, on_fail=on_fail))
    run.wall_s = time.perf_counter() - start
    return run


def kernel_item(k: Kernel) -> OnnxItem:
    data, shape = kernel_onnx(k)
    spec = k.to_dict()
    spec.pop("nodes")
    return OnnxItem(f"kernel:{k.signature()}", spec, data, shape)


def _adaptive(kernels: list[Kernel], ms: dict[str, float], n_new: int, rng) -> list[Kernel]:
    """Neighbours of the configs a quick forest predicts worst out-of-bag (where the surface bends)."""
    from sklearn.ensemble import RandomForestRegressor

    have = [k for k in kernels if f"kernel:{k.signature()}" in ms]
    if len(have) < 10 or n_new <= 0:
        return []
    y = np.log([ms[f"kernel:{k.signature()}"] for k in have])
    rf = RandomForestRegressor(n_estimators=40, min_samples_leaf=1, oob_score=True, random_state=0, n_jobs=1)
    rf.fit(kernel_features(have), y)
    err = np.abs(np.nan_to_num(rf.oob_prediction_ - y))
    worst = np.argsort(-err)[: max((n_new + 1) // 2, 1)]
    return [neighbour(have[i], rng) for i in worst for _ in range(2)][:n_new]


def profile_kernels(backend: Backend, store, config: ProtocolConfig = KERNEL_CONFIG, scale: float = 1.0,
                    ops: list[str] | None = None, adaptive: bool = True, seed: int = 0, wait: bool = True,
                    say: Callable[[str], None] = lambda s: None) -> list[KernelRun]:
    """Sample and time kernel configs of every type in ``ops`` (default all); returns one run per round."""
    require_onnx_backend(backend)
    rng = np.random.default_rng(seed)
    ops = list(ops or SAMPLES)
    first = {op: [sample_kernel(op, rng) for _ in range(max(int(SAMPLES[op] * scale), 4))] for op in ops}
    say(f"round 1: {sum(map(len, first.values()))} kernel configs over {len(ops)} types")
    runs = []
    for op, ks in first.items():  # one bounded lock hold per type: other runs on the machine get their turn
        runs.append(measure_onnx_items(backend, [kernel_item(k) for k in ks], store, config, "kernel", wait=wait, say=say))
        say(f"  {op}: {runs[-1].done} measured, {runs[-1].skipped} already stored, {len(runs[-1].failures)} failed"
            f" ({runs[-1].wall_s:.0f} s)")
    if not adaptive:
        return runs
    ms = _stored_medians(store, backend.name, runs[0].fingerprint)
    extra = [k for op, ks in first.items() for k in _adaptive(ks, ms, int(len(ks) * ADAPTIVE_SHARE), rng)]
    say(f"round 2 (adaptive): {len(extra)} neighbours of the worst-predicted configs")
    runs.append(measure_onnx_items(backend, [kernel_item(k) for k in extra], store, config, "kernel", wait=wait, say=say))
    return runs


def _stored_medians(store, backend: str, fp: str) -> dict[str, float]:
    return {m.key: m.stats.median_ms for m in store.query(backend=backend, fingerprint=fp, kind="kernel")}


def onnx_file_item(backend_name: str, path: str | Path) -> OnnxItem:
    """A whole ONNX file (one static input) as an item: key = file name without ``.onnx``, its kernels in the spec."""
    from latnas.schema.kernels.graph import detect_kernels, load_onnx, model_input_shape

    path = Path(path)
    model = load_onnx(path)
    shape = model_input_shape(model)
    key = path.name[:-5] if path.name.endswith(".onnx") else path.name
    spec = {"onnx": path.name, "input_shape": list(shape)}
    try:  # the kernels, so `latnas train --kernels` can fit the whole-model correction on this model
        spec["kernels"] = [{k: v for k, v in kn.to_dict().items() if k != "nodes"} for kn in detect_kernels(model, backend_name)]
    except LatnasError as exc:  # an op outside the kernel set: still measured, not used for the correction
        spec["kernels_error"] = str(exc)
    return OnnxItem(key, spec, model.SerializeToString(), shape)


def profile_onnx_file(backend: Backend, path: str | Path, store, config: ProtocolConfig, force: bool = False,
                      wait: bool = True, say: Callable[[str], None] = lambda s: None) -> KernelRun:
    """Time a whole ONNX file (one static input) and store it as kind ``model``, key = file name without ``.onnx``."""
    return measure_onnx_items(backend, [onnx_file_item(backend.name, path)], store, config, "model", force=force,
                              wait=wait, say=say)
