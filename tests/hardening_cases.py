"""Bad input files for the hardening tests, and the runner that checks each is refused properly.

Cases are applied the CLI fuzz test's way: every command parameter with a
given name (``table``, ``model_dir``, ``store``, ``data``, ``checkpoint``)
gets every bad file of its class, next to valid values for the command's
other parameters (:func:`test_cli_fuzz.base_argv`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Callable

from latnas.cli.main import main
from test_cli_fuzz import EXCLUSIVE, base_argv, commands, digest

CASE_ALARM_S = 20


def _alarm(signum, frame):
    raise TimeoutError(f"ran over {CASE_ALARM_S} s: real work started instead of a refusal")


def run_case(argv: list[str], capsys) -> str | None:
    """None when ``argv`` exits 2 with one ``error:`` line and no traceback; else what went wrong."""
    capsys.readouterr()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_ALARM_S, 1.0)  # repeats: work that swallows one alarm meets the next
    try:
        rc = main(argv)
    except BaseException as exc:  # noqa: BLE001 - anything escaping main() is a finding
        rc = f"raised {type(exc).__name__}: {str(exc)[:120]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    cap = capsys.readouterr()
    lines = [line for line in cap.err.splitlines() if line.strip()]
    problems = []
    if rc != 2:
        problems.append(f"exit {rc}")
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"stderr {cap.err[-200:]!r}")
    if "Traceback" in cap.err + cap.out:
        problems.append("traceback")
    return "; ".join(problems) or None


def argv_cases(param_names: tuple[str, ...], values: dict[str, str], d: Path, w: Path,
               skip: Callable[[tuple[str, ...], str], bool] = lambda path, label: False):
    """(id, argv) for each command parameter named in ``param_names`` and each (label -> value)."""
    for path, cmd in commands():
        base = base_argv(path, d, w)
        for param in cmd.params:
            if param.name not in param_names:
                continue
            drop, extra = EXCLUSIVE.get((path, param.name), ((), []))
            rest = [tok for name, toks in base if name != param.name and name not in drop for tok in toks] + extra
            for label, value in values.items():
                if skip(path, label):
                    continue
                argv = [*path, value, *rest] if param.param_type_name == "argument" else [*path, *rest, param.opts[0], value]
                yield f"{' '.join(path)} {param.name} {label}", argv


def run_all(cases, capsys, stored: Path) -> tuple[int, list[str]]:
    """Run every case; (number run, failures). Stored bytes under ``stored`` must not change."""
    before = digest(stored)
    failures, n = [], 0
    for case_id, argv in cases:
        n += 1
        problem = run_case(argv, capsys)
        if problem:
            failures.append(f"{case_id}: {problem}")
    if digest(stored) != before:
        failures.append("stored bytes changed")
    return n, failures


# ------------------------------------------------------------------ tables
def table_files(good_csv: Path, out: Path) -> dict[str, str]:
    """Bad latency tables derived from a good ``arch,toy_ms`` CSV; label -> path."""
    lines = good_csv.read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    out.mkdir(parents=True, exist_ok=True)

    def write(name: str, text: str | bytes) -> str:
        p = out / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(p)

    def table(header: str, cells: Callable[[list[str]], str]) -> str:
        return header + "\n" + "".join(cells(r) + "\n" for r in rows)

    arabic = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
    full = str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19")
    return {
        "dup-target": write("dup_target.csv", table("arch,toy_ms,toy_ms", lambda r: f"{r[0]},{r[1]},{float(r[1]) * 2}")),
        "dup-arch": write("dup_arch.csv", table("arch,arch,toy_ms", lambda r: f"{'0' * len(r[0])},{r[0]},{r[1]}")),
        "nul": write("nul.csv", table("arch,toy_ms", lambda r: f"{r[0]},{r[1]}").replace("\n", "\x00\n", 3)),
        "underscore": write("underscore.csv", table("arch,toy_ms", lambda r: f"{r[0]},2_8")),
        "arabic-digits": write("arabic.csv", table("arch,toy_ms", lambda r: f"{r[0]},{r[1].split('.')[0].translate(arabic)}")),
        "fullwidth-digits": write("full.csv", table("arch,toy_ms", lambda r: f"{r[0]},{r[1].split('.')[0].translate(full)}")),
        "huge-header": write("huge_header.csv", "arch,toy_ms," + ",".join(f"c{i}" for i in range(1_000_000)) + "\n"
                             + rows[0][0] + ",1.0\n"),
        "many-columns": write("many_cols.csv", "arch,toy_ms," + ",".join(f"c{i}" for i in range(2000)) + "\n"
                              + "".join(f"{r[0]},{r[1]}\n" for r in rows)),
        "ragged-row": write("ragged.csv", table("arch,toy_ms", lambda r: f"{r[0]},{r[1]},9,9")),
        "not-utf8": write("latin1.csv", table("arch,toy_ms", lambda r: f"{r[0]},{r[1]}").encode() + b"\xff\xfe,1\n"),
        "tiny-latency": write("tiny.csv", table("arch,toy_ms", lambda r: f"{r[0]},1e-300")),
        "overflow-latency": write("overflow.csv", table("arch,toy_ms", lambda r: f"{r[0]},1e400")),
    }


#: cases that only make sense where the target column is learned
TRAIN_ONLY = {"tiny-latency", "overflow-latency"}


# ------------------------------------------------------------------ predictor folders
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rehash(folder: Path, meta: dict | None = None, extra: dict[str, str] | None = None) -> None:
    meta = meta if meta is not None else json.loads((folder / "meta.json").read_text())
    meta["files"] = {"state.json": _sha((folder / "state.json").read_bytes()), **(extra or {})}
    (folder / "meta.json").write_text(json.dumps(meta))


def model_folders(good: Path, out: Path) -> dict[str, str]:
    """Bad predictor folders derived from a good saved ridge model; label -> path."""
    out.mkdir(parents=True, exist_ok=True)
    outside = out / "outside.json"
    outside.write_text('{"secret": 1}')
    made: dict[str, str] = {}

    def copy(label: str) -> Path:
        dst = out / label
        shutil.copytree(good, dst)
        made[label] = str(dst)
        return dst

    def state_edit(label: str, **values) -> None:
        f = copy(label)
        doc = json.loads((f / "state.json").read_text())
        doc["state"].update(values)
        (f / "state.json").write_text(json.dumps(doc))
        _rehash(f)

    coef = json.loads((good / "state.json").read_text())["state"]["coef"]
    f = copy("meta-lists-parent-path")
    _rehash(f, extra={"../outside.json": _sha(outside.read_bytes())})
    f = copy("meta-lists-absolute-path")
    _rehash(f, extra={str(outside): _sha(outside.read_bytes())})
    f = copy("state-symlink-out")
    real = out / "state_outside.json"
    shutil.copy(f / "state.json", real)
    (f / "state.json").unlink()
    (f / "state.json").symlink_to(real)
    f = copy("meta-symlink-out")
    shutil.copy(f / "meta.json", out / "meta_outside.json")
    (f / "meta.json").unlink()
    (f / "meta.json").symlink_to(out / "meta_outside.json")
    state_edit("nan-coef", coef=[float("nan")] * len(coef))
    state_edit("inf-coef", coef=[float("inf")] + coef[1:])
    state_edit("huge-coef", coef=[1e300] * len(coef))
    state_edit("big-coef", coef=[1e30] * len(coef))
    f = copy("huge-state")
    doc = json.loads((f / "state.json").read_text())
    doc["pad"] = [0.5] * 5_000_000  # ~20 MB of JSON that must not be parsed
    (f / "state.json").write_text(json.dumps(doc))
    _rehash(f)
    for label, doc in (("meta-is-list", [1, 2]), ("meta-is-string", "latnas.predictor/2")):
        f = copy(label)
        (f / "meta.json").write_text(json.dumps(doc))
    f = out / "folder-is-file"
    f.write_text("not a folder\n")
    made["folder-is-file"] = str(f)
    f = copy("unlisted-subfolder")
    (f / "sub").mkdir()
    f = copy("state-is-fifo")
    (f / "state.json").unlink()
    os.mkfifo(f / "state.json")
    return made


# ------------------------------------------------------------------ profile stores
def _filled_store(path: Path, n: int = 300) -> None:
    from profilers.base import Measurement
    from profilers.protocol import summarize
    from profilers.store import ProfileStore

    with ProfileStore(path) as store:
        store.use_device("f00d", {"cpu": "test"})
        stats = summarize([1.0, 1.1, 0.9, 1.0], warmup_runs=2, stable=True)
        for i in range(n):
            store.put(Measurement(f"conv_{i}_" + "x" * 200, "block", "onnxruntime", "f00d", 1, stats, {"op": "conv"}, 1.0))


def _sql(path: Path, *statements: str) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        for st in statements:
            con.execute(st)
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def _rebuild(path: Path, edit: Callable[[str], str], fill: str) -> None:
    """Recreate ``measurements`` from its own DDL changed by ``edit`` and refill it with ``fill``."""
    import sqlite3

    con = sqlite3.connect(path)
    ddl = con.execute("SELECT sql FROM sqlite_master WHERE name = 'measurements'").fetchone()[0]
    con.close()
    _sql(path, "ALTER TABLE measurements RENAME TO old_m", "DROP INDEX IF EXISTS measurements_by_backend",
         edit(ddl), fill, "DROP TABLE old_m")


def store_files(out: Path) -> dict[str, str]:
    """Bad profile stores (each a copy of a good one of 300 rows, altered); label -> path."""
    out.mkdir(parents=True, exist_ok=True)
    good = out / "good.db"
    _filled_store(good)
    made: dict[str, str] = {}

    def copy(label: str) -> Path:
        dst = out / f"{label}.db"
        shutil.copy(good, dst)
        made[label] = str(dst)
        return dst

    link = out / "link.db"
    link.symlink_to(copy("symlink-target"))
    made = {"symlink": str(link)}
    _sql(copy("foreign-table"), "CREATE TABLE evil (x)", "INSERT INTO evil VALUES (1)")
    _sql(copy("trigger"), "CREATE TRIGGER wipe AFTER INSERT ON measurements BEGIN DELETE FROM fingerprints; END")
    _sql(copy("view"), "CREATE VIEW measurements_v AS SELECT * FROM measurements")
    _sql(copy("foreign-index"), "CREATE INDEX evil_idx ON measurements (created)")
    _rebuild(copy("text-typed-median"), lambda ddl: ddl.replace("median_ms REAL", "median_ms TEXT"),
             "INSERT INTO measurements SELECT * FROM old_m")
    _rebuild(copy("nullable-with-nulls"), lambda ddl: ddl.replace("median_ms REAL NOT NULL", "median_ms REAL"),
             "INSERT INTO measurements SELECT * FROM old_m")
    _sql(Path(made["nullable-with-nulls"]), "UPDATE measurements SET median_ms = NULL")
    _sql(copy("text-in-real-column"), "UPDATE measurements SET min_ms = 'fast'")
    data = good.read_bytes()
    f = copy("truncated")
    f.write_bytes(data[: len(data) // 2])
    f = copy("truncated-to-header")
    f.write_bytes(data[:100])
    return made
