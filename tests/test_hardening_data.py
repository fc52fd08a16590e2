"""Hardening, second round: bad ``--data`` folders and bad ``export --checkpoint`` files.

Every parameter named ``data`` or ``checkpoint`` of every command gets every
bad input of its class (cases built by :mod:`hardening_inputs`), next to valid
values for the command's other parameters: each must end in exit 2 with one
``error:`` line, create no output and change nothing stored. A checkpoint's
``__reduce__`` payload must never run.
"""
from __future__ import annotations

from hardening_cases import argv_cases, run_all
from hardening_inputs import checkpoint_files, data_dirs
from test_cli_fuzz import ARCH, stored  # noqa: F401 - the shared fixture



def test_bad_data_folders_refused(stored, env, tmp_path, capsys):  # noqa: F811
    dirs = data_dirs(tmp_path / "data")
    cases = list(argv_cases(("data",), dirs, stored, env))
    n, failures = run_all(cases, capsys, stored)
    assert n >= len(dirs)
    assert not failures, f"{len(failures)}/{n} mishandled:\n" + "\n".join(failures)
    assert list(env.iterdir()) == []


def test_data_folder_with_a_symlink_loop_loads_without_following_it(tmp_path):
    from hardening_inputs import _folder
    from latnas.search.data import load_data

    root = _folder(tmp_path / "loop", {"a": 3, "b": 3})
    (root / "a" / "again").symlink_to(root / "a")
    data = load_data(root, n_train=4, n_val=2, resolution=8)
    assert len(data.x_train) + len(data.x_val) == 6 and data.num_classes == 2


def test_bad_checkpoints_refused_and_never_run(stored, env, tmp_path, capsys):  # noqa: F811
    from latnas.schema.spaces import get_space

    sp = get_space("fbnet")
    state = sp.build(sp.parse_arch(ARCH)).state_dict()
    marker = tmp_path / "payload_ran"
    files = checkpoint_files(tmp_path / "ckpt", state, marker)
    cases = list(argv_cases(("checkpoint",), files, stored, env))
    n, failures = run_all(cases, capsys, stored)
    assert n >= len(files)
    assert not marker.exists(), "a checkpoint's __reduce__ payload ran"
    assert not failures, f"{len(failures)}/{n} mishandled:\n" + "\n".join(failures)
    assert list(env.iterdir()) == []
