"""GPU backends: ``torch-cuda`` and ``tensorrt``.

Without a GPU (or TensorRT) the hardware tests skip with the reason, and the
tests below them check that the backends say why in one line and refuse to
profile with :class:`BackendUnavailable`.
"""
from __future__ import annotations

import copy
import importlib.util
import itertools

import pytest
import torch

from latnas.schema.errors import BackendUnavailable
from latnas.schema.spec import BlockSpec
from profilers.backends.tensorrt import TRT_MISSING_REASON, EngineOptions, TensorRTBackend, default_timing_cache_path
from profilers.backends.torch_cuda import NO_GPU_REASON, TorchCUDABackend, measure_self_timed
from profilers.base import ProtocolConfig

HAS_CUDA = torch.cuda.is_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason=NO_GPU_REASON)
needs_trt = pytest.mark.skipif(not (HAS_CUDA and HAS_TRT), reason=f"needs a CUDA GPU and TensorRT: {TRT_MISSING_REASON if not HAS_TRT else NO_GPU_REASON}")

FAST = ProtocolConfig(warmup_runs=3, warmup_seconds=0.0, min_repeats=10, max_repeats=40, max_seconds=1.0, window=5, stable_windows=2)
SPEC = BlockSpec("mbconv", cin=16, cout=16, h=16, w=16, kernel=3, expansion=3)


# ------------------------------------------------------------ no hardware
@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is visible: the no-GPU path does not apply")
def test_torch_cuda_unavailable_says_why_and_refuses():
    backend = TorchCUDABackend()
    assert backend.availability() == (False, NO_GPU_REASON)
    with pytest.raises(BackendUnavailable, match="torch-cuda.*no CUDA GPU visible to torch"):
        backend.prepare(SPEC.build(), torch.randn(SPEC.input_shape), FAST)


@pytest.mark.skipif(HAS_CUDA and HAS_TRT, reason="TensorRT and a GPU are present: the unavailable path does not apply")
def test_tensorrt_unavailable_says_why_and_refuses():
    from profilers.backends.tensorrt import layer_times

    ok, reason = TensorRTBackend().availability()
    assert not ok and "\n" not in reason
    assert reason == (TRT_MISSING_REASON if not HAS_TRT else NO_GPU_REASON)
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        TensorRTBackend(precision="fp16").prepare(SPEC.build(), torch.randn(SPEC.input_shape), FAST)
    with pytest.raises(BackendUnavailable):
        layer_times(SPEC.build(), torch.randn(SPEC.input_shape))


@pytest.mark.skipif(HAS_CUDA and HAS_TRT, reason="GPU backends are available here")
def test_runner_refuses_unavailable_gpu_backends(tmp_path):
    from profilers.runner import profile_block, profile_blocks
    from profilers.store import ProfileStore

    for name in ("torch-cuda", "tensorrt"):
        ok = TorchCUDABackend().availability()[0] if name == "torch-cuda" else TensorRTBackend().availability()[0]
        if ok:
            continue
        with pytest.raises(BackendUnavailable, match=name):
            profile_block(name, SPEC, FAST)
        with ProfileStore(tmp_path / f"{name}.sqlite") as store, pytest.raises(BackendUnavailable, match=name):
            profile_blocks(name, [SPEC], store, FAST, progress=False)


def test_gpu_backends_are_registered_with_options():
    import profilers.backends  # noqa: F401
    from profilers.base import BACKENDS

    assert BACKENDS.get("torch-cuda") is TorchCUDABackend and BACKENDS.get("tensorrt") is TensorRTBackend
    assert TorchCUDABackend.self_timed and TensorRTBackend.self_timed
    assert TensorRTBackend(precision="fp16", workspace_mb=256).options == EngineOptions(precision="fp16", workspace_mb=256)
    for bad in ({"precision": "int3"}, {"workspace_mb": 0}, {"optimization_level": 9}):
        with pytest.raises(ValueError):
            TensorRTBackend(**bad)
    with pytest.raises(ValueError):
        TorchCUDABackend(precision="fp8")
    with pytest.raises(TypeError):
        TensorRTBackend(nonsense=1)


def test_timing_cache_path_is_per_version_and_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("LATNAS_CACHE_DIR", str(tmp_path))
    a = default_timing_cache_path("10.9.0", "NVIDIA H100 80GB HBM3")
    b = default_timing_cache_path("11.0.1", "NVIDIA H100 80GB HBM3")
    assert a.parent == tmp_path / "tensorrt" and a != b
    assert a.name == "timing-10.9.0-nvidia-h100-80gb-hbm3.cache"


