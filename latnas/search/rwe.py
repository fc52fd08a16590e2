"""Random-weight evaluation (RWE): a cheap accuracy estimate for an arch.

The arch is built with seeded random weights (PyTorch's default init) and
runs in eval mode without gradients. The globally pooled output of the block
before the classifier (the head's 1x1 conv) is the feature vector; only a
linear classifier is trained on the training split: a closed-form ridge
(least-squares) classifier on standardized features, solved in its n x n
kernel form, so it costs milliseconds and is exactly deterministic. The score
is its validation accuracy in [0, 1]. Scores are cached per arch.

``head="softmax"`` trains the paper's last layer instead: a softmax (linear +
cross-entropy) classifier on the same standardized features, by mini-batch
SGD with momentum for ``sgd_epochs`` epochs (seeded, so still deterministic).

Measured on digits (see docs/search.md): calibrating BatchNorm statistics on
a training batch first (``calibrate_bn=True``) makes the features much worse
(deep random residual nets then mix the signal away), so it is off by default;
and the ridge classifier matched logistic regression while being ~100x faster.

``rank_correlation_study`` checks how well RWE ranks archs against the same
archs briefly trained end to end (Kendall tau), for the benchmark/docs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from latnas.search.base import SearchData
from latnas.schema.spaces.base import Arch, SearchSpace

log = logging.getLogger(__name__)

Scorer = Callable[[Sequence[Arch]], np.ndarray]


@dataclass(frozen=True)
class RWEConfig:
    seed: int = 0  # weight seed: the same arch and seed always get the same score
    batch_size: int = 256  # feature extraction batch
    calibrate_bn: bool = False  # set BN statistics from one training batch before eval
    ridge: float = 0.5  # L2 strength of the ridge classifier, per feature (alpha = ridge * n_features)
    head: str = "ridge"  # last layer: "ridge" (closed form) or "softmax" (the paper's, trained by SGD)
    sgd_epochs: int = 30  # softmax head: SGD epochs over the training features
    sgd_lr: float = 0.1  # softmax head: SGD learning rate (momentum 0.9, cosine decay)
    sgd_weight_decay: float = 1e-4  # softmax head: L2 on the weights

    def __post_init__(self) -> None:
        from latnas.schema.errors import DataError

        if self.head not in HEADS:
            raise DataError(f"RWE head must be one of {', '.join(HEADS)}, got {self.head!r}")
        for name, kind in (("batch_size", int), ("sgd_epochs", int), ("ridge", float), ("sgd_lr", float),
                           ("sgd_weight_decay", float)):
            value = getattr(self, name)
            try:
                value = kind(value)
            except (TypeError, ValueError):
                raise DataError(f"RWE {name} must be a number, got {value!r}") from None
            if not np.isfinite(value) or value < 0 or (kind is int and value < 1):
                raise DataError(f"RWE {name} must be {'>= 1' if kind is int else 'finite and >= 0'}, got {value!r}")
            object.__setattr__(self, name, value)


HEADS = ("ridge", "softmax")


def _build(space: SearchSpace, arch: Arch, seed: int) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return space.build(arch)


def _calibrate_bn(body: nn.Module, x: torch.Tensor) -> None:
    bns = [m for m in body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass sets the statistics exactly
    body.train()
    with torch.no_grad():
        body(x)
    body.eval()


def _pooled(body: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            y = body(x[i : i + batch_size])
            out.append(y.mean(dim=(2, 3)) if y.dim() == 4 else y.flatten(1))
    return torch.cat(out).numpy().astype(np.float64)


def extract_features(space: SearchSpace, arch: Arch, data: SearchData, config: RWEConfig = RWEConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Pooled pre-classifier features of the train and val splits for a random-weight ``arch``."""
    model = _build(space, tuple(arch), config.seed)
    body = model[:-1]  # everything but the classifier (pool + linear)
    if config.calibrate_bn:
        _calibrate_bn(body, data.x_train[: config.batch_size])
    body.eval()
    f_train = _pooled(body, data.x_train, config.batch_size)
    f_val = _pooled(body, data.x_val, config.batch_size)
    return np.nan_to_num(f_train, posinf=0.0, neginf=0.0), np.nan_to_num(f_val, posinf=0.0, neginf=0.0)


