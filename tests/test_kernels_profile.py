"""Kernel graphs, kernel profiling on onnxruntime, `train --kernels` and `predict --onnx` through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from latnas.cli.main import main  # noqa: E402
from latnas.schema.kernels import Kernel, detect_kernels  # noqa: E402
from profilers.kernel_graphs import kernel_onnx  # noqa: E402
from profilers.kernels import SAMPLES, neighbour, sample_kernel  # noqa: E402

FIELDS = ("op", "cin", "cout", "kernel", "stride", "groups", "h", "w", "ho", "wo", "act", "residual", "inputs")


@pytest.fixture(autouse=True)
def _own_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path / "locks"))


@pytest.mark.parametrize("op", sorted(SAMPLES))
def test_kernel_graph_runs_and_detects_as_itself(op):
    """Each sampled config's one-kernel ONNX model runs and is detected back as that very kernel."""
    rng = np.random.default_rng(3)
    for k in [sample_kernel(op, rng) for _ in range(3)] + [neighbour(sample_kernel(op, rng), rng)]:
        if k.h * k.w * k.cin > 2_000_000:  # keep the test fast: shapes, not speed, are checked
            continue
        data, shape = kernel_onnx(k)
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {"x": np.zeros(shape, np.float32)})
        [got] = detect_kernels(data, "onnxruntime")
        assert {f: getattr(got, f) for f in FIELDS} == {f: getattr(k, f) for f in FIELDS}, (op, k)
        if op in ("conv", "dwconv", "pool"):
            assert y.shape == (1, k.cout, k.ho, k.wo)


def _cli(args, capsys):
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    return rc, cap


@pytest.mark.slow  # ~3 s alone, ~10 s on the loaded VM (first sklearn import)
def test_profile_kernels_times_on_onnxruntime_and_adapts(tmp_path, monkeypatch):
    """Real ORT timing of a few configs (fingerprinting stubbed: it takes seconds), then the adaptive round."""
    import profilers.kernels as pk
    from profilers.runner import get_backend
    from profilers.store import ProfileStore

    monkeypatch.setattr(pk, "device_fingerprint", lambda backend, threads: ("f00d", {"cpu": "test"}))
    monkeypatch.setitem(pk.SAMPLES, "add", 40)
    with ProfileStore(tmp_path / "k.db") as store:
        runs = pk.profile_kernels(get_backend("onnxruntime"), store, pk.QUICK_KERNEL_CONFIG, scale=0.25, ops=["add"])
        assert [r.total for r in runs] == [10, 2] and not any(r.failures for r in runs)  # 10 sampled, 25% more
        rows = store.query(backend="onnxruntime", kind="kernel")
    assert len(rows) == sum(r.done for r in runs) >= 11 and all(m.stats.median_ms > 0 for m in rows)
    assert all(Kernel.from_dict(m.spec).op == "add" and m.key == f"kernel:{Kernel.from_dict(m.spec).signature()}" for m in rows)


@pytest.mark.slow  # fingerprinting the device takes ~7 s on the shared VM
def test_kernels_profile_tiny_resumes(tmp_path, capsys):
    db = tmp_path / "k.db"
    args = ["kernels", "profile", "--backend", "onnxruntime", "--store", db, "--types", "add", "--scale", "0.05", "--quick"]
    rc, cap = _cli(args, capsys)
    assert rc == 0, cap.err
    first = json.loads(cap.out.strip().splitlines()[-1])
    assert first["measured"] == 4 and first["failed"] == 0  # at least 4 per type; too few for the adaptive round
    rc, cap = _cli(args, capsys)  # a rerun measures nothing new
    again = json.loads(cap.out.strip().splitlines()[-1])
    assert rc == 0 and again["measured"] == 0 and again["skipped"] == 4

    from profilers.store import ProfileStore

    with ProfileStore(db, read_only=True) as store:
        rows = store.query(backend="onnxruntime", kind="kernel", all_devices=True)
    assert len(rows) == 4 and {m.spec["op"] for m in rows} == {"add"}
    assert all(m.key.startswith("kernel:") and ":op=add:" in m.key and m.stats.median_ms > 0 for m in rows)

    rc, cap = _cli(["kernels", "profile", "--store", db, "--types", "conv,warp"], capsys)
    assert rc == 2 and "warp" in cap.err and cap.err.count("\n") == 1


