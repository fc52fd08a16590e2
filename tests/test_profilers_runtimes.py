"""The runtimes layer: one ONNX exporter, the ExecuTorch program cache, amortised samples, thread pinning."""
from __future__ import annotations

import importlib.util
import itertools

import pytest
import torch

from latnas.schema.spec import BlockSpec
from profilers.protocol import QUICK_CONFIG, AmortizedCall, calls_per_sample, measure

HAS_ET = importlib.util.find_spec("executorch") is not None
SPEC = BlockSpec("mbconv", cin=8, cout=8, h=8, w=8, kernel=3, expansion=3)


def fake_clock(step_ns):
    """A clock that advances ``step_ns`` per reading."""
    t = itertools.count(0, step_ns)
    return lambda: next(t)


def test_amortized_call_divides_by_the_call_count():
    calls = []
    clock = fake_clock(1_000)  # two readings per sample: 1 µs apart
    sample = AmortizedCall(lambda: calls.append(1), 50, clock)
    assert sample() == pytest.approx(1e-3 / 50) and len(calls) == 50
    with pytest.raises(ValueError):
        AmortizedCall(lambda: None, 0)


def test_calls_per_sample_reaches_the_minimum_sample_time():
    clock = fake_clock(20_000)  # every call reads as 20 µs
    assert calls_per_sample(lambda: None, min_sample_ms=1.0, clock=clock) == 50
    assert calls_per_sample(lambda: None, min_sample_ms=1.0, max_calls=10, clock=clock) == 10
    assert calls_per_sample(lambda: None, min_sample_ms=0.01, clock=fake_clock(5_000_000)) == 1


def test_self_timed_measure_uses_returned_samples():
    stats = measure(lambda: 0.25, QUICK_CONFIG, self_timed=True)
    assert stats.median_ms == 0.25 and stats.iqr_ms == 0.0 and stats.stable


def test_one_onnx_exporter_with_an_explicit_choice(tmp_path):
    from profilers.runtimes import ExportError
    from profilers.runtimes.onnx import exporter_choice, export_onnx, onnx_node_count

    module = SPEC.build().eval()
    path = export_onnx(module, torch.randn(SPEC.input_shape), tmp_path / "b.onnx", dynamo=False)
    assert onnx_node_count(path) > 0
    assert exporter_choice("auto") == (False, True) and exporter_choice("dynamo") == (True, False)
    with pytest.raises(ValueError):
        exporter_choice("fast")

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("cannot trace\nsecond line")

    with pytest.raises(ExportError, match="ONNX export failed \\(legacy: RuntimeError: cannot trace\\)") as err:
        export_onnx(Broken(), torch.randn(2), tmp_path / "x.onnx", dynamo=False)
    assert "\n" not in str(err.value)


def test_export_and_profilers_share_the_exporter_and_error_class():
    import latnas.export.common as common
    import latnas.export.onnx as export_onnx_mod
    import profilers.onnx_export as legacy
    from profilers.runtimes import ExportError
    from profilers.runtimes.onnx import export_onnx

    assert common.ExportError is ExportError and legacy.ExportError is ExportError
    assert export_onnx_mod.runtime_export_onnx is export_onnx and export_onnx_mod.SHIP_DYNAMO is True


def test_thread_pinning_is_one_helper():
    import profilers.protocol as protocol
    from profilers.runtimes.threads import pinned_threads

    assert protocol.pinned_threads is pinned_threads
    before = torch.get_num_threads()
    with pinned_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ------------------------------------------------------------- executorch
needs_et = pytest.mark.skipif(not HAS_ET, reason="executorch is not installed")


