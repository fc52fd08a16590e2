"""`latnas export` end to end (in-process) and its one-line errors."""
from __future__ import annotations

import json

import pytest
import torch

from latnas import get_space
from latnas.cli.main import main
from latnas.export.tensorrt import tensorrt_available

REPNAS_ARCH = "7,15,7,15,15,7,15,15,7"


def test_tensorrt_only_without_tensorrt_is_exit_2(tmp_path, capsys):
    if tensorrt_available()[0]:
        pytest.skip("TensorRT is available here")
    rc = main(["export", "--space", "repnas", "--arch", REPNAS_ARCH, "--format", "tensorrt", "-o", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "TensorRT" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--format", "onnx,tflite"], "unknown export format"),
        (["--space", "nope"], "unknown space"),
        (["--arch", "1,2,3"], "layers"),
        (["--precision", "int8"], "unknown precision"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, needle):
    base = {"--space": "repnas", "--arch": REPNAS_ARCH, "--format": "onnx"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["export", *[x for kv in base.items() for x in kv], "-o", str(tmp_path)]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1


def test_corrupt_checkpoint_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04garbage")
    rc = main(["export", "--space", "repnas", "--arch", REPNAS_ARCH, "--checkpoint", str(bad), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot be loaded safely" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_repnas_export_with_checkpoint_onnx_and_executorch(tmp_path, capsys):
    space = get_space("repnas")
    torch.manual_seed(3)
    model = space.build(space.parse_arch(REPNAS_ARCH))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), tmp_path / "ck.pt")
    out = tmp_path / "out"
    rc = main(["export", "--space", "repnas", "--arch", REPNAS_ARCH, "--checkpoint", str(tmp_path / "ck.pt"),
               "--format", "onnx,executorch", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "repnas_fused.onnx" in text and "unfused" in text and "fusion parity" in text
    side = json.loads((out / "repnas_fused.onnx.json").read_text())
    assert side["arch"] == REPNAS_ARCH and side["space"] == "repnas" and side["fused"]
    assert side["parity"]["ok"] and side["nodes"] < side["details"]["nodes_unfused"]
    assert json.loads((out / "repnas_fused.pte.json").read_text())["parity"]["ok"]


@pytest.mark.slow
def test_fbnet_no_fuse_onnx(tmp_path, capsys):
    arch = "0" * 22
    rc = main(["export", "--space", "fbnet", "--arch", arch, "--format", "onnx", "--no-fuse", "-o", str(tmp_path)])
    assert rc == 0
    side = json.loads((tmp_path / "fbnet_unfused.onnx.json").read_text())
    assert side["fused"] is False and side["parity"]["ok"] and side["input_shape"] == [1, 3, 32, 32]
