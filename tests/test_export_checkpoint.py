"""Checkpoints are loaded with weights_only=True; anything unusable is a one-line error."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from latnas import get_space
from latnas.schema.blocks import DiverseBranchBlock
from latnas.export import ExportError, load_checkpoint
from latnas.reparam import reparameterize_model


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(DiverseBranchBlock(3, 4, 3), DiverseBranchBlock(4, 4, 3))


def one_line(err) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def test_state_dict_round_trip(tmp_path):
    src = model()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "ck.pt")
    dst = load_checkpoint(model(), tmp_path / "ck.pt")
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k


def test_fused_checkpoint_loads_into_multi_branch_model(tmp_path):
    src = reparameterize_model(model())
    torch.save(src.state_dict(), tmp_path / "fused.pt")
    dst = load_checkpoint(model(), tmp_path / "fused.pt")
    assert all(m.fused for m in dst.modules() if isinstance(m, DiverseBranchBlock))
    x = torch.randn(1, 3, 6, 6)
    assert torch.allclose(dst.eval()(x), src(x))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_corrupt_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ExportError) as err:
        load_checkpoint(model(), path)
    assert "cannot be loaded safely" in one_line(err)


def test_truncated_real_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save(model().state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ExportError) as err:
        load_checkpoint(model(), path)
    one_line(err)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": model().state_dict(), "evil": Evil()}, path)
    with pytest.raises(ExportError) as err:
        load_checkpoint(model(), path)
    one_line(err)
    assert "pwned" not in capsys.readouterr().out


def test_mismatched_and_missing_checkpoints(tmp_path):
    torch.save(get_space("repnas").build(get_space("repnas").random_arch(0)).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ExportError, match="does not match") as err:
        load_checkpoint(model(), tmp_path / "other.pt")
    one_line(err)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ExportError, match="not a state dict"):
        load_checkpoint(model(), tmp_path / "list.pt")
    with pytest.raises(ExportError, match="does not exist"):
        load_checkpoint(model(), tmp_path / "missing.pt")
