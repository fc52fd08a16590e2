"""Small in-memory image datasets for accuracy estimates during search.

``load_data()`` with no path uses scikit-learn's digits (1,797 8x8 grey images,
10 classes, shipped inside scikit-learn: works offline), resized and
replicated to 3 channels at the space's input resolution (capped at
``MAX_DEFAULT_RESOLUTION`` for large-input spaces such as ``proxyless``: the
models are fully convolutional up to global pooling, so they run at any
resolution; the reduction is logged).

User datasets:

- an *ImageFolder* directory: one sub-folder per class with image files
  (read with Pillow, or matplotlib for PNG when Pillow is missing), or with
  ``train/`` and ``val/`` (or ``test/``) sub-folders laid out that way;
- a CIFAR *binary* directory: ``data_batch_*.bin`` + ``test_batch.bin``
  (CIFAR-10, 1 label byte + 3,072 pixel bytes per record) or ``train.bin`` +
  ``test.bin`` (CIFAR-100, 2 label bytes: coarse then fine; the fine label is
  used). The python-version CIFAR batches are pickles and are refused: pickle
  files can run code when read, so we never load them.

Every failure is a one-line :class:`DataError`.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from latnas.schema.errors import DataError
from latnas.schema.files import regular_file
from latnas.search.base import SearchData
from latnas.schema.spaces import SearchSpace, get_space

log = logging.getLogger(__name__)

MAX_DEFAULT_RESOLUTION = 32  # default cap for the digits stand-in on large-input spaces
MAX_IMAGE_PIXELS = 50_000_000  # one image's pixels (a 50 MP photo); a larger header is a decompression bomb
MAX_CIFAR_BYTES = 1 << 30  # one CIFAR binary file (CIFAR-100's train.bin is 154 MB)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _space(space: SearchSpace | str) -> SearchSpace:
    return get_space(space) if isinstance(space, str) else space


def default_resolution(space: SearchSpace | str) -> int:
    """Resolution used when none is given: the space's input, capped for large inputs."""
    _, h, w = _space(space).input_shape
    res = min(h, w)
    return min(res, MAX_DEFAULT_RESOLUTION)


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    down = x.shape[-1] > resolution
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=down)


def _to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if channels == 1:
        return x.mean(dim=1, keepdim=True)
    raise DataError(f"images have {x.shape[1]} channels, the space needs {channels}")


