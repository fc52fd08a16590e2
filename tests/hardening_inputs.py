"""Bad ``--data`` folders and bad ``export --checkpoint`` files for the hardening tests.

Each builder returns ``label -> path``; the cases are applied through
:func:`hardening_cases.argv_cases` to every parameter of that name.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------ images
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, rows: int | None = None) -> bytes:
    """A grey 8-bit PNG of ``width`` x ``height`` whose pixel data (all zeros, ``rows`` rows of it) is
    compressed as it is made: a 12,000 x 12,000 bomb is ~140 kB on disk and 144 MB decoded."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    parts = [comp.compress(row) for _ in range(height if rows is None else rows)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def text_bomb_png() -> bytes:
    """A 1x1 PNG with a zTXt chunk that inflates to 20 MB (Pillow caps text chunks)."""
    text = b"Comment\x00\x00" + zlib.compress(b"\x00" * 20_000_000, 9)
    good = png_bytes(1, 1)
    return good[:33] + _chunk(b"zTXt", text) + good[33:]


def giant_jpeg() -> bytes:
    """A small JPEG whose frame header claims 65,000 x 65,000 pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 99, 199)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65_000, 65_000)
    return bytes(data)


def _small_png(seed: int) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _folder(root: Path, counts: dict[str, int], extra: dict[str, bytes] | None = None) -> Path:
    """An image-folder dataset: ``counts`` class -> number of small valid PNGs, ``extra`` path -> bytes."""
    for i, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            (root / name / f"{j}.png").write_bytes(_small_png(100 * i + j))
    for rel, data in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _cifar(root: Path, records: float, test_records: float = 4, label: int = 3, name: str = "data_batch_1.bin",
           label_bytes: int = 1, test: str = "test_batch.bin") -> Path:
    root.mkdir(parents=True)
    rec = label_bytes + 3 * 32 * 32

    def blob(n: float) -> bytes:
        whole = bytearray()
        for _ in range(int(n)):
            whole += bytes([label] * label_bytes) + bytes(rec - label_bytes)
        return bytes(whole) + bytes(int((n - int(n)) * rec))

    (root / name).write_bytes(blob(records))
    if test:
        (root / test).write_bytes(blob(test_records))
    return root


def data_dirs(out: Path) -> dict[str, str]:
    """Bad ``--data`` folders; label -> path."""
    out.mkdir(parents=True, exist_ok=True)
    good = _small_png(7)
    made = {
        "bomb-png": _folder(out / "bomb", {"a": 3, "b": 3}, {"a/bomb.png": png_bytes(12_000, 12_000)}),
        "bomb-png-below-pillow-limit": _folder(out / "bomb81", {"a": 3, "b": 3}, {"b/bomb.png": png_bytes(9_000, 9_000)}),
        "giant-header-png": _folder(out / "giant", {"a": 3, "b": 3}, {"b/giant.png": png_bytes(100_000, 100_000, rows=2)}),
        "text-chunk-bomb-png": _folder(out / "ztxt", {"a": 3, "b": 3}, {"a/z.png": text_bomb_png()}),
        "giant-header-jpeg": _folder(out / "giantjpg", {"a": 3, "b": 3}, {"b/g.jpg": giant_jpeg()}),
        "random-bytes-png": _folder(out / "random", {"a": 3, "b": 3}, {"a/x.png": os.urandom(4096)}),
        "truncated-png": _folder(out / "trunc", {"a": 3, "b": 3}, {"b/t.png": good[: len(good) // 2]}),
        "empty-jpg": _folder(out / "emptyjpg", {"a": 3, "b": 3}, {"a/e.jpg": b""}),
        "text-as-png": _folder(out / "text", {"a": 3, "b": 3}, {"a/t.png": b"hello, not an image\n"}),
        "empty-class": _folder(out / "emptyclass", {"a": 4, "b": 0}),
        "all-classes-empty": _folder(out / "allempty", {"a": 0, "b": 0}),
        "one-class": _folder(out / "oneclass", {"a": 6}),
        "empty-val-class": _folder(out / "split", {"train/a": 3, "train/b": 3, "val/a": 3, "val/b": 0}),
        "val-class-missing": _folder(out / "split2", {"train/a": 3, "train/b": 3, "val/a": 3}),
        "non-image-only-class": _folder(out / "notes", {"a": 3}, {"b/readme.txt": b"no images here\n"}),
        "cifar-truncated": _cifar(out / "c10trunc", 5.5),
        "cifar-test-truncated": _cifar(out / "c10testtrunc", 5, test_records=2.25),
        "cifar-empty-test": _cifar(out / "c10emptytest", 5, test_records=0),
        "cifar-no-test": _cifar(out / "c10notest", 5, test=""),
        "cifar-bad-labels": _cifar(out / "c10labels", 5, label=200),
        "cifar100-truncated": _cifar(out / "c100trunc", 3.7, name="train.bin", label_bytes=2, test="test.bin"),
        "cifar-one-record": _cifar(out / "c10one", 1, test_records=1),
    }
    zero = _cifar(out / "c10devzero", 5)
    (zero / "data_batch_1.bin").unlink()
    (zero / "data_batch_1.bin").symlink_to("/dev/zero")
    made["cifar-devzero"] = zero
    fifo = _cifar(out / "c10fifo", 5)
    (fifo / "data_batch_2.bin").unlink(missing_ok=True)
    os.mkfifo(fifo / "data_batch_2.bin")
    made["cifar-fifo"] = fifo
    big = _cifar(out / "c10big", 5)
    with open(big / "data_batch_2.bin", "wb") as fh:  # sparse: 3 GB claimed, nothing written
        fh.truncate(3 << 30)
    made["cifar-huge-sparse"] = big
    folder_batch = _cifar(out / "c10dirbatch", 5)
    (folder_batch / "data_batch_3.bin").mkdir()
    made["cifar-batch-is-folder"] = folder_batch
    return {k: str(v) for k, v in made.items()}


# ------------------------------------------------------------------ checkpoints
class Payload:
    """Unpickling this runs ``touch MARKER``: a checkpoint loader must never do it."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def checkpoint_files(out: Path, state: dict, marker: Path) -> dict[str, str]:
    """Bad checkpoints for a model whose good state dict is ``state``; label -> path."""
    import pickle

    import torch

    out.mkdir(parents=True, exist_ok=True)
    Payload.marker = str(marker)
    made: dict[str, str] = {}

    def save(label: str, obj) -> None:
        made[label] = str(out / f"{label}.pt")
        torch.save(obj, made[label])

    def write(label: str, data: bytes) -> None:
        made[label] = str(out / f"{label}.pt")
        Path(made[label]).write_bytes(data)

    save("reduce-payload-zip", {"state_dict": state, "evil": Payload()})
    write("reduce-payload-raw-pickle", pickle.dumps(Payload()))
    write("reduce-payload-legacy", pickle.dumps({"x": Payload()}, protocol=2))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    write("zip-not-checkpoint", buf.getvalue())
    first = next(k for k, v in state.items() if v.ndim >= 2)
    save("wrong-shape", {**state, first: torch.zeros(*state[first].shape[:-1], state[first].shape[-1] + 1)})
    save("missing-keys", {k: v for i, (k, v) in enumerate(state.items()) if i})
    save("extra-keys", {**state, "extra.weight": torch.zeros(2)})
    save("empty-dict", {})
    save("tensor-not-dict", torch.zeros(3))
    save("non-tensor-values", {k: 1.0 for k in state})
    floats = [k for k, v in state.items() if v.is_floating_point()]
    save("nan-weights", {k: (torch.full_like(v, float("nan")) if k == floats[0] else v) for k, v in state.items()})
    save("inf-weights", {k: (torch.full_like(v, float("inf")) if k == floats[0] else v) for k, v in state.items()})
    save("huge-weights", {k: (torch.full_like(v, 1e38) if v.is_floating_point() else v) for k, v in state.items()})
    save("int-weights", {k: (v.to(torch.int64) if k == floats[0] else v) for k, v in state.items()})
    good = out / "good.pt"
    torch.save(state, good)
    data = good.read_bytes()
    write("truncated", data[: len(data) // 2])
    write("empty-file", b"")
    return made
