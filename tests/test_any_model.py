"""latnas.predict_latency / latency_fn: any torch module or ONNX file, and the documented user loop."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import latnas  # noqa: E402
from latnas.cli.main import main  # noqa: E402
from latnas.schema.errors import DataError, PredictorFileError, UnknownNameError  # noqa: E402

from test_kernels_profile import Tiny, toy_store  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "any_model.md"


@pytest.fixture(scope="module")
def kp(tmp_path_factory):
    d = tmp_path_factory.mktemp("kp")
    toy_store(d / "toy.db", per_type=20)
    assert main(["train", "--store", str(d / "toy.db"), "--backend", "onnxruntime", "--kernels", "-o", str(d / "kp"),
                 "--n-estimators", "10"]) == 0
    return d / "kp"


@pytest.fixture(scope="module")
def fbnet_model(tmp_path_factory):
    from predictors.synthetic import synthetic_arch_table, write_arch_csv

    d = tmp_path_factory.mktemp("fbnet")
    write_arch_csv(synthetic_arch_table(latnas.get_space("fbnet"), n=30, seed=2, noise=0.01, devices={"toy_ms": 1.0}), d / "lat.csv")
    assert main(["train", "--table", str(d / "lat.csv"), "--target", "toy_ms", "--model", "ridge", "-o", str(d / "m")]) == 0
    return d / "m"


def test_predict_latency_module_and_file_agree(kp, tmp_path):
    from profilers.onnx_export import export_onnx

    model, x = Tiny().eval(), torch.randn(1, 3, 64, 64)
    ms = latnas.predict_latency(model, example=x, predictor=kp)
    path = export_onnx(model, x, tmp_path / "tiny.onnx")
    assert latnas.predict_latency(path, predictor=str(kp)) == pytest.approx(ms)
    parts = latnas.predict_latency(path, predictor=kp, backend="onnxruntime", breakdown=True)
    assert parts["predicted_ms"] == pytest.approx(ms) and parts["backend"] == "onnxruntime"
    assert [k["op"] for k in parts["kernels"]] == ["conv", "dwconv", "pool", "gap", "fc"]
    assert sum(k["ms"] for k in parts["kernels"]) == pytest.approx(parts["kernel_sum_ms"])
    bigger = latnas.predict_latency(Tiny(64).eval(), example=torch.randn(1, 3, 128, 128), predictor=kp)
    assert bigger > 2 * ms  # 4x the pixels, 4x the channels


def test_predict_latency_bad_input(kp, fbnet_model, tmp_path):
    with pytest.raises(DataError, match="predictor="):
        latnas.predict_latency(Tiny(), example=torch.randn(1, 3, 32, 32))
    with pytest.raises(PredictorFileError, match="built on backend 'onnxruntime', not 'executorch'"):
        latnas.predict_latency(Tiny(), example=torch.randn(1, 3, 32, 32), predictor=kp, backend="executorch")
    with pytest.raises(PredictorFileError, match="not a kernel predictor"):
        latnas.predict_latency(Tiny(), example=torch.randn(1, 3, 32, 32), predictor=fbnet_model)
    with pytest.raises(DataError, match="example"):
        latnas.predict_latency(Tiny(), predictor=kp)

    from predictors.kernel_model import KernelPredictor
    from profilers.kernels import sample_kernel

    rng = np.random.default_rng(0)
    convs = [sample_kernel("conv", rng) for _ in range(12)]
    only_conv = KernelPredictor(n_estimators=5).fit(convs, [1e-6 * k.flops + 0.01 for k in convs])
    with pytest.raises(UnknownNameError, match="dwconv, fc, gap, pool were not profiled"):
        latnas.predict_latency(Tiny(), example=torch.randn(1, 3, 32, 32), predictor=only_conv)


def _doc_block(heading: str, index: int = 0) -> str:
    text = DOC.read_text()
    section = text[text.index(heading):]
    return re.findall(r"```python\n(.*?)```", section, re.S)[index]


def test_documented_user_loop_runs(kp, fbnet_model, capsys):
    """docs/any_model.md's 'Your own loop' examples, as written (KP and FBNET_MODEL given)."""
    ns: dict = {"KP": str(kp), "FBNET_MODEL": str(fbnet_model)}
    exec(compile(_doc_block("## Your own loop"), str(DOC), "exec"), ns)
    width, k, ms = ns["best"]
    assert ms <= ns["budget_ms"] and width >= 8 and "best width=" in capsys.readouterr().out
    assert all(a[2] < b[2] for a, b in zip(ns["feasible"][::2], ns["feasible"][2::2]))  # wider costs more

    exec(compile(_doc_block("## Your own loop", 1), str(DOC), "exec"), ns)
    table = latnas.get_space("fbnet")
    from predictors.persistence import load_latency_table

    expected = load_latency_table(fbnet_model, table).predict(np.array([[0] * 22], dtype=np.int64))[0]
    assert ns["lut_ms"] == pytest.approx(expected)
    assert ns["kernel_ms"] == pytest.approx(ns["latency"](ns["make_model"](16, 3)))