def _split(n: int, n_train: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise DataError(f"dataset has {n} images; need at least 2")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(n_val, max(1, n // 3)) if n_train + n_val > n else n_val
    n_train = min(n_train, n - n_val)
    return perm[:n_train], perm[n_train : n_train + n_val]


def _subsample(n: int, k: int, seed: int) -> np.ndarray:
    idx = np.random.default_rng(seed).permutation(n)
    return np.sort(idx[: min(k, n)])


def _finish(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    name: str,
    channels: int,
    resolution: int,
) -> SearchData:
    """uint8/float NHWC or NCHW arrays -> standardized NCHW float tensors at ``resolution``."""

    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
        return _to_channels(_resize(t, resolution), channels)

    xt, xv = prep(x_train), prep(x_val)
    mean = xt.mean(dim=(0, 2, 3), keepdim=True)
    std = xt.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return SearchData(
        x_train=(xt - mean) / std,
        y_train=torch.as_tensor(y_train, dtype=torch.int64),
        x_val=(xv - mean) / std,
        y_val=torch.as_tensor(y_val, dtype=torch.int64),
        num_classes=int(num_classes),
        name=name,
    )


# ------------------------------------------------------------------ digits
def _digits(n_train: int, n_val: int, seed: int, channels: int, resolution: int) -> SearchData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    y = digits.target.astype(np.int64)
    tr, va = _split(len(y), n_train, n_val, seed)
    return _finish(x[tr], y[tr], x[va], y[va], 10, f"digits@{resolution}", channels, resolution)


# -------------------------------------------------------------- ImageFolder
def _read_image(path: Path, resolution: int) -> np.ndarray:
    """One image as float32 (3, H, W) in [0, 1]."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib here
        Image = None
    try:
        if Image is not None:
            with warnings.catch_warnings():  # Pillow's bomb warning becomes an error, not a stderr line
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(path)
            with im:
                if im.width * im.height > MAX_IMAGE_PIXELS:  # from the header, before any pixel is decoded
                    raise ValueError(f"{im.width} x {im.height} pixels is over the limit of {MAX_IMAGE_PIXELS}")
                im = im.convert("RGB").resize((resolution, resolution), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        else:
            import matplotlib.image as mpimg

            arr = np.asarray(mpimg.imread(str(path)), dtype=np.float32)
            if arr.max() > 1.0:
                arr = arr / 255.0
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
            arr = arr[..., :3]
    except Exception as exc:  # corrupt or unsupported file: name it in one line
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    return arr.transpose(2, 0, 1)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder_files(root: Path, classes: Sequence[str]) -> tuple[list[Path], list[int]]:
    """Image files of each class folder; a class folder that is missing or holds no images is an error."""
    files: list[Path] = []
    labels: list[int] = []
    extra = sorted(set(p.name for p in _class_dirs(root)) - set(classes))
    if extra:
        raise DataError(f"{root / extra[0]} is not a class of the training folders ({', '.join(classes[:5])}"
                        f"{', ...' if len(classes) > 5 else ''})")
    for label, name in enumerate(classes):
        d = root / name
        if not d.is_dir():
            raise DataError(f"{root} has no folder for class {name!r}")
        found = [f for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        if not found:
            raise DataError(f"class folder {d} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += found
        labels += [label] * len(found)
    return files, labels


def _load_folder(files: list[Path], labels: list[int], idx: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([_read_image(files[i], resolution) for i in idx]) if len(idx) else np.zeros((0, 3, resolution, resolution), np.float32)
    y = np.asarray([labels[i] for i in idx], dtype=np.int64)
    return x, y


def _image_folder(root: Path, n_train: int, n_val: int, seed: int, channels: int, resolution: int) -> SearchData:
    sub = {p.name.lower(): p for p in _class_dirs(root)}
    val_dir = sub.get("val") or sub.get("valid") or sub.get("validation") or sub.get("test")
    if "train" in sub and val_dir is not None:
        classes = [p.name for p in _class_dirs(sub["train"])]
        if not classes:
            raise DataError(f"{sub['train']} has no class sub-folders")
        ftr, ltr = _folder_files(sub["train"], classes)
        fva, lva = _folder_files(val_dir, classes)
        if not ftr or not fva:
            raise DataError(f"{root}: no images found under train/ and {val_dir.name}/")
        xt, yt = _load_folder(ftr, ltr, _subsample(len(ftr), n_train, seed), resolution)
        xv, yv = _load_folder(fva, lva, _subsample(len(fva), n_val, seed + 1), resolution)
    else:
        classes = [p.name for p in _class_dirs(root)]
        if len(classes) < 2:
            raise DataError(f"{root} is not an image-folder dataset (need >= 2 class sub-folders of images)")
        files, labels = _folder_files(root, classes)
        if not files:
            raise DataError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
        tr, va = _split(len(files), n_train, n_val, seed)
        xt, yt = _load_folder(files, labels, tr, resolution)
        xv, yv = _load_folder(files, labels, va, resolution)
    return _finish(xt, yt, xv, yv, len(classes), f"folder:{root.name}@{resolution}", channels, resolution)


# ------------------------------------------------------------ CIFAR binary
CIFAR_PIXELS = 3 * 32 * 32


def _cifar_dir(root: Path) -> Path | None:
    for cand in (root, root / "cifar-10-batches-bin", root / "cifar-100-binary"):
        if cand.is_dir() and (any(cand.glob("data_batch_*.bin")) or (cand / "train.bin").is_file()):
            return cand
    return None


def _read_cifar_bin(files: Sequence[Path], label_bytes: int, label_index: int) -> tuple[np.ndarray, np.ndarray]:
    record = label_bytes + CIFAR_PIXELS
    xs, ys = [], []
    for f in files:
        regular_file(f, "CIFAR binary file", MAX_CIFAR_BYTES)
        raw = np.fromfile(f, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise DataError(f"{f} is not a CIFAR binary file ({raw.size} bytes is not a multiple of {record})")
        raw = raw.reshape(-1, record)
        ys.append(raw[:, label_index].astype(np.int64))
        xs.append(raw[:, label_bytes:].reshape(-1, 3, 32, 32))
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_binary(root: Path, n_train: int, n_val: int, seed: int, channels: int, resolution: int) -> SearchData:
    train10 = sorted(root.glob("data_batch_*.bin"))
    if train10:
        test = root / "test_batch.bin"
        if not test.is_file():
            raise DataError(f"{root}: CIFAR-10 binary needs test_batch.bin beside data_batch_*.bin")
        xt, yt = _read_cifar_bin(train10, 1, 0)
        xv, yv = _read_cifar_bin([test], 1, 0)
        num_classes, name = 10, "cifar10"
    else:
        test = root / "test.bin"
        if not test.is_file():
            raise DataError(f"{root}: CIFAR-100 binary needs test.bin beside train.bin")
        xt, yt = _read_cifar_bin([root / "train.bin"], 2, 1)
        xv, yv = _read_cifar_bin([test], 2, 1)
        num_classes, name = 100, "cifar100"
    if len(yt) < 2:
        raise DataError(f"{root}: {len(yt)} training image(s); need at least 2")
    if yt.max(initial=0) >= num_classes or yv.max(initial=0) >= num_classes:
        raise DataError(f"{root}: labels out of range for {name}; is this the right binary format?")
    tr = _subsample(len(yt), n_train, seed)
    va = _subsample(len(yv), n_val, seed + 1)
    scale = np.float32(1.0 / 255.0)
    return _finish(xt[tr] * scale, yt[tr], xv[va] * scale, yv[va], num_classes, f"{name}@{resolution}", channels, resolution)


def _is_pickled_cifar(root: Path) -> bool:
    return any((root / n).is_file() for n in ("data_batch_1", "batches.meta", "meta", "train")) or any(
        (root / d).is_dir() for d in ("cifar-10-batches-py", "cifar-100-python")
    )


# ------------------------------------------------------------------ public
def load_data(
    path: str | Path | None = None,
    space: SearchSpace | str = "fbnet",
    n_train: int = 1000,
    n_val: int = 500,
    seed: int = 0,
    resolution: int | None = None,
) -> SearchData:
    """Load a small classification dataset as standardized NCHW tensors.

    ``path=None`` uses scikit-learn's digits. ``resolution`` defaults to the
    space's input size (capped at 32 for large-input spaces, see module doc).
    """
    sp = _space(space)
    channels = sp.input_shape[0]
    res = int(resolution) if resolution else default_resolution(sp)
    if res < 1:
        raise DataError(f"resolution must be positive, got {res}")
    if n_train < 1 or n_val < 1:
        raise DataError(f"n_train and n_val must be positive, got {n_train} and {n_val}")
    if not resolution and res < min(sp.input_shape[1:]):
        log.info("space %s takes %s inputs; using reduced resolution %d for accuracy estimates", sp.name, sp.input_shape, res)
    if path is None or str(path) in ("", "digits"):
        return _digits(n_train, n_val, seed, channels, res)
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"dataset path {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset path {root} must be a directory (an image folder or CIFAR binary batches)")
    cifar = _cifar_dir(root)
    if cifar is not None:
        return _cifar_binary(cifar, n_train, n_val, seed, channels, res)
    if _is_pickled_cifar(root):
        raise DataError(
            f"{root} looks like the python (pickled) CIFAR release, which latnas never unpickles; "
            "use the binary release (data_batch_*.bin / train.bin) instead"
        )
    return _image_folder(root, n_train, n_val, seed, channels, res)