@needs_et
def test_program_cache_lowers_once_per_structure_and_toolchain(tmp_path, monkeypatch):
    import profilers.runtimes.executorch as et

    cache = et.ProgramCache(tmp_path / "a", versions={"executorch": "1.0", "torch": "2.9", "delegate": "xnnpack"})
    x = torch.randn(SPEC.input_shape)
    first = cache.lowered(SPEC.build().eval(), x)
    assert (cache.hits, cache.misses) == (0, 1) and len(list((tmp_path / "a").glob("*.pte"))) == 1

    def no_lowering(*a, **k):
        raise AssertionError("a cached program was lowered again")

    monkeypatch.setattr(et, "lower_to_xnnpack", no_lowering)
    again = et.ProgramCache(tmp_path / "a", versions=cache.versions)  # a rerun: a new process, same folder
    assert again.lowered(SPEC.build().eval(), x) == first  # fresh random weights, same structure
    assert (again.hits, again.misses) == (1, 0)
    other = BlockSpec("mbconv", cin=8, cout=8, h=8, w=8, kernel=5, expansion=3)
    assert et.structure_key(other.build(), x) != et.structure_key(SPEC.build(), x)
    assert et.structure_key(SPEC.build(), torch.randn(2, 8, 8, 8)) != et.structure_key(SPEC.build(), x)
    # toolchain versions pick the folder: a new executorch or torch never reuses old programs
    a = et.ProgramCache(versions={"executorch": "1.0", "torch": "2.9", "delegate": "xnnpack"})
    b = et.ProgramCache(versions={"executorch": "1.1", "torch": "2.9", "delegate": "xnnpack"})
    assert a.folder != b.folder and a.folder.parent.name == "executorch"
    (tmp_path / "a" / next(iter((tmp_path / "a").glob("*.pte"))).name).write_bytes(b"garbage")
    assert again.get(et.structure_key(SPEC.build(), x)) is None  # a damaged file is ignored, not loaded


@needs_et
def test_executorch_backend_caches_and_amortises(tmp_path, monkeypatch):
    from profilers.backends.executorch import ExecuTorchBackend

    if not ExecuTorchBackend().availability()[0]:
        pytest.skip(ExecuTorchBackend().availability()[1])
    monkeypatch.setenv("LATNAS_CACHE_DIR", str(tmp_path))
    backend = ExecuTorchBackend()
    x = torch.randn(SPEC.input_shape)
    fn = backend.prepare(SPEC.build().eval(), x, QUICK_CONFIG)
    stats = backend.measure(fn, QUICK_CONFIG)
    n = backend.measurement_meta()["calls_per_sample"]
    assert stats.median_ms > 0 and n >= 1
    assert list(tmp_path.glob("executorch/*/*.pte"))
    rerun = ExecuTorchBackend()
    rerun.prepare(SPEC.build().eval(), x, QUICK_CONFIG)
    assert (rerun.programs().hits, rerun.programs().misses) == (1, 0)
    single = ExecuTorchBackend(amortize=False)
    single.measure(fn, QUICK_CONFIG)
    assert single.measurement_meta() == {"calls_per_sample": 1, "clock": "cpu"}  # one thread: CPU clock (auto)
    wall = ExecuTorchBackend(clock="wall")
    wall.measure(fn, QUICK_CONFIG)
    assert wall.measurement_meta()["clock"] == "wall" and wall.measurement_meta()["calls_per_sample"] >= 1


def test_runner_stores_precision_layout_and_measurement_meta(tmp_path):
    """A backend's precision, layout and measurement_meta() travel with its measurements into the store."""
    from profilers.base import Backend
    from profilers.runner import profile_blocks
    from profilers.store import ProfileStore

    class Fake(Backend):
        name = "fake-gpu"
        precision = "bf16"
        layout = "channels_last"

        def __init__(self):
            self.calls = 0

        def prepare(self, module, example, config):
            return lambda: 0.5

        def measure(self, fn, config):
            self.calls += 1
            return measure(fn, config, self_timed=True)

        def measurement_meta(self):
            return {"mode_used": "graph", "replays": 7, "call": self.calls}

    backend = Fake()
    with ProfileStore(tmp_path / "s.db") as store:
        summary = profile_blocks(backend, [SPEC], store, QUICK_CONFIG, progress=False)
        assert summary.done == 1
        (m,) = store.query(backend="fake-gpu")
        assert (m.precision, m.layout) == ("bf16", "channels_last")
        assert m.meta == {"mode_used": "graph", "replays": 7, "call": 1} and m.stats.median_ms == 0.5
        assert store.get(SPEC.key, "fake-gpu", batch=SPEC.batch, precision="bf16", layout="channels_last") == m
