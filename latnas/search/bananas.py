"""Surrogate-assisted search (algo ``"bananas"``): fit an accuracy surrogate on what was scored, ask for the best-looking.

After White et al., "BANANAS: Bayesian Optimization with Neural Architectures
for Neural Architecture Search" (AAAI 2021), with the surrogate of
:class:`predictors.accuracy.AccuracyPredictor` (an XGBoost ensemble over the
one-hot encoding, choice counts and cheap zero-cost proxies, ``proxies``,
default the closed-form ``params,flops``) instead of a neural ensemble:

1. ``init`` archs drawn uniformly among the budget-feasible ones are scored;
2. each round the surrogate is fit on every arch scored so far, and the
   ``batch_size`` unscored feasible candidates with the highest expected
   improvement over the best score (the ensemble's mean and spread as a
   Gaussian) are asked for, through ask/tell (a pool or remote scorer scores a
   batch at once);
3. candidates are every feasible arch when the space is small enough to
   enumerate (NAS-Bench-201), else mutants of the best archs scored plus
   random feasible archs (``candidates`` of them).

No evaluation is spent on an arch the budget rejects. The result is the Pareto
front of every arch scored, best score first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from latnas.schema.errors import DataError
from latnas.search.algorithm import Algorithm, register_algorithm, score_with
from latnas.search.candidates import feasible_archs, feasible_pool, mutants
from latnas.search.evolution import result_from
from latnas.search.scorers.proxies import parse_proxies, proxy_features
from latnas.schema.spaces.base import Arch


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    from scipy.stats import norm

    std = np.maximum(std, 1e-9)
    z = (mean - best) / std
    return (mean - best) * norm.cdf(z) + std * norm.pdf(z)


@register_algorithm("bananas")
class Bananas(Algorithm):
    """Surrogate (ridge + XGBoost ensemble) + expected improvement over budget-feasible candidates; resumable."""

    supports_resume = True

    @dataclass
    class Options:
        init: int = 10  # random feasible archs scored before the surrogate is first fit
        pop_size: int | None = None  # --pop-size: the same as init (the first population)
        batch_size: int = 10  # archs asked for per round (the surrogate is refit between rounds)
        ensemble: int = 5  # XGBoost members (their spread is the uncertainty)
        n_estimators: int = 150  # trees per member
        proxies: str = "params,flops"  # zero-cost features of the surrogate ("none": encoding only)
        candidates: int = 2000  # candidates per round when the space is too large to enumerate
        acquisition: str = "ei"  # ei (expected improvement) | ucb (mean + kappa * spread) | its (one member per pick)
        kappa: float = 0.5  # ucb's weight on the spread
        surrogate: str = "blend"  # blend (ridge on the one-hot + XGBoost members: learns additive structure from few rows) | xgb

    def _candidates(self, evaluator, pool, rng, allowed, seen: set[Arch]) -> np.ndarray:
        if pool is not None:
            keep = [i for i, row in enumerate(map(tuple, pool.tolist())) if row not in seen]
            return pool[keep]
        archs, scores, _ = evaluator.archive()
        top = [archs[i] for i in np.argsort(-scores)[:10]]
        per = max(1, self.options.candidates // (2 * max(1, len(top))))
        drawn = mutants(top, allowed, rng, per) if top else np.zeros((0, len(allowed)), dtype=np.int64)
        drawn = drawn[evaluator.feasible(evaluator.latency(drawn))] if len(drawn) else drawn
        extra = feasible_archs(evaluator, None, self.options.candidates // 2, rng, exclude=seen)
        rows = {tuple(int(v) for v in r) for r in drawn.tolist()} | set(extra)
        rows = [r for r in rows if r not in seen]
        rows = [r for r, ok in zip(rows, evaluator.feasible(evaluator.latency(np.asarray(rows, dtype=np.int64)))) if ok] if rows else []
        return np.asarray(sorted(rows), dtype=np.int64).reshape(-1, len(allowed))

    def _acquire(self, model, X: np.ndarray, best: float, want: int, rng) -> np.ndarray:
        """Indices of the ``want`` candidates to score next."""
        opt = self.options
        if opt.acquisition == "its":  # independent Thompson sampling over the ensemble members
            lin, tree = model._features(X)
            members = model._member_preds(model.boosters_, tree)
            if model.chosen_ == "blend":
                members = (members + (lin @ model.coef_ + model.intercept_)[None, :]) / 2
            picks: list[int] = []
            for m in rng.integers(len(members), size=4 * want):
                for i in np.argsort(-members[m], kind="stable"):
                    if int(i) not in picks:
                        picks.append(int(i))
                        break
                if len(picks) >= want:
                    break
            return np.asarray(picks[:want], dtype=np.int64)
        mean, std = model.predict_std(X)
        value = expected_improvement(mean, std, best) if opt.acquisition == "ei" else mean + opt.kappa * std
        return np.argsort(-value, kind="stable")[:want]

    def _steps(self):
        from predictors.accuracy import AccuracyPredictor

        t0 = time.perf_counter()
        opt = self.options
        init_n = opt.init if opt.pop_size is None else opt.pop_size
        if init_n < 1 or opt.batch_size < 1 or opt.ensemble < 2 or opt.candidates < 10:
            raise DataError("bananas needs init (pop_size) >= 1, batch_size >= 1, ensemble >= 2, candidates >= 10")
        if opt.surrogate not in ("blend", "xgb"):
            raise DataError(f"bananas surrogate must be blend or xgb, got {opt.surrogate!r}")
        if opt.acquisition not in ("ei", "ucb", "its"):
            raise DataError(f"bananas acquisition must be ei, ucb or its, got {opt.acquisition!r}")
        proxies = parse_proxies(opt.proxies)
        evaluator, ckpt = self.evaluator()  # resuming: stored scores replay without scoring
        space = evaluator.space
        rng = np.random.default_rng(self.seed)
        allowed = [np.flatnonzero(row) for row in space.allowed_mask()]
        pool = feasible_pool(evaluator)
        feats: dict[Arch, np.ndarray] = {}

        def features(archs: np.ndarray) -> np.ndarray:
            todo = [a for a in map(tuple, archs.tolist()) if a not in feats]
            if todo:
                values = proxy_features(space, todo, proxies, seed=self.seed) if proxies else np.zeros((len(todo), 0))
                feats.update({a: v for a, v in zip(todo, values)})
            return np.hstack([archs.astype(np.float64), np.asarray([feats[a] for a in map(tuple, archs.tolist())])
                              .reshape(len(archs), len(proxies))])

        if pool is not None:
            features(pool)
        seen: set[Arch] = set()
        history = []
        init = feasible_archs(evaluator, None, min(init_n, evaluator.remaining), rng)
        init = [a for a in init if bool(evaluator.feasible(evaluator.latency(np.asarray([a])))[0])]
        seen.update(init)
        if init:
            yield from score_with(evaluator, np.asarray(init, dtype=np.int64))
            if ckpt is not None:
                ckpt.save(evaluator, {"phase": "bananas", "round": 0})
        rounds = 0
        while not evaluator.exhausted:
            cands = self._candidates(evaluator, pool, rng, allowed, seen)
            if len(cands) == 0:
                break  # every feasible arch was scored
            archs, scores, _ = evaluator.archive()
            want = min(opt.batch_size, evaluator.remaining, len(cands))
            if len(archs) >= 5:
                model = AccuracyPredictor(space=space.name, proxies=proxies, mode=opt.surrogate, ensemble=opt.ensemble,
                                          n_estimators=opt.n_estimators, random_state=self.seed + rounds)
                model.fit(features(np.asarray(archs, dtype=np.int64)), scores)
                order = self._acquire(model, features(cands), float(scores.max()), want, rng)
            else:
                order = rng.permutation(len(cands))[:want]
            batch = [tuple(int(v) for v in cands[i]) for i in order]
            seen.update(batch)
            yield from score_with(evaluator, np.asarray(batch, dtype=np.int64))
            rounds += 1
            if ckpt is not None:
                ckpt.save(evaluator, {"phase": "bananas", "round": rounds})
            arch, best = evaluator.best()
            history.append({"phase": "bananas", "round": rounds, "evals": evaluator.n_evals,
                            "best_score": None if arch is None else float(best)})
            if self.progress is not None:
                self.progress(evaluator.n_evals, evaluator.max_evals, f"bananas round {rounds}: best {best:.4g}")
        return result_from(self.name, evaluator, history, t0, {"rounds": rounds, "proxies": list(proxies)})