def test_self_timed_protocol_uses_returned_samples():
    """The CUDA-event loop applies the shared stopping rule to the ms the callable returns."""
    constant = measure_self_timed(lambda: 2.5, FAST)
    # window 5, min 10, 2 stable windows: medians at 5 (first), 10 (stable 1), 15 (stable 2) -> stop.
    assert constant.stable and constant.repeats == 15 and constant.median_ms == 2.5 and constant.iqr_ms == 0.0
    assert constant.warmup_runs >= FAST.warmup_runs
    drifting = itertools.count(1)
    stats = measure_self_timed(lambda: float(next(drifting)), FAST)  # median never settles
    assert not stats.stable and stats.repeats == FAST.max_repeats
    assert stats.min_ms == FAST.warmup_runs + 1  # warm-up samples are not in the statistics


# ------------------------------------------------------------- torch-cuda
@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_profiles_a_block():
    from profilers.runner import profile_block

    m = profile_block(TorchCUDABackend(), SPEC, FAST)
    assert m.stats.median_ms > 0 and m.stats.repeats >= FAST.min_repeats
    assert m.backend == "torch-cuda"


@pytest.mark.gpu
@needs_cuda
def test_cuda_events_time_the_device_not_the_host():
    """Event time of one run is within its synchronised host wall time."""
    import time

    fn = TorchCUDABackend().prepare(SPEC.build(), torch.randn(SPEC.input_shape), FAST)
    for _ in range(5):
        fn()
    t0 = time.perf_counter()
    device_ms = fn()
    host_ms = (time.perf_counter() - t0) * 1e3
    assert 0 < device_ms <= host_ms


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_fp16_matches_fp32_outputs():
    module = SPEC.build().eval()
    x = torch.randn(SPEC.input_shape)
    ref = module(x)
    half = module.to("cuda", dtype=torch.float16)(x.to("cuda", dtype=torch.float16)).float().cpu()
    assert torch.allclose(ref, half, atol=5e-2, rtol=5e-2)


# --------------------------------------------------------------- tensorrt
@pytest.mark.tensorrt
@needs_trt
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-2), ("fp16", 5e-2)])  # fp32 engines may use TF32
def test_tensorrt_engine_matches_torch_and_profiles(tmp_path, monkeypatch, precision, tol):
    import tensorrt as trt

    from profilers.backends.tensorrt import EngineRunner, build_engine
    from profilers.runner import profile_block

    monkeypatch.setenv("LATNAS_CACHE_DIR", str(tmp_path))
    cache = default_timing_cache_path(trt.__version__, torch.cuda.get_device_name(0))
    opts = EngineOptions(precision=precision, workspace_mb=256)
    module = SPEC.build().eval()
    x = torch.randn(SPEC.input_shape)
    ref = module(x)
    engine = build_engine(copy.deepcopy(module), x, opts)  # build_engine moves/casts its module
    runner = EngineRunner(engine, x.half() if precision == "fp16" else x)
    out = next(iter(runner.run().values())).float().cpu()
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=tol, rtol=tol)
    assert cache.is_file() and cache.stat().st_size > 0
    m = profile_block(TensorRTBackend(precision=precision), SPEC, FAST)
    assert m.stats.median_ms > 0 and m.backend == "tensorrt"


