"""The supernet as a scorer: shared weights trained once, every arch scored as a path.

:class:`SupernetScorer` is a ``scorer(archs) -> scores`` (validation accuracy
of each arch's path after BN recalibration) with one more method the one-shot
algorithms use, :meth:`SupernetScorer.fit`: train the shared weights on the
paths of a choice mask (HourNAS: the vital-block supernet, then the shrunk
space; NSE: each round's subset, weights inherited, dropped ops reset).
Used as a plain scorer it fits the whole space on first use. Every fit is
stored (:mod:`latnas.search.oneshot.store`) and found again by its key.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from latnas.search.base import SearchData
from latnas.search.oneshot.net import NetConfig, Path as ArchPath, build_supernet, normalise_path
from latnas.search.oneshot.store import (chain_key, data_fingerprint, default_weights_dir, load_state, mask_digest,
                                         save_state)
from latnas.search.oneshot.train import TrainConfig, evaluate_path, train_paths
from latnas.search.training import at_resolution, torch_threads
from latnas.schema.spaces.base import Arch, SearchSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupernetConfig:
    net: NetConfig = field(default_factory=NetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    resolution: int | None = 8  # images are downsampled to this for CPU speed (None: as given)
    weights: str | None = None  # folder of stored weights (None: default cache; "none": never store)
    threads: int = 0  # torch threads while training/scoring (0: unchanged)


class SupernetScorer:
    """Scores archs with a weight-sharing supernet of ``space`` (see module docstring)."""

    def __init__(self, space: SearchSpace, data: SearchData, config: SupernetConfig = SupernetConfig(), seed: int = 0):
        self.space = space
        self.config = config
        self.seed = int(seed)
        self.data = at_resolution(data, config.resolution)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = build_supernet(space, data.num_classes, config.net, in_channels=int(self.data.x_train.shape[1]))
        self.key = chain_key("", space=space.name, n_layers=space.n_layers, n_choices=space.n_choices,
                             net=asdict(config.net), train=asdict(config.train), resolution=config.resolution,
                             data=data_fingerprint(self.data), seed=self.seed)
        self.fitted = False
        self.steps_trained = 0  # SGD steps this object took (0 when every fit came from the store)
        self.fits: list[dict[str, Any]] = []
        self.cache: dict[tuple[str, Arch], float] = {}

    # ------------------------------------------------------------- storage
    @property
    def weights_dir(self) -> Path | None:
        w = self.config.weights
        if w is not None and str(w).lower() == "none":
            return None
        return Path(w).expanduser() if w else default_weights_dir()

    def _file(self, key: str) -> Path | None:
        d = self.weights_dir
        return None if d is None else d / f"{self.space.name}-{key}.pt"

    # ----------------------------------------------------------------- fit
    def fit(self, mask: np.ndarray | None = None, epochs: int | None = None, multi_branch: int = 1,
            drop: bool = False) -> "SupernetScorer":
        """Train the shared weights on uniform paths of ``mask`` (default: the whole space), continuing from now.

        ``drop``: first re-initialise the weights of every choice outside the
        mask (NSE: ops that do not survive a round are dropped, and an op
        added later starts from scratch). Loads the result instead when stored.
        """
        allowed = self.space.allowed_mask()
        mask = allowed if mask is None else (np.asarray(mask, dtype=bool) & allowed)
        epochs = self.config.train.epochs if epochs is None else int(epochs)
        key = chain_key(self.key, mask=mask_digest(mask), epochs=epochs, multi_branch=int(multi_branch), drop=bool(drop))
        file = self._file(key)
        t0 = time.perf_counter()
        record: dict[str, Any] = {"choices": int(mask.sum()), "epochs": epochs, "multi_branch": int(multi_branch),
                                  "drop": bool(drop), "key": key}
        if file is not None and file.is_file():
            state, _ = load_state(file)
            self.net.load_state_dict(state)
            record.update(loaded=str(file), steps=0)
        else:
            with torch_threads(self.config.threads):
                if drop:
                    self._reset(allowed & ~mask)
                steps = train_paths(self.net, self.data, mask, self.config.train, seed=int(key[:8], 16),
                                    multi_branch=multi_branch, epochs=epochs)
            self.steps_trained += steps
            record.update(steps=steps)
            if file is not None:
                save_state(file, self.net.state_dict(), {"space": self.space.name, "key": key, "steps": steps})
                record.update(saved=str(file))
        record["seconds"] = time.perf_counter() - t0
        log.info("supernet fit: %s", record)
        self.fits.append(record)
        self.key = key
        self.fitted = True
        return self

    def _reset(self, mask: np.ndarray) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7)
            for layer, choice in zip(*np.nonzero(mask)):
                for module in self.net.choice_modules(int(layer), int(choice)):
                    for m in module.modules():
                        if hasattr(m, "reset_parameters"):
                            m.reset_parameters()

    # --------------------------------------------------------------- score
    def score_path(self, path: ArchPath) -> float:
        """Validation accuracy of one path (several choices per layer allowed: multi-branch)."""
        if not self.fitted:
            self.fit()
        p = normalise_path(path)
        with torch_threads(self.config.threads):
            return float(evaluate_path(self.net, self.data, p, self.config.train, seed=self.seed))

    def score(self, arch: Sequence[int]) -> float:
        a = self.space.parse_arch(tuple(int(v) for v in arch))
        if not self.fitted:
            self.fit()
        if (self.key, a) not in self.cache:
            self.cache[(self.key, a)] = self.score_path(a)
        return self.cache[(self.key, a)]

    def __call__(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        return np.array([self.score(a) for a in archs], dtype=np.float64)


def is_supernet(scorer: Any) -> bool:
    """Whether ``scorer`` can be refitted on a subspace (the one-shot algorithms' hook)."""
    return callable(getattr(scorer, "fit", None)) and hasattr(scorer, "score_path")