def standardized(f_train: np.ndarray, f_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets scaled by the training features' mean and std; constant features drop out (std = inf)."""
    mean = f_train.mean(axis=0)
    std = f_train.std(axis=0)
    std[std < 1e-12 * max(1.0, float(np.abs(mean).max(initial=0.0)))] = np.inf
    return (f_train - mean) / std, (f_val - mean) / std


def linear_probe_accuracy(f_train: np.ndarray, y_train: np.ndarray, f_val: np.ndarray, y_val: np.ndarray, ridge: float = 0.5) -> float:
    """Validation accuracy of a ridge classifier trained on standardized features.

    One-vs-rest least squares on centred one-hot targets, solved in kernel form
    ``(X X^T + alpha I) A = Y`` (n_train x n_train), then ``scores = V X^T A``.
    """
    y_train, y_val, classes = np.asarray(y_train), np.asarray(y_val), np.unique(y_train)
    if len(classes) < 2:
        return float(np.mean(y_val == classes[0]))
    x, v = standardized(f_train, f_val)
    targets = (y_train[:, None] == classes[None, :]).astype(np.float64)
    targets -= targets.mean(axis=0)
    alpha = ridge * x.shape[1]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # tiny BLAS calls: extra threads only spin and contend
        gram = x @ x.T
        gram[np.diag_indices_from(gram)] += alpha
        coef = np.linalg.solve(gram, targets)
        pred = classes[np.argmax(v @ (x.T @ coef), axis=1)]
    return float(np.mean(pred == y_val))


def softmax_probe_accuracy(
    f_train: np.ndarray,
    y_train: np.ndarray,
    f_val: np.ndarray,
    y_val: np.ndarray,
    epochs: int = 30,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Validation accuracy of a softmax classifier (linear + cross-entropy) trained by SGD.

    RWE's own last layer: standardized features (as the ridge head), mini-batch
    SGD with momentum 0.9 and a cosine learning rate, from zero weights, with a
    seeded shuffle, so the same inputs always give the same score.
    """
    y_train, y_val, classes = np.asarray(y_train), np.asarray(y_val), np.unique(y_train)
    if len(classes) < 2:
        return float(np.mean(y_val == classes[0]))
    x, v = (torch.as_tensor(a, dtype=torch.float32) for a in standardized(f_train, f_val))
    t = torch.as_tensor(np.searchsorted(classes, y_train), dtype=torch.int64)
    layer = nn.Linear(x.shape[1], len(classes))
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    opt = torch.optim.SGD(layer.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    n_steps = max(1, epochs * -(-len(x) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = nn.functional.cross_entropy(layer(x[idx]), t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        pred = classes[layer(v).argmax(1).numpy()]
    return float(np.mean(pred == y_val))


class RWEScorer:
    """Callable ``scorer(archs) -> scores``: RWE accuracy of each arch, cached."""

    def __init__(self, space: SearchSpace, data: SearchData, config: RWEConfig = RWEConfig()):
        self.space = space
        self.data = data
        self.config = config
        self.cache: dict[Arch, float] = {}
        self._y_train = np.asarray(data.y_train)
        self._y_val = np.asarray(data.y_val)

    def score(self, arch: Sequence[int]) -> float:
        key = tuple(int(v) for v in arch)
        if key not in self.cache:
            f_train, f_val = extract_features(self.space, key, self.data, self.config)
            cfg = self.config
            if cfg.head == "softmax":
                with torch.random.fork_rng(devices=[]):
                    self.cache[key] = softmax_probe_accuracy(f_train, self._y_train, f_val, self._y_val, cfg.sgd_epochs,
                                                             cfg.sgd_lr, cfg.sgd_weight_decay, seed=cfg.seed)
            else:
                self.cache[key] = linear_probe_accuracy(f_train, self._y_train, f_val, self._y_val, cfg.ridge)
        return self.cache[key]

    def __call__(self, archs: Iterable[Sequence[int]]) -> np.ndarray:
        return np.array([self.score(a) for a in archs], dtype=np.float64)


def rwe_key(data: SearchData, seed: int, head: str = "ridge") -> str:
    """What RWE scores depend on (dataset, split sizes, image shape, weight seed, head), for checkpoints."""
    shape = tuple(data.x_train.shape[1:])
    tail = "" if head == "ridge" else f":head={head}"
    return f"rwe:{data.name}:{len(data.x_train)}/{len(data.x_val)}:{shape}:seed={seed}{tail}"


# ---------------------------------------------------------- rank study
def train_accuracy(
    space: SearchSpace,
    arch: Arch,
    data: SearchData,
    epochs: int = 3,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """Validation accuracy of ``arch`` trained end to end for a few epochs (Adam)."""
    model = _build(space, tuple(arch), seed)
    last = model[-1][-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model[-1][-1] = nn.Linear(last.in_features, data.num_classes)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        n = len(data.x_train)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                if len(idx) < 2:
                    continue
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
                loss.backward()
                opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(data.x_val), 256):
            correct += int((model(data.x_val[i : i + 256]).argmax(1) == data.y_val[i : i + 256]).sum())
    return correct / len(data.x_val)


def rank_correlation_study(
    space: SearchSpace,
    archs: Sequence[Arch],
    data: SearchData,
    epochs: int = 3,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Kendall tau between RWE scores and briefly-trained accuracy of the same archs."""
    from scipy.stats import kendalltau, spearmanr

    scorer = RWEScorer(space, data, RWEConfig(seed=seed))
    rwe, trained, rwe_s, train_s = [], [], 0.0, 0.0
    for i, arch in enumerate(archs):
        t0 = time.perf_counter()
        rwe.append(scorer.score(arch))
        t1 = time.perf_counter()
        trained.append(train_accuracy(space, arch, data, epochs=epochs, seed=seed))
        t2 = time.perf_counter()
        rwe_s += t1 - t0
        train_s += t2 - t1
        if progress:
            progress(i + 1, len(archs), f"rwe={rwe[-1]:.3f} trained={trained[-1]:.3f}")
    tau, p = kendalltau(rwe, trained)
    rho, _ = spearmanr(rwe, trained)
    return {
        "archs": [space.format_arch(a) for a in archs],
        "rwe": rwe,
        "trained": trained,
        "kendall_tau": float(tau),
        "kendall_p": float(p),
        "spearman_rho": float(rho),
        "epochs": epochs,
        "rwe_s_per_arch": rwe_s / max(1, len(archs)),
        "train_s_per_arch": train_s / max(1, len(archs)),
    }