@pytest.mark.tensorrt
@needs_trt
def test_tensorrt_layer_times(tmp_path, monkeypatch):
    from profilers.backends.tensorrt import layer_times

    monkeypatch.setenv("LATNAS_CACHE_DIR", str(tmp_path))
    times = layer_times(SPEC.build(), torch.randn(SPEC.input_shape), runs=5, warmup=2, timing_cache=False)
    assert times and all(v >= 0 for v in times.values()) and sum(times.values()) > 0


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is visible: the no-GPU path does not apply")
def test_cli_profile_with_gpu_backend_fails_in_one_line(tmp_path, capsys):
    from latnas.cli.main import main

    rc = main(["profile", "--backend", "torch-cuda", "--store", str(tmp_path / "p.db"), "--limit", "1", "--quick", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().count("\n") == 0
    assert err.startswith("error: ") and NO_GPU_REASON in err


# ------------------------------------------- TensorRT build logic, no GPU
class _FakeTRT:
    """Just enough of the TensorRT Python API to drive build_serialized_engine on a CPU."""

    def __init__(self, version, parse_ok=True, build_ok=True):
        import importlib.machinery
        import types

        self.calls = {}
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, severity):
                self.severity = severity

        class Cache:
            def __init__(self, blob):
                self.blob = bytes(blob)

            def serialize(self):
                return self.blob + b"+tactics"

        class Config:
            def __init__(self):
                self.profiling_verbosity = None
                self.cache = None

            def set_memory_pool_limit(self, pool, size):
                fake.calls["pool"] = (pool, size)

            def create_timing_cache(self, blob):
                fake.calls.setdefault("cache_blobs", []).append(bytes(blob))
                return Cache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls["flags"] = flags
                return object()

            def create_builder_config(self):
                fake.calls["config"] = Config()
                return fake.calls["config"]

            def build_serialized_network(self, network, config):
                return b"engine-bytes" if build_ok else None

        class OnnxParser:
            num_errors = 0 if parse_ok else 2

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                fake.calls["onnx"] = path
                return parse_ok

            def get_error(self, i):
                return f"In node {i} (Conv):\nUNSUPPORTED_NODE: something"

        mod = types.ModuleType("tensorrt")
        mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        mod.__version__ = version
        mod.Logger, mod.Builder, mod.OnnxParser = Logger, Builder, OnnxParser
        mod.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
        mod.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        mod.ProfilingVerbosity = types.SimpleNamespace(DETAILED="detailed")
        self.module = mod


@pytest.fixture
def fake_trt(monkeypatch):
    import sys

    from profilers.backends import tensorrt as trt_backend

    def install(*args, **kwargs):
        fake = _FakeTRT(*args, **kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
        trt_backend._logger.cache_clear()
        return fake

    yield install
    trt_backend._logger.cache_clear()


@pytest.mark.parametrize("version, flags", [("10.9.0", 1 << 1), ("11.0.1", 0)])
def test_build_sets_typing_flags_and_persists_timing_cache(fake_trt, tmp_path, monkeypatch, version, flags):
    from profilers.backends.tensorrt import build_serialized_engine

    import profilers.runtimes.tensorrt as rt

    fake = fake_trt(version)
    monkeypatch.setenv("LATNAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(rt, "gpu_name", lambda device=0: "NVIDIA H200")
    cache = default_timing_cache_path(version, "NVIDIA H200")  # the runtime's own file, not the caller's
    assert cache.parent == tmp_path / "cache" / "tensorrt"
    opts = EngineOptions(timing_cache=True, workspace_mb=64, optimization_level=2)
    assert build_serialized_engine(tmp_path / "m.onnx", opts) == b"engine-bytes"
    assert fake.calls["flags"] == flags  # STRONGLY_TYPED on 10.x, always-on (no flag) on 11.x
    assert fake.calls["pool"] == ("workspace", 64 << 20)
    assert fake.calls["config"].profiling_verbosity == "detailed"
    assert fake.calls["config"].builder_optimization_level == 2
    assert cache.read_bytes() == b"+tactics" and fake.calls["cache_blobs"] == [b""]
    build_serialized_engine(tmp_path / "m.onnx", opts)  # the second build starts from the saved cache
    assert fake.calls["cache_blobs"] == [b"", b"+tactics"] and cache.read_bytes() == b"+tactics+tactics"
    assert not list(cache.parent.glob(".*.tmp"))


def test_build_errors_are_one_line(fake_trt, tmp_path):
    from profilers.backends.tensorrt import EngineBuildError, build_serialized_engine

    fake_trt("10.9.0", parse_ok=False)
    with pytest.raises(EngineBuildError, match="could not parse the ONNX model: In node 0 \\(Conv\\): UNSUPPORTED") as info:
        build_serialized_engine(tmp_path / "m.onnx", EngineOptions(timing_cache=False))
    assert "\n" not in str(info.value)
    fake_trt("10.9.0", build_ok=False)
    with pytest.raises(EngineBuildError, match="failed to build"):
        build_serialized_engine(tmp_path / "m.onnx", EngineOptions(timing_cache=False))


def test_timing_cache_is_never_a_caller_path():
    """Issue 14: a remote client must not choose a file the backend writes."""
    from latnas.schema.errors import LatnasError

    for bad in ("/etc/passwd", "../x.cache", 3):
        with pytest.raises(ValueError, match="runtime's own"):
            EngineOptions(timing_cache=bad)
        with pytest.raises(ValueError):
            TensorRTBackend(timing_cache=bad)
    assert EngineOptions(timing_cache="false").timing_cache is False
    assert EngineOptions().timing_cache is True
    from profilers.runtimes.tensorrt import EngineBuildError

    assert issubclass(EngineBuildError, LatnasError)  # one-line user-facing error


# ------------------------------------------------ timing modes (fake device)
class FakeDevice:
    """A GPU stand-in: one forward pass costs ``pass_ms`` device time plus ``launch_ms`` when eager."""

    def __init__(self, pass_ms=0.02, launch_ms=0.18, capture_error=None, clocks=(1980.0, 1980.0)):
        self.pass_ms, self.launch_ms, self.capture_error = pass_ms, launch_ms, capture_error
        self.clocks = list(clocks)
        self.log: list[str] = []

    def time_ms(self, fn):
        return float(fn())

    def capture(self, work, replays):
        self.log.append(f"capture x{replays}")
        if self.capture_error is not None:
            raise self.capture_error
        return lambda: replays * self.pass_ms  # one launch for the whole graph: no per-pass overhead

    def flush_l2(self):
        self.log.append("flush")

    def sm_clock_mhz(self):
        return self.clocks.pop(0) if self.clocks else None

    def warm_clocks(self, seconds):
        self.log.append(f"warm {seconds}")


def _work(device):
    return lambda: device.pass_ms + device.launch_ms


def test_choose_replays_spans_the_minimum_sample():
    from profilers.runtimes.gpu_timing import choose_replays

    assert choose_replays(0.02, 1.0, 1000) == 50
    assert choose_replays(0.3, 1.0, 1000) == 4
    assert choose_replays(5.0, 1.0, 1000) == 1
    assert choose_replays(1e-6, 1.0, 1000) == 1000 and choose_replays(0.0, 1.0, 64) == 64


def test_graph_mode_divides_the_replay_and_records_how():
    from profilers.runtimes.gpu_timing import GpuTimingConfig, make_sampler

    dev = FakeDevice()
    sampler = make_sampler(_work(dev), dev, GpuTimingConfig(mode="graph", min_sample_ms=1.0))
    # probe: eager 0.2 ms -> R = 5; each sample is the graph's device time / R, launch overhead gone
    assert dev.log == ["capture x5"]
    assert sampler() == pytest.approx(0.02)
    assert sampler.meta == {"mode": "graph", "mode_used": "graph", "replays": 5, "host_bound": False}


def test_eager_mode_is_labelled_host_bound_and_never_captures():
    from profilers.runtimes.gpu_timing import GpuTimingConfig, make_sampler

    dev = FakeDevice()
    sampler = make_sampler(_work(dev), dev, GpuTimingConfig(mode="eager"))
    assert sampler() == pytest.approx(0.2) and dev.log == []
    assert sampler.meta["mode_used"] == "eager" and sampler.meta["host_bound"] is True


def test_capture_failure_falls_back_to_eager_with_the_reason():
    from profilers.runtimes.gpu_timing import GpuTimingConfig, make_sampler

    dev = FakeDevice(capture_error=RuntimeError("operation not permitted when stream is capturing\nmore"))
    sampler = make_sampler(_work(dev), dev, GpuTimingConfig(mode="graph"))
    assert sampler() == pytest.approx(0.2)
    assert sampler.meta["mode"] == "graph" and sampler.meta["mode_used"] == "eager" and sampler.meta["host_bound"]
    assert sampler.meta["fallback"] == "RuntimeError: operation not permitted when stream is capturing more"


def test_cold_mode_flushes_l2_before_every_sample():
    from profilers.runtimes.gpu_timing import GpuTimingConfig, make_sampler

    dev = FakeDevice()
    sampler = make_sampler(_work(dev), dev, GpuTimingConfig(mode="cold"))
    assert [sampler() for _ in range(3)] == [pytest.approx(0.02)] * 3
    assert dev.log == ["capture x1", "flush", "flush", "flush"]
    assert sampler.meta["mode_used"] == "cold" and sampler.meta["replays"] == 1
    failing = FakeDevice(capture_error=RuntimeError("no"))
    cold_eager = make_sampler(_work(failing), failing, GpuTimingConfig(mode="cold"))
    cold_eager()
    assert cold_eager.meta["mode_used"] == "cold-eager" and failing.log[-1] == "flush"


def test_clock_guard_warms_once_then_tops_up_and_flags_moved_clocks():
    from profilers.runtimes.cuda import measure_self_timed as timed
    from profilers.runtimes.gpu_timing import ClockGuard, GpuTimingConfig, make_sampler

    dev = FakeDevice(clocks=(1980.0, 1980.0, 1980.0, 1700.0))
    cfg = GpuTimingConfig(mode="graph", warm_seconds=2.0, rewarm_seconds=0.2)
    guard = ClockGuard(dev, cfg)
    sampler = make_sampler(_work(dev), dev, cfg)
    stats, meta = guard.measure(sampler, FAST, timed)
    assert stats.median_ms == pytest.approx(0.02) and meta["mode_used"] == "graph"
    assert meta["sm_clock_mhz_before"] == 1980.0 and meta["clock_moved"] is False
    _, meta2 = guard.measure(sampler, FAST, timed)
    assert meta2["clock_moved"] is True  # 1980 -> 1700 MHz is a 14% drop
    assert [e for e in dev.log if e.startswith("warm")] == ["warm 2.0", "warm 0.2"]
    _, unknown = guard.measure(sampler, FAST, timed)  # NVML absent: recorded as unknown
    assert unknown["sm_clock_mhz_before"] == "unknown" and unknown["clock_moved"] is None


def test_torch_cuda_options_and_fingerprint_fields():
    from profilers.runtimes.gpu_timing import TIMING_MODES

    assert TIMING_MODES == ("graph", "eager", "cold")
    b = TorchCUDABackend(precision="bf16", channels_last="true", mode="eager")
    assert (b.precision, b.layout, b.mode) == ("bf16", "channels_last", "eager")
    assert TorchCUDABackend().mode == "graph" and TorchCUDABackend().layout == "contiguous"
    for bad in ({"mode": "warm"}, {"channels_last": "maybe"}, {"min_sample_ms": 0}):
        with pytest.raises(ValueError):
            TorchCUDABackend(**bad)


# ------------------------------------------------- timing modes (real GPU)
@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("mode", ["graph", "eager", "cold"])
def test_torch_cuda_modes_store_how_they_timed(mode, tmp_path):
    from profilers.runner import profile_block
    from profilers.store import ProfileStore

    backend = TorchCUDABackend(mode=mode, warm_seconds=0.1)
    m = profile_block(backend, SPEC, FAST)
    assert m.stats.median_ms > 0 and m.meta["mode"] == mode
    assert m.meta["mode_used"] in (mode, "eager", "cold-eager")
    assert "sm_clock_mhz_before" in m.meta and "clock_moved" in m.meta
    if m.meta["mode_used"] == "graph":
        assert m.meta["replays"] >= 1 and m.stats.median_ms * m.meta["replays"] >= 0.5
    with ProfileStore(tmp_path / "s.db") as store:
        store.use_device(m.fingerprint, {})
        store.put(m)
        assert store.get(m.key, "torch-cuda").meta == m.meta


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision,channels_last,batch", [("fp16", False, 32), ("bf16", True, 1), ("fp32", True, 256)])
def test_torch_cuda_precisions_layouts_and_batches(precision, channels_last, batch):
    from dataclasses import replace as dc_replace

    from profilers.runner import profile_block

    spec = dc_replace(SPEC, batch=batch) if hasattr(SPEC, "batch") else SPEC
    m = profile_block(TorchCUDABackend(precision=precision, channels_last=channels_last, warm_seconds=0.1), spec, FAST)
    assert m.precision == precision and m.layout == ("channels_last" if channels_last else "contiguous")
    assert m.batch == spec.batch and m.meta["batch"] == spec.batch and m.stats.median_ms > 0


# ----------------------------------------------------- ORT CUDA EP graphs
def test_ort_cuda_graph_option():
    from profilers.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeCUDABackend

    assert OnnxRuntimeCUDABackend(cuda_graph="true").cuda_graph is True
    assert OnnxRuntimeCUDABackend(cuda_graph="false").cuda_graph is False
    with pytest.raises(ValueError, match="provider='cuda'"):
        OnnxRuntimeBackend(cuda_graph=True)


def _ort_cuda_ok() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return HAS_CUDA and "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _ort_cuda_ok(), reason="needs onnxruntime-gpu with the CUDA EP and a GPU")
def test_ort_cuda_graph_profiles_a_block():
    from profilers.backends.onnxruntime import OnnxRuntimeCUDABackend
    from profilers.runner import profile_block

    m = profile_block(OnnxRuntimeCUDABackend(cuda_graph=True), SPEC, FAST)
    assert m.stats.median_ms > 0
