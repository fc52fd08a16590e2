"""TensorRT engines (FP32 and strongly typed FP16): real builds where TensorRT and a GPU exist."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from latnas.blocks import DiverseBranchBlock
from latnas.errors import BackendUnavailable
from latnas.export import export_model
from latnas.export.tensorrt import export_tensorrt, tensorrt_available

AVAILABLE, REASON = tensorrt_available()


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(DiverseBranchBlock(3, 16, 3, stride=2), DiverseBranchBlock(16, 16, 3)).eval()


@pytest.mark.skipif(AVAILABLE, reason="TensorRT is available here; this checks the fallback")
def test_unavailable_tensorrt_alone_is_a_one_line_error(tmp_path):
    with pytest.raises(BackendUnavailable) as err:
        export_model(model(), torch.randn(1, 3, 8, 8), tmp_path, "tensorrt")
    assert "\n" not in str(err.value) and str(err.value) == REASON


@pytest.mark.skipif(AVAILABLE, reason="TensorRT is available here; this checks the fallback")
def test_unavailable_tensorrt_among_others_is_skipped(tmp_path):
    tiny = nn.Sequential(DiverseBranchBlock(3, 4, 3, branches="kxk")).eval()
    report = export_model(tiny, torch.randn(1, 3, 6, 6), tmp_path, "tensorrt,onnx", fuse=False)
    assert report.skipped == {"tensorrt": REASON}
    assert [r.format for r in report.results] == ["onnx"] and report.ok
    assert not list(tmp_path.glob("*.engine"))


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not AVAILABLE, reason=f"needs TensorRT and a CUDA GPU: {REASON}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_parity_and_layer_times(tmp_path, precision):
    from latnas.reparam import reparameterize_model

    fused = reparameterize_model(model())
    x = torch.randn(1, 3, 32, 32)
    cache = tmp_path / "cache.bin"
    res = export_tensorrt(fused, x, tmp_path / f"m_{precision}.engine", precision=precision, timing_cache=cache)
    assert res.parity.ok, res.parity
    assert cache.is_file() and cache.stat().st_size > 0
    assert res.details["layer_ms"] and all(v >= 0 for v in res.details["layer_ms"].values())
    assert res.nodes >= 1
