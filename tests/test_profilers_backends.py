"""Backends: each available one profiles tiny blocks; ORT and ExecuTorch match torch numerically."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from latnas.schema.errors import BackendUnavailable, UnknownNameError
from latnas.schema.spec import BlockSpec
from profilers import ProfileStore, measure, available_backends, get_backend, profile_block, profile_blocks, profile_model
from profilers.base import ProtocolConfig
from profilers.backends.torch_cpu import TorchCPUBackend

FAST = ProtocolConfig(warmup_runs=2, warmup_seconds=0.0, min_repeats=5, max_repeats=10, max_seconds=0.2,
                      window=5, stable_windows=1, rel_tolerance=0.05)
TINY = [
    BlockSpec("mbconv", 8, 8, 8, 8, stride=1, kernel=3, expansion=3, groups=2),  # residual + channel shuffle
    BlockSpec("skip", 8, 8, 8, 8, kernel=1),  # nn.Identity: must still profile
    BlockSpec("conv", 8, 16, 8, 8, stride=2, kernel=3),
]
AVAILABLE = available_backends()


def _skip_unless(name):
    ok, reason = AVAILABLE.get(name, (False, "not registered"))
    return pytest.mark.skipif(not ok, reason=f"{name} unavailable: {reason}")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check_positive(m, spec, name):
    assert m.key == spec.key and m.backend == name and m.kind == "block"
    assert math.isfinite(m.stats.median_ms) and m.stats.median_ms > 0
    assert m.stats.repeats >= 1 and len(m.fingerprint) == 16


@pytest.mark.parametrize("name", ["torch-cpu", "onnxruntime"])
def test_cpu_backends_profile_tiny_blocks(name):
    if not AVAILABLE.get(name, (False,))[0]:
        pytest.skip(f"{name} unavailable: {AVAILABLE.get(name)}")
    for spec in TINY:
        _check_positive(profile_block(name, spec, FAST), spec, name)


@_skip_unless("executorch")
def test_executorch_profiles_and_matches_torch():
    backend = get_backend("executorch", cache=False)  # the .pte cache is keyed by structure: its weights may be another block's
    spec = TINY[0]
    module = spec.build().eval()
    x = torch.randn(spec.input_shape, generator=torch.Generator().manual_seed(1))
    method = backend.load(backend.lower(module, x))
    out = method.execute([x])[0]
    with torch.inference_mode():
        ref = module(x)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
    stats = measure(lambda: method.execute([x]), FAST)  # the call profile_block times
    assert math.isfinite(stats.median_ms) and stats.median_ms > 0


@pytest.mark.slow
@_skip_unless("executorch")
def test_executorch_profile_block_identity_and_strided_conv():
    for s in TINY[1:]:  # the identity block lowers to an empty program and must still run
        _check_positive(profile_block("executorch", s, FAST), s, "executorch")


@_skip_unless("onnxruntime")
def test_onnxruntime_matches_torch_and_pins_threads():
    backend = get_backend("onnxruntime")
    spec = TINY[0]
    module = spec.build().eval()
    x = torch.randn(spec.input_shape, generator=torch.Generator().manual_seed(1))
    sess = backend.session(module, x, ProtocolConfig(threads=1))
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.inference_mode():
        ref = module(x)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-5)
    so = backend.session_options(ProtocolConfig(threads=2))
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1


@_skip_unless("onnxruntime")
def test_onnxruntime_io_binding_path_matches_plain_run():
    from profilers.backends.onnxruntime import bound_call

    backend = get_backend("onnxruntime")
    spec = TINY[2]
    module = spec.build().eval()
    x = torch.randn(spec.input_shape, generator=torch.Generator().manual_seed(2))
    sess = backend.session(module, x, ProtocolConfig(threads=1))
    call = bound_call(sess, x.numpy(), "cpu")  # the CUDA EP path, exercised on the CPU device
    out = call().copy_outputs_to_cpu()[0]
    np.testing.assert_allclose(out, sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], rtol=1e-6, atol=1e-6)


def test_onnxruntime_cuda_reports_reason_when_missing():
    ok, reason = AVAILABLE["onnxruntime-cuda"]
    if ok:
        pytest.skip("CUDA EP present here")
    assert "CUDAExecutionProvider" in reason and "\n" not in reason


def test_unknown_backend_and_bad_options():
    with pytest.raises(UnknownNameError, match="unknown backend"):
        get_backend("tpu-v9")
    with pytest.raises(BackendUnavailable, match="bad options"):
        get_backend("onnxruntime", provider="fpga")


def test_whole_model_profile_key():
    m = profile_model("torch-cpu", "fbnet", "8" * 22, FAST)
    assert m.key == "model:fbnet:" + "8" * 22 and m.kind == "model" and m.stats.median_ms > 0
    assert m.spec == {"space": "fbnet", "arch": "8" * 22, "batch": 1}


class FailsOnConv(TorchCPUBackend):
    name = "fails-on-conv"

    def prepare(self, module, example, config):
        if isinstance(module, torch.nn.Sequential) and isinstance(module[0], torch.nn.Conv2d) and module[0].kernel_size == (3, 3):
            raise RuntimeError("cannot lower\nthis block")
        return super().prepare(module, example, config)


def test_runner_skips_stored_and_survives_a_failing_block(tmp_path):
    backend = FailsOnConv()
    with ProfileStore(tmp_path / "p.db") as store:
        first = profile_blocks(backend, TINY, store, FAST, progress=False)
        assert (first.total, first.done, first.skipped, first.failed) == (3, 2, 0, 1)
        assert first.failures[0][0] == TINY[2].key and "\n" not in first.failures[0][1]
        again = profile_blocks(backend, TINY + TINY[:1], store, FAST, progress=False)  # duplicates collapse
        assert (again.total, again.done, again.skipped, again.failed) == (3, 0, 2, 1)
        assert {m.key for m in store.query()} == {TINY[0].key, TINY[1].key}
        assert math.isfinite(first.median_of_medians_ms)


# ------------------------------------------------------------ declared hooks
class _OnlyPrepare(TorchCPUBackend):
    """A backend that implements nothing but ``prepare``: every hook is the base default."""

    name = "only-prepare"


class _OwnTimer(TorchCPUBackend):
    """Overrides ``measure`` (as GPU backends do) and says where it measured."""

    name = "own-timer"
    calls = 0

    def measure(self, fn, config):
        type(self).calls += 1
        return measure(fn, config)

    def device_info(self):
        return {"cpu": "far-away-board"}


def test_backend_hooks_are_declared_with_defaults():
    from profilers.base import Backend

    for hook in ("measure", "measure_module", "measure_spec", "measure_specs", "measure_model", "device_info"):
        assert callable(getattr(Backend, hook)), hook
    assert Backend.remote is False and TorchCPUBackend.agent_options == frozenset()
    backend = _OnlyPrepare()
    assert backend.device_info() is None
    stats, info = backend.measure_spec(TINY[1], FAST)
    assert info is None and stats.median_ms > 0
    pairs = backend.measure_specs(TINY[:2], FAST)
    assert len(pairs) == 2 and all(s.median_ms > 0 for s, _ in pairs)
    with pytest.raises(NotImplementedError, match="prepare"):
        Backend().prepare(None, None, FAST)


def test_runner_calls_the_overridden_hooks():
    from profilers.fingerprint import device_fingerprint

    one = replace(FAST, sessions=1, extra_sessions=0)  # one session: one call of the overridden hook
    before = _OwnTimer.calls
    m = profile_block(_OwnTimer(), TINY[0], one)
    assert _OwnTimer.calls == before + 1 and m.stats.median_ms > 0
    fp, info = device_fingerprint(_OwnTimer(), 1)
    assert info["cpu"] == "far-away-board" and m.fingerprint == fp
    model = profile_model(_OwnTimer(), "fbnet", "8" * 22, one)
    assert _OwnTimer.calls == before + 2 and model.stats.median_ms > 0
    m = profile_block(_OwnTimer(), TINY[0], replace(FAST, sessions=2, extra_sessions=0))
    assert _OwnTimer.calls == before + 4 and len(m.sessions) == 2  # one call per session


def test_importing_profilers_and_backend_names_loads_no_runtime():
    """``import profilers``, its base, store and the backend registry stay free of torch and runtimes."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import profilers, profilers.base, profilers.store, profilers.backends\n"
        "from profilers.base import BACKENDS\n"
        "assert {'torch-cpu', 'onnxruntime', 'remote'} <= set(BACKENDS.names()), BACKENDS.names()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnxruntime', 'executorch', 'tensorrt'))\n"
        "print(' '.join(heavy[:5]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"
