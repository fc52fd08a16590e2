"""ExecuTorch export lowered to XNNPACK and run with the ExecuTorch Python runtime."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from latnas.schema.blocks import DiverseBranchBlock
from latnas.export import ExportError, export_model, read_sidecar
from latnas.export.executorch import export_executorch
from latnas.reparam import reparameterize_model

torch.set_num_threads(1)


def block(seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    b = DiverseBranchBlock(8, 8, 3, **kw)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in b.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return b.eval()


def test_fused_pte_matches_torch_and_is_fully_delegated(tmp_path):
    model = block()
    x = torch.randn(1, 8, 10, 9)
    report = export_model(model, x, tmp_path, "executorch", stem="blk", meta={"space": "none"})
    (res,) = report.results
    assert res.path.suffix == ".pte" and res.path.stat().st_size == res.size_bytes
    assert res.parity.ok and res.parity.rel_diff <= 1e-4
    assert res.details["delegate_calls"] == 1 and res.details["non_delegated_ops"] == 0
    side = read_sidecar(res.path)
    assert side["format"] == "executorch" and side["fused"] and side["versions"]["executorch"]


@pytest.mark.slow
def test_multi_branch_pte_matches_torch(tmp_path):
    model = block(1, stride=2, groups=2)
    x = torch.randn(2, 8, 9, 9)
    res = export_executorch(model, x, tmp_path / "multi.pte")
    assert res.parity.ok
    fused = export_executorch(reparameterize_model(model), x, tmp_path / "fused.pte")
    assert fused.parity.ok and fused.size_bytes < res.size_bytes


def test_training_mode_refused(tmp_path):
    with pytest.raises(ExportError, match="training mode"):
        export_executorch(block().train(), torch.randn(1, 8, 6, 6), tmp_path / "m.pte")