# ------------------------------------------------------------------ a synthetic kernel store: fast, exact
def _toy_ms(k: Kernel) -> float:
    """A made-up device: latency linear in FLOPs and bytes, with a per-type launch cost."""
    return 0.002 + {"conv": 0.01, "dwconv": 0.02}.get(k.op, 0.005) + k.flops * 2e-8 + (k.h * k.w * k.cin) * 1e-7


def _put(store, key, kind, spec, ms, fp="f00d"):
    from profilers.base import Measurement
    from profilers.protocol import summarize

    stats = summarize([ms, ms * 1.01, ms * 0.99, ms], warmup_runs=2, stable=True)
    store.put(Measurement(key, kind, "onnxruntime", fp, 1, stats, spec, 1.0))


def toy_store(path, models=(), per_type: int = 30):
    """Kernel rows for every sampled type (toy latencies) plus whole-model rows with their kernels."""
    from profilers.store import ProfileStore

    rng = np.random.default_rng(0)
    with ProfileStore(path) as store:
        store.use_device("f00d", {"cpu": "toy"})
        for op in SAMPLES:
            for _ in range(per_type):
                k = sample_kernel(op, rng)
                spec = {f: v for f, v in k.to_dict().items() if f != "nodes"}
                _put(store, f"kernel:{k.signature()}", "kernel", spec, _toy_ms(k))
        for name, kernels, ms in models:
            _put(store, name, "model", {"onnx": f"{name}.onnx", "kernels": [
                {f: v for f, v in k.to_dict().items() if f != "nodes"} for k in kernels]}, ms)
    return path


