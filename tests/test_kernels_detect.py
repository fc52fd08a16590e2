"""Kernel detection on hand-made modules: what a runtime fuses, per backend; bad graphs are one-line errors."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
nn = torch.nn

from latnas.schema.errors import DataError, LatnasError, ShapeError, UnknownNameError  # noqa: E402
from latnas.schema.kernels import detect_kernels, rules_for  # noqa: E402


class SE(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.expand(torch.relu(self.reduce(s))))


class Net(nn.Module):
    """Every kernel type the issue names, once, in a known order."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 5, 1, 2, groups=16, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.se = SE(16)
        self.pw = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.pool = nn.AvgPool2d(2)
        self.branch = nn.Conv2d(16, 8, 3, 1, 1)
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.pw(self.se(self.dw(x))) + x  # residual: fused into the 1x1 conv on onnxruntime
        y = nn.functional.hardswish(y)  # after the add: fused too on onnxruntime
        y = self.pool(y)
        y = torch.cat([y, self.branch(y)], 1)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.fixture(scope="module")
def net_onnx(tmp_path_factory):
    from profilers.onnx_export import export_onnx

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("kernels") / "net.onnx"
    net = Net().eval()
    for m in net.modules():  # non-trivial BN statistics, so folding is visible in the exported weights
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return export_onnx(net, torch.randn(1, 3, 32, 32), path)


def _ops(kernels):
    return [k.op for k in kernels]


def test_onnxruntime_kernels_of_a_hand_made_net(net_onnx):
    ks = detect_kernels(net_onnx, "onnxruntime")
    assert _ops(ks) == ["conv", "dwconv", "gap", "conv", "conv", "mul", "conv", "pool", "conv", "concat", "gap", "fc"]
    stem, dw, se_gap, se_r, se_e, se_mul, pw, pool, branch, cat, gap, fc = ks
    # conv + bn + relu is one kernel (BN folded by the exporter or absorbed, relu fused)
    assert (stem.cin, stem.cout, stem.kernel, stem.stride, stem.h, stem.ho, stem.act) == (3, 16, 3, 2, 32, 16, "relu")
    assert not any("BatchNormalization" in n for k in ks for n in k.nodes)
    # depthwise: groups == channels, its hswish fused
    assert (dw.groups, dw.cin, dw.kernel, dw.act) == (16, 16, 5, "hswish")
    # squeeze-excite: global pool, reduce conv + relu, expand conv + hsigmoid, a broadcast multiply
    assert (se_gap.cin, se_gap.h) == (16, 16)
    assert (se_r.cout, se_r.act, se_r.h) == (4, "relu", 1) and (se_e.cout, se_e.act) == (16, "hsigmoid")
    assert se_mul.variant == "broadcast" and se_mul.inputs == 2
    # 1x1 conv + bn + residual add + hswish after the add: one kernel on onnxruntime
    assert (pw.residual, pw.act, pw.kernel) == (1, "hswish", 1)
    assert (pool.variant, pool.kernel, pool.stride, pool.h, pool.ho) == ("ave", 2, 2, 16, 8)
    assert (branch.cin, branch.cout, branch.h) == (16, 8, 8)
    assert (cat.cout, cat.inputs) == (24, 2)
    assert (fc.cin, fc.cout, fc.h) == (24, 10, 1)


def test_fusion_rules_are_data_per_backend(net_onnx):
    ort = detect_kernels(net_onnx, "onnxruntime")
    xnn = detect_kernels(net_onnx, "executorch")
    assert rules_for("onnxruntime-cuda") is rules_for("onnxruntime")
    assert len(xnn) == len(ort) + 4  # dw's and the add's hswish, the add, the hsigmoid run on their own
    assert [k.op for k in xnn].count("add") == 1 and [k.op for k in xnn].count("act") == 3
    assert all(k.residual == 0 for k in xnn)
    assert {k.variant for k in xnn if k.op == "act"} == {"hswish", "hsigmoid"}
    with pytest.raises(UnknownNameError, match="no kernel fusion rules for backend 'tensorrt'"):
        detect_kernels(net_onnx, "tensorrt")


