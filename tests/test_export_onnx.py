"""ONNX export of fused and multi-branch DBB models: checker, ONNX Runtime parity, node counts, refusals."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from latnas.schema.blocks import DiverseBranchBlock
from latnas.export import ExportError, export_model, read_sidecar
from latnas.export.onnx import export_onnx, onnx_node_count
from latnas.reparam import reparameterize_model

torch.set_num_threads(1)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        DiverseBranchBlock(3, 8, 3, stride=2, branches="kxk+1x1+1x1_kxk+1x1_avg"),
        DiverseBranchBlock(8, 8, 3, groups=8),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return model.eval()


def test_fused_onnx_matches_torch_and_is_one_conv_per_block(tmp_path):
    model = small_model()
    x = torch.randn(2, 3, 11, 13)
    fused = export_onnx(reparameterize_model(model), x, tmp_path / "fused.onnx")
    assert fused.parity.ok and fused.parity.rel_diff <= 1e-4
    assert fused.nodes == onnx_node_count(tmp_path / "fused.onnx")
    import onnx

    ops = [n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node]
    assert ops.count("Conv") == 2 and "BatchNormalization" not in ops and "AveragePool" not in ops


def test_export_model_writes_sidecar(tmp_path):
    model = small_model(1)
    x = torch.randn(1, 3, 9, 9)
    report = export_model(model, x, tmp_path, "onnx", fuse=True, stem="m", meta={"space": "custom", "arch": "a"})
    assert report.ok and report.fusion_parity.ok
    (res,) = report.results
    assert res.path == tmp_path / "m.onnx" and res.sidecar == tmp_path / "m.onnx.json"
    side = read_sidecar(res.path)
    assert side == json.loads(res.sidecar.read_text())
    assert side["space"] == "custom" and side["arch"] == "a" and side["fused"] is True
    assert side["input_shape"] == [1, 3, 9, 9] and side["format"] == "onnx"
    assert side["parity"]["ok"] and side["parity"]["rel_diff"] == res.parity.rel_diff
    assert side["nodes"] == res.nodes and side["details"]["nodes_unfused"] == report.nodes_unfused > res.nodes
    assert side["versions"]["torch"] and side["versions"]["onnx"] and side["size_bytes"] == res.size_bytes


def test_training_mode_is_refused(tmp_path):
    model = small_model().train()
    with pytest.raises(ExportError, match="training mode") as err:
        export_onnx(model, torch.randn(1, 3, 8, 8), tmp_path / "m.onnx")
    assert "\n" not in str(err.value)
    model.eval()
    model[1].train()  # one submodule left in training mode is enough to refuse
    with pytest.raises(ExportError, match="training mode"):
        export_model(model, torch.randn(1, 3, 8, 8), tmp_path, "onnx")
    assert not list(tmp_path.iterdir())