class Tiny(torch.nn.Module):
    def __init__(self, c: int = 16):
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, 1, 1, groups=c), nn.Hardswish(), nn.MaxPool2d(2))
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from profilers.onnx_export import export_onnx

    return export_onnx(Tiny().eval(), torch.randn(1, 3, 32, 32), tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def test_train_kernels_and_predict_onnx_end_to_end(tmp_path, capsys, tiny_onnx):
    ks = detect_kernels(tiny_onnx)
    truth = sum(_toy_ms(k) for k in ks)
    db = toy_store(tmp_path / "toy.db")
    rc, cap = _cli(["train", "--store", db, "--backend", "onnxruntime", "--kernels", "-o", tmp_path / "kp",
                    "--n-estimators", "20"], capsys)
    assert rc == 0, cap.err
    summary = json.loads(cap.out)
    assert 29 * len(SAMPLES) <= summary["kernels"] <= 30 * len(SAMPLES)  # a few draws repeat a signature
    assert set(summary["types"]) == set(SAMPLES)
    assert summary["correction_models"] == 0
    meta = json.loads((tmp_path / "kp" / "meta.json").read_text())
    assert meta["level"] == "kernel" and meta["backend"] == "onnxruntime" and meta["files"]  # hashed files

    rc, cap = _cli(["predict", tmp_path / "kp", "--onnx", tiny_onnx, "--json", "--breakdown"], capsys)
    assert rc == 0, cap.err
    out = json.loads(cap.out)
    assert [k["op"] for k in out["kernels"]] == [k.op for k in ks]
    assert out["predicted_ms"] == pytest.approx(sum(k["ms"] for k in out["kernels"]))
    assert out["predicted_ms"] == pytest.approx(truth, rel=0.1)  # the toy device is linear in work: the sum is close
    rc, cap = _cli(["predict", tmp_path / "kp", "--onnx", tiny_onnx], capsys)
    assert rc == 0 and cap.out.startswith(f"{tiny_onnx}\t")

    # bad input: a predictor asked for another backend, an arch predictor, a non-ONNX file
    rc, cap = _cli(["predict", tmp_path / "kp", "--onnx", tiny_onnx, "--backend", "executorch"], capsys)
    assert rc == 2 and "built on backend 'onnxruntime'" in cap.err
    (tmp_path / "junk.onnx").write_bytes(b"junk" * 50)
    rc, cap = _cli(["predict", tmp_path / "kp", "--onnx", tmp_path / "junk.onnx"], capsys)
    assert rc == 2 and "not an ONNX model" in cap.err
    rc, cap = _cli(["predict", tmp_path / "kp", "--onnx", tiny_onnx, "--arch", "0" * 22], capsys)
    assert rc == 2 and "exactly one" in cap.err
    rc, cap = _cli(["predict", tmp_path / "kp", "--arch", "0" * 22], capsys)
    assert rc == 2 and "kernel predictor" in cap.err and "--onnx" in cap.err


def test_train_kernels_fits_the_whole_model_correction(tmp_path, capsys, tiny_onnx):
    """Whole models measured 1.5x their kernel sum + 0.1 ms: the correction learns it."""
    rng = np.random.default_rng(1)
    models = []
    for i in range(6):
        ks = [sample_kernel(op, rng) for op in rng.choice(list(SAMPLES), size=8)]
        models.append((f"m{i}", ks, 1.5 * sum(_toy_ms(k) for k in ks) + 0.1))
    db = toy_store(tmp_path / "toy.db", models)
    rc, cap = _cli(["train", "--store", db, "--backend", "onnxruntime", "--kernels", "-o", tmp_path / "kp",
                    "--n-estimators", "10"], capsys)
    assert rc == 0 and json.loads(cap.out)["correction_models"] == 6
    rc, cap = _cli(["predict", tmp_path / "kp", "--onnx", tiny_onnx, "--json"], capsys)
    out = json.loads(cap.out)
    assert out["predicted_ms"] > 1.2 * out["kernel_sum_ms"]


def test_train_kernels_bad_input(tmp_path, capsys):
    rc, cap = _cli(["train", "--kernels", "--table", tmp_path / "x.csv", "-o", tmp_path / "kp"], capsys)
    assert rc == 2 and "--store" in cap.err
    from profilers.store import ProfileStore

    with ProfileStore(tmp_path / "empty.db") as store:
        store.use_device("f00d", {"cpu": "toy"})
    rc, cap = _cli(["train", "--store", tmp_path / "empty.db", "--backend", "onnxruntime", "--kernels", "-o", tmp_path / "kp"], capsys)
    assert rc == 2 and "latnas kernels profile" in cap.err and not (tmp_path / "kp").exists()


@pytest.mark.slow
def test_real_kernels_profile_train_predict_measure(tmp_path, capsys, tiny_onnx):
    """On this CPU: profile the kernel types of a tiny model, measure it whole, predict it (the pipeline end to
    end; 4 samples per type on a shared host only bound the order of magnitude: accuracy is benchmarks/any_model.py's)."""
    db = tmp_path / "k.db"
    rc, cap = _cli(["kernels", "profile", "--store", db, "--types", "conv,dwconv,pool,gap,fc", "--scale", "0.05",
                    "--quick", "--no-adaptive"], capsys)
    assert rc == 0, cap.err
    rc, cap = _cli(["profile", "--onnx", tiny_onnx, "--backend", "onnxruntime", "--store", db, "--quick"], capsys)
    assert rc == 0, cap.err
    measured = json.loads(cap.out.strip().splitlines()[-1])
    assert measured["key"] == "tiny" and measured["kind"] == "model" and measured["median_ms"] > 0
    rc, cap = _cli(["train", "--store", db, "--backend", "onnxruntime", "--kernels", "-o", tmp_path / "kp"], capsys)
    assert rc == 0, cap.err
    rc, cap = _cli(["predict", tmp_path / "kp", "--onnx", tiny_onnx, "--json"], capsys)
    pred = json.loads(cap.out)["predicted_ms"]
    assert measured["median_ms"] / 10 < pred < measured["median_ms"] * 10


def test_profile_onnx_refuses_bad_files_before_the_store(tmp_path, capsys):
    from onnx import TensorProto, helper, save

    node = helper.make_node("Add", ["a", "b"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "ab"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "two.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk" * 40)
    for name, msg in (("two.onnx", "2 inputs"), ("junk.onnx", "not an ONNX model"), ("absent.onnx", "does not exist")):
        rc, cap = _cli(["profile", "--onnx", tmp_path / name, "--backend", "onnxruntime", "--store", tmp_path / "p.db"], capsys)
        assert rc == 2 and msg in cap.err and cap.err.count("\n") == 1, cap.err
    assert not (tmp_path / "p.db").exists()