def _export(module, shape, path):
    from profilers.onnx_export import export_onnx

    return export_onnx(module.eval(), torch.randn(*shape), path)


def test_unknown_ops_are_named_not_a_traceback(tmp_path, capsys):
    from latnas.cli.main import main

    class Up(nn.Module):
        def forward(self, x):
            return nn.functional.interpolate(torch.relu(x), scale_factor=2.0, mode="nearest").cumsum(1)

    path = _export(Up(), (1, 4, 8, 8), tmp_path / "up.onnx")
    with pytest.raises(UnknownNameError) as err:
        detect_kernels(path)
    assert "CumSum" in str(err.value) and "Resize" in str(err.value) and "\n" not in str(err.value)
    assert main(["kernels", "detect", str(path)]) == 2
    cap = capsys.readouterr()
    assert cap.err.startswith("error: ") and "Resize" in cap.err and "Traceback" not in cap.err + cap.out


def test_bad_graphs_are_one_line_errors(tmp_path):
    from onnx import TensorProto, helper

    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a model at all" * 10)
    with pytest.raises(DataError, match="not an ONNX model"):
        detect_kernels(tmp_path / "junk.onnx")
    with pytest.raises(DataError, match="no such ONNX file"):
        detect_kernels(tmp_path / "absent.onnx")

    def graph(inputs):
        node = helper.make_node("Add", [i.name for i in inputs][:2] * (3 - len(inputs)), ["y"])
        g = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    two = graph([helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "ab"])
    with pytest.raises(ShapeError, match="2 inputs"):
        detect_kernels(two)
    dyn = graph([helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4])])
    with pytest.raises(ShapeError, match="dynamic"):
        detect_kernels(dyn)
    ints = graph([helper.make_tensor_value_info("a", TensorProto.INT64, [1, 4])])
    with pytest.raises(ShapeError, match="float32"):
        detect_kernels(ints)
    assert [k.op for k in detect_kernels(graph([helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])]).SerializeToString())] == ["add"]


def test_torch_module_paths_and_errors(tmp_path):
    from latnas.any_model import model_kernels

    lin = nn.Sequential(nn.Linear(12, 7), nn.ReLU())
    ks = model_kernels(lin, torch.randn(1, 12))
    assert [(k.op, k.cin, k.cout, k.act) for k in ks] == [("fc", 12, 7, "relu")]
    with pytest.raises(DataError, match="example"):
        model_kernels(lin)
    with pytest.raises(ShapeError, match="2 inputs"):
        model_kernels(lin, (torch.randn(1, 12), torch.randn(1, 12)))
    with pytest.raises(DataError, match="torch.nn.Module"):
        model_kernels(42, torch.randn(1, 12))


@pytest.mark.slow  # both exporters are tried (~6 s)
def test_module_that_does_not_export_is_one_line():
    from latnas.any_model import model_kernels

    with pytest.raises(LatnasError) as err:  # shape mismatch inside the module: the exporters' one-line failure
        model_kernels(nn.Linear(12, 7), torch.randn(1, 5))
    assert "\n" not in str(err.value)


@pytest.mark.slow  # times 17 small graphs (~10 s)
def test_fusions_detected_by_timing_pairs(monkeypatch, tmp_path):
    """ORT CPU fuses Relu into a conv (its FusedConv): the pair costs about the conv alone."""
    pytest.importorskip("onnxruntime")
    from latnas.schema.kernels import FusionRules
    from profilers.kernel_fusion import CANDIDATE_ACTS, detect_fusions
    from profilers.runner import get_backend

    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path / "locks"))
    rep = detect_fusions(get_backend("onnxruntime"))
    assert isinstance(rep.rules, FusionRules)
    assert set(rep.verdicts) == {"conv+add", *(f"conv+{a}" for a in CANDIDATE_ACTS.values())}
    assert all(v > 0 for v in rep.medians.values())
    assert rep.verdicts["conv+relu"] and rep.rules.activations.get("Relu") == "relu"
    assert rep.rules.fuse_add == rep.verdicts["conv+add"]
