"""Q2 of ``benchmarks/nb201.py``: does a search under a budget meet it on the device, and at what regret?

For each device (the target; the other 18 columns are transfer sources), seed
and budget (the 25th / 50th / 75th percentile of the device's true latency):

1. k = 10 random archs are "measured" (their true latency is read from the
   table) and a :class:`TransferPredictor` is fit on them, then compiled to a
   :class:`LatencyTable`: the search's latency model. The FLOPs baseline gets
   its MFLOPs budget from a FLOPs-linear fit on the same 10 samples
   (:func:`latnas.search.flops_budget_from_samples`).
2. Each algorithm (nsga2, hournas, nse, random) searches with that latency
   model and the table's trained accuracy as the score, for ``evals``
   evaluations; the pick is the front's best score within the budget.
3. The pick's true latency and accuracy come from the table. *Regret* is the
   oracle's accuracy (best true accuracy among archs whose true latency meets
   the budget, by exhaustive lookup over 15,625) minus the pick's.
4. *Verified*: as ``latnas search --profile-top 3`` does on a real device, the
   front's top 3 (by score) are measured and the best one within the budget
   is kept; when none is, those measurements join the k samples, the
   predictor is refit and the search rerun, up to ``rounds`` times (the scores
   are cached, so a rerun re-scores nothing it already scored). ``measured``
   counts the extra device measurements. Regret is reported over the picks
   that meet the budget (an over-budget pick can beat the oracle).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from latnas.errors import LatnasError
from latnas.latency_table import flops_table
from latnas.search import ALGORITHMS, Budget, SearchProblem, Termination, flops_budget_from_samples, minimize
from predictors.compile import compile_predictor
from predictors.transfer import TransferPredictor

ALGOS = ("nsga2", "hournas", "nse", "rea", "random")
QUANTILES = (25, 50, 75)


@dataclass
class Pick:
    arch: tuple[int, ...] | None  # None: the latency model refused the budget (below its cheapest arch)
    rounds: int = 1  # searches run (verified mode)
    measured: int = 0  # extra device measurements (verified mode)
    evals: int = 0  # distinct archs scored


class CachedScorer:
    """Table lookups, counted: the number of distinct archs ever scored."""

    def __init__(self, lookup: dict):
        self.lookup = lookup
        self.seen: set = set()

    def __call__(self, archs):
        keys = [tuple(int(v) for v in a) for a in archs]
        self.seen.update(keys)
        return np.array([self.lookup[k] for k in keys], dtype=np.float64)


def _front(space, table, scorer, budget: Budget, algo: str, evals: int, seed: int) -> list[tuple[int, ...]]:
    """The search's front, best score first (empty when the latency model refuses the budget)."""
    try:
        problem = SearchProblem(space, table, scorer, budget=budget, scorer_key="nb201-table")
    except LatnasError:
        return []
    result = minimize(problem, ALGORITHMS.get(algo)(None, seed=seed), Termination(evals))
    return [tuple(int(v) for v in a) for a in result.archs]


def _search(space, table, scorer, budget: Budget, algo: str, evals: int, seed: int):
    front = _front(space, table, scorer, budget, algo, evals, seed)
    return front[0] if front else None


def loo_margin(space, sources, archs, y, cap: float = 0.15) -> float:
    """Median |relative error| of the transfer predictor on its own samples, leave-one-out (capped)."""
    errs = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        model = TransferPredictor(space=space.name, source_models=sources).fit(archs[keep], y[keep])
        errs.append(abs(float(model.predict(archs[i:i + 1])[0]) / y[i] - 1.0))
    return float(min(cap, np.median(errs)))


def _fit(space, sources, archs, y):
    model = TransferPredictor(space=space.name, source_models=sources).fit(archs, y)
    return compile_predictor(model)


