"""TensorRT engines (FP32 and strongly typed FP16): real builds where TensorRT and a GPU exist."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from latnas.schema.blocks import DiverseBranchBlock
from latnas.schema.errors import BackendUnavailable
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
    from latnas.export import read_sidecar

    side = read_sidecar(report.results[0].path)  # names how to profile what ships
    assert side["profile_config"] == {"backend": "onnxruntime", "options": {"exporter": "dynamo"}, "threads": 1}


def test_export_refuses_a_timing_cache_path(tmp_path):
    from latnas.export import ExportError

    with pytest.raises(ExportError, match="runtime's own"):
        export_tensorrt(model(), torch.randn(1, 3, 8, 8), tmp_path / "m.engine", timing_cache=str(tmp_path / "x"))


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not AVAILABLE, reason=f"needs TensorRT and a CUDA GPU: {REASON}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_parity_and_layer_times(tmp_path, monkeypatch, precision):
    import tensorrt as trt

    from latnas.reparam import reparameterize_model
    from profilers.runtimes.tensorrt import default_timing_cache_path

    monkeypatch.setenv("LATNAS_CACHE_DIR", str(tmp_path / "cache"))
    fused = reparameterize_model(model())
    x = torch.randn(1, 3, 32, 32)
    res = export_tensorrt(fused, x, tmp_path / f"m_{precision}.engine", precision=precision)
    assert res.parity.ok, res.parity
    cache = default_timing_cache_path(trt.__version__, torch.cuda.get_device_name(0))  # the profiler's own file
    assert cache.is_file() and cache.stat().st_size > 0
    assert res.details["profile_config"]["backend"] == "tensorrt"
    assert res.details["profile_config"]["options"]["precision"] == precision
    assert res.details["layer_ms"] and all(v >= 0 for v in res.details["layer_ms"].values())
    assert res.nodes >= 1