def run_device(space, table, acc_lookup, dev, sources, seeds, evals=300, k=10, rounds=5, top_k=3, algos=ALGOS,
               log=print, score_lookup=None):
    """Every (seed, budget, algo, latency model) of one target device -> list of result dicts."""
    y = table.column(dev)
    acc = np.array([acc_lookup[tuple(a)] for a in table.archs.tolist()])
    score_lookup = acc_lookup if score_lookup is None else score_lookup  # what the search sees
    index = {tuple(a): i for i, a in enumerate(table.archs.tolist())}
    src = {c: m for c, m in sources.items() if c != dev}
    ftable = flops_table(space)
    out = []
    for seed in seeds:
        tr = np.random.default_rng(1000 + seed).permutation(len(y))[:k]
        base = _fit(space, src, table.archs[tr], y[tr])
        for q in QUANTILES:
            budget_ms = float(np.percentile(y, q))
            oracle = float(acc[y <= budget_ms].max())
            try:
                fl_budget = Budget(flops_budget_from_samples(space, table.archs[tr], y[tr], budget_ms), "MFLOPs")
            except LatnasError:
                fl_budget = None
            for algo in algos:
                picks: dict[str, Pick] = {}
                sc = CachedScorer(score_lookup)
                picks["predictor"] = Pick(_search(space, base, sc, Budget(budget_ms, "ms"), algo, evals, seed), evals=0)
                picks["predictor"].evals = len(sc.seen)
                sc = CachedScorer(score_lookup)
                picks["flops"] = Pick(_search(space, ftable, sc, fl_budget, algo, evals, seed) if fl_budget else None)
                picks["flops"].evals = len(sc.seen)
                # verified (as --profile-top K): measure the front's top K, keep the best measured
                # within budget; if none is, refit with the K measurements and search again
                sc = CachedScorer(score_lookup)
                rows, lat_model, pick, n_meas, r = list(tr), base, None, 0, 0
                for r in range(1, rounds + 1):
                    # search a little past the budget (by the predictor's own LOO error): archs it
                    # places just over may be under on the device, and only measuring tells
                    relaxed = Budget(budget_ms * (1.0 + loo_margin(space, src, table.archs[rows], y[rows])), "ms")
                    top = [a for a in _front(space, lat_model, sc, relaxed, algo, evals, seed)
                           if index[a] not in rows][:top_k]
                    if not top:
                        break
                    n_meas += len(top)
                    rows += [index[a] for a in top]
                    ok = [a for a in top if y[index[a]] <= budget_ms]
                    if ok:
                        pick = max(ok, key=lambda a: score_lookup[a])  # the user only knows the score
                        break
                    lat_model = _fit(space, src, table.archs[rows], y[rows])
                if pick is None:  # fall back to the best measured arch within the budget, if any
                    ok = [i for i in rows if y[i] <= budget_ms]
                    pick = tuple(int(v) for v in table.archs[max(ok, key=lambda i: acc[i])]) if ok else None
                picks["verified"] = Pick(pick, rounds=r, measured=n_meas, evals=len(sc.seen))
                for model, p in picks.items():
                    i = index.get(p.arch) if p.arch is not None else None
                    out.append({
                        "device": dev, "seed": seed, "quantile": q, "budget_ms": budget_ms, "algo": algo, "model": model,
                        "found": i is not None,
                        "true_ms": float(y[i]) if i is not None else float("nan"),
                        "met": bool(i is not None and y[i] <= budget_ms),
                        "acc": float(acc[i]) if i is not None else float("nan"),
                        "oracle": oracle,
                        "regret": oracle - float(acc[i]) if i is not None else float("nan"),
                        "rounds": p.rounds, "measured": p.measured, "evals": p.evals,
                    })
    return out


def summarise(rows: list[dict], log=print) -> dict:
    """Per (latency model, algo): share met, mean/median regret (met picks), refusals, evals."""
    log(f"{'latency model':14s} {'algo':8s} {'runs':>5s} {'met':>7s} {'refused':>8s} {'regret mean':>12s} "
        f"{'median':>7s} {'p90':>6s} {'evals':>6s} {'measured':>9s}")
    summary = {}
    for model in ("predictor", "verified", "flops"):
        for algo in sorted({r["algo"] for r in rows}, key=ALGOS.index):
            sel = [r for r in rows if r["model"] == model and r["algo"] == algo]
            if not sel:
                continue
            met = [r for r in sel if r["met"]]
            reg = np.array([r["regret"] for r in met]) if met else np.array([np.nan])
            s = {
                "runs": len(sel), "met": float(np.mean([r["met"] for r in sel])),
                "refused": float(np.mean([not r["found"] for r in sel])),
                "regret_mean": float(np.nanmean(reg)), "regret_median": float(np.nanmedian(reg)),
                "regret_p90": float(np.nanpercentile(reg, 90)),
                "evals": float(np.mean([r["evals"] for r in sel])), "measured": float(np.mean([r["measured"] for r in sel])),
            }
            summary[f"{model}/{algo}"] = s
            log(f"{model:14s} {algo:8s} {s['runs']:5d} {s['met']:7.1%} {s['refused']:8.1%} {s['regret_mean']:12.3f} "
                f"{s['regret_median']:7.3f} {s['regret_p90']:6.2f} {s['evals']:6.0f} {s['measured']:9.2f}")
    return summary


class ScoreLookup(dict):
    """``{arch: score}`` computed on first use by a registered scorer (e.g. the default vote)."""

    def __init__(self, scorer):
        super().__init__()
        self.scorer = scorer

    def __missing__(self, arch):
        self[arch] = float(self.scorer([arch])[0])
        return self[arch]


def q2(space, table, devices, sources, acc_lookup, seeds, evals=300, algos=ALGOS, log=print, score_lookup=None,
       partial=None) -> dict:
    """Q2 over ``devices``; ``partial`` (a path) gets every row so far after each device."""
    t0 = time.perf_counter()
    rows = []
    for dev in devices:
        t1 = time.perf_counter()
        rows += run_device(space, table, acc_lookup, dev, sources, seeds, evals=evals, algos=algos, log=log,
                           score_lookup=score_lookup)
        if partial is not None:
            partial.write_text(json.dumps({"rows": rows}))
        log(f"  {dev}: {time.perf_counter() - t1:.0f} s")
    summary = summarise(rows, log=log)
    log(f"q2: {len(devices)} devices x {len(list(seeds))} seeds x {len(QUANTILES)} budgets x {len(algos)} algos "
        f"in {time.perf_counter() - t0:.0f} s")
    return {"rows": rows, "summary": summary}
