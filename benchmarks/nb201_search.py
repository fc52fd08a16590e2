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
   predictor is refit and the search rerun, up to ``rounds`` times, each
   under the budget relaxed by the predictor's leave-one-out error on the k
   samples (:func:`loo_margin`, capped at 15%; the scores
   are cached, so a rerun re-scores nothing it already scored). ``measured``
   counts the extra device measurements. Regret is reported over the picks
   that meet the budget (an over-budget pick can beat the oracle).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from dataclasses import dataclass

import numpy as np

from latnas.schema.errors import LatnasError
from latnas.schema.latency_table import flops_table
from latnas.search import ALGORITHMS, Budget, SearchProblem, Termination, flops_budget_from_samples, minimize
from latnas.search.candidates import feasible_pool
from latnas.search.problem import ArchEvaluator
from latnas.search.report import profile_archs
from profilers.backends.table import TableBackend
from predictors.compile import compile_predictor
from predictors.transfer import TransferPredictor

ALGOS = ("bananas", "nsga2", "hournas", "nse", "rea", "random", "exhaustive")
QUANTILES = (25, 50, 75)


@dataclass
class Pick:
    arch: tuple[int, ...] | None  # None: the latency model refused the budget (below its cheapest arch)
    rounds: int = 1  # searches run (verified mode)
    measured: int = 0  # extra device measurements (verified mode)
    evals: int = 0  # distinct archs scored
    wall_s: float = 0.0  # verified mode: searches + measurements, one process


class CachedScorer:
    """Table lookups, counted: the number of distinct archs ever scored."""

    def __init__(self, lookup: dict):
        self.lookup = lookup
        self.seen: set = set()

    def __call__(self, archs):
        keys = [tuple(int(v) for v in a) for a in archs]
        self.seen.update(keys)
        return np.array([self.lookup[k] for k in keys], dtype=np.float64)


def parse_algo(spec: str) -> tuple[str, int | None, dict]:
    """``"bananas:100"`` -> ("bananas", 100, {}); ``"bananas/its"`` -> acquisition its; ``exhaustive``: every feasible arch."""
    name, _, evals = spec.partition(":")
    name, _, acq = name.partition("/")
    return name, (int(evals) if evals else None), ({"acquisition": acq} if acq else {})


def _front(space, table, scorer, budget: Budget, algo: str, evals: int, seed: int) -> list[tuple[int, ...]]:
    """The search's front, best score first (empty when the latency model refuses the budget).

    ``exhaustive`` scores every arch the latency model places within the
    budget (the reference: what a perfect optimiser on the same model finds).
    """
    try:
        problem = SearchProblem(space, table, scorer, budget=budget, scorer_key="nb201-table")
    except LatnasError:
        return []
    name, n, options = parse_algo(algo)
    if name == "exhaustive":
        pool = feasible_pool(ArchEvaluator(problem, max_evals=1))
        keys = [tuple(int(v) for v in a) for a in pool]
        scores = scorer(keys) if keys else np.zeros(0)
        return [keys[i] for i in np.argsort(-scores, kind="stable")]
    result = minimize(problem, ALGORITHMS.get(name)(options or None, seed=seed), Termination(n or evals))
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


def measure(device: TableBackend, space, archs) -> dict:
    """Measured ms of each arch through the emulated ``table`` device, as ``latnas search --profile-top`` measures."""

    names = [space.format_arch(a) for a in archs]
    got = profile_archs(space, names, device, quick=True)
    return {a: got[n] for a, n in zip(archs, names)}


def run_device(space, table, acc_lookup, dev, sources, seeds, evals=300, k=10, rounds=5, top_k=3, algos=ALGOS,
               log=print, score_lookup=None, models=("predictor", "verified", "flops"), data=None):
    """Every (seed, budget, algo, latency model) of one target device -> list of result dicts."""
    y = table.column(dev)
    acc = np.array([acc_lookup[tuple(a)] for a in table.archs.tolist()])
    score_lookup = acc_lookup if score_lookup is None else score_lookup  # what the search sees
    index = {tuple(a): i for i, a in enumerate(table.archs.tolist())}
    src = {c: m for c, m in sources.items() if c != dev}
    ftable = flops_table(space)
    device = TableBackend(table=data, column=dev)  # the emulated device the verified picks are measured on
    out = []
    for seed in seeds:
        tr = np.random.default_rng(1000 + seed).permutation(len(y))[:k]
        base = _fit(space, src, table.archs[tr], y[tr])
        # the relaxed budget's margin: the predictor's LOO error on the k samples, once per seed (a LOO
        # refit on every round's growing rows cost minutes per device and moved the margin little)
        margin = loo_margin(space, src, table.archs[tr], y[tr])
        for q in QUANTILES:
            budget_ms = float(np.percentile(y, q))
            oracle = float(acc[y <= budget_ms].max())
            try:
                fl_budget = Budget(flops_budget_from_samples(space, table.archs[tr], y[tr], budget_ms), "MFLOPs")
            except LatnasError:
                fl_budget = None
            for algo in algos:
                picks: dict[str, Pick] = {}
                if "predictor" in models:
                    sc = CachedScorer(score_lookup)
                    picks["predictor"] = Pick(_search(space, base, sc, Budget(budget_ms, "ms"), algo, evals, seed))
                    picks["predictor"].evals = len(sc.seen)
                if "flops" in models:
                    sc = CachedScorer(score_lookup)
                    picks["flops"] = Pick(_search(space, ftable, sc, fl_budget, algo, evals, seed) if fl_budget else None)
                    picks["flops"].evals = len(sc.seen)
                # verified (as --profile-top K): measure the front's top K, keep the best measured
                # within budget; if none is, refit with the K measurements and search again
                sc = CachedScorer(score_lookup)
                rows, lat_model, pick, n_meas, r = list(tr), base, None, 0, 0
                t_search = time.perf_counter()
                for r in range(1, rounds + 1 if "verified" in models else 1):
                    # search a little past the budget (by the predictor's own LOO error): archs it
                    # places just over may be under on the device, and only measuring tells
                    relaxed = Budget(budget_ms * (1.0 + margin), "ms")
                    top = [a for a in _front(space, lat_model, sc, relaxed, algo, evals, seed)
                           if index[a] not in rows][:top_k]
                    if not top:
                        break
                    measured = measure(device, space, top)
                    n_meas += len(top)
                    rows += [index[a] for a in top]
                    ok = [a for a in top if measured[a] <= budget_ms]
                    if ok:
                        pick = max(ok, key=lambda a: score_lookup[a])  # the user only knows the score
                        break
                    lat_model = _fit(space, src, table.archs[rows], y[rows])
                if pick is None:  # fall back to the best measured arch within the budget, if any
                    ok = [i for i in rows if y[i] <= budget_ms]
                    pick = tuple(int(v) for v in table.archs[max(ok, key=lambda i: acc[i])]) if ok else None
                if "verified" in models:
                    picks["verified"] = Pick(pick, rounds=r, measured=n_meas, evals=len(sc.seen))
                    picks["verified"].wall_s = time.perf_counter() - t_search
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
                        "rounds": p.rounds, "measured": p.measured, "evals": p.evals, "wall_s": p.wall_s,
                    })
    return out


def summarise(rows: list[dict], log=print) -> dict:
    """Per (latency model, algo): share met, mean/median regret (met picks), refusals, evals."""
    log(f"{'latency model':14s} {'algo':8s} {'runs':>5s} {'met':>7s} {'refused':>8s} {'regret mean':>12s} "
        f"{'median':>7s} {'p90':>6s} {'worst':>6s} {'evals':>6s} {'measured':>9s} {'wall s':>7s}")
    summary = {}
    for model in ("predictor", "verified", "flops"):
        for algo in sorted({r["algo"] for r in rows}, key=lambda a: (ALGOS.index(parse_algo(a)[0]) if parse_algo(a)[0] in ALGOS else len(ALGOS), a)):
            sel = [r for r in rows if r["model"] == model and r["algo"] == algo]
            if not sel:
                continue
            met = [r for r in sel if r["met"]]
            reg = np.array([r["regret"] for r in met]) if met else np.array([np.nan])
            s = {
                "runs": len(sel), "met": float(np.mean([r["met"] for r in sel])),
                "refused": float(np.mean([not r["found"] for r in sel])),
                "regret_mean": float(np.nanmean(reg)), "regret_median": float(np.nanmedian(reg)),
                "regret_p90": float(np.nanpercentile(reg, 90)), "regret_worst": float(np.nanmax(reg)),
                "wall_s": float(np.mean([r.get("wall_s", 0.0) for r in sel])),
                "evals": float(np.mean([r["evals"] for r in sel])), "measured": float(np.mean([r["measured"] for r in sel])),
            }
            summary[f"{model}/{algo}"] = s
            log(f"{model:14s} {algo:8s} {s['runs']:5d} {s['met']:7.1%} {s['refused']:8.1%} {s['regret_mean']:12.3f} "
                f"{s['regret_median']:7.3f} {s['regret_p90']:6.2f} {s['regret_worst']:6.2f} {s['evals']:6.0f} {s['measured']:9.2f} "
                f"{s['wall_s']:7.2f}")
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
       partial=None, models=("predictor", "verified", "flops"), data=None) -> dict:
    """Q2 over ``devices``; ``partial`` (a path) gets every row so far after each device."""
    t0 = time.perf_counter()
    rows = []
    for dev in devices:
        t1 = time.perf_counter()
        rows += run_device(space, table, acc_lookup, dev, sources, seeds, evals=evals, algos=algos, log=log,
                           score_lookup=score_lookup, models=models, data=data)
        if partial is not None:
            partial.write_text(json.dumps({"rows": rows}))
        log(f"  {dev}: {time.perf_counter() - t1:.0f} s")
    summary = summarise(rows, log=log)
    log(f"q2: {len(devices)} devices x {len(list(seeds))} seeds x {len(QUANTILES)} budgets x {len(algos)} algos "
        f"in {time.perf_counter() - t0:.0f} s")
    return {"rows": rows, "summary": summary}


def accuracy_predictor_lookup(space, table, column: str, k: int, proxies=("synflow", "params", "flops"), seed: int = 0):
    """``{arch: predicted accuracy}`` (on demand) from an accuracy predictor fit on ``k`` archs "trained" (table lookups)."""
    from latnas.search.scorers.predictor import PredictorScorer
    from predictors.accuracy import AccuracyPredictor

    from accuracy_predictor import features

    rows = np.random.default_rng(seed).permutation(len(table))[:k]
    model = AccuracyPredictor(space=space.name, proxies=proxies, random_state=seed)
    model.fit(features(space, table.archs[rows], tuple(proxies), {}), table.column(column)[rows])
    return ScoreLookup(PredictorScorer(space, model))


def main(argv=None) -> int:
    """Q2 alone: ``nb201_search.py --algos bananas:100,rea,exhaustive --models verified --seeds 3``."""
    import argparse
    import sys

    from nb201 import DATA, load
    from predictors.transfer import fit_source_models

    ap = argparse.ArgumentParser(description="NAS-Bench-201 Q2: search under a budget, verified on the table device")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--evals", type=int, default=300)
    ap.add_argument("--algos", default="rea,exhaustive", help="name[/acquisition][:evals], comma-separated")
    ap.add_argument("--models", default="verified", help="predictor,verified,flops")
    ap.add_argument("--devices", default="")
    ap.add_argument("--score-column", default="c100_test_acc")
    ap.add_argument("--score", default="table", help="table | predictor (K-shot accuracy predictor) ")
    ap.add_argument("--k-acc", type=int, default=50, help="--score predictor: trained archs")
    ap.add_argument("--acc-proxies", default="synflow,params,flops", help="--score predictor: zero-cost features")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    space, table, devices = load(Path(args.data))
    devs = [d for d in devices if not args.devices or d in args.devices.split(",")]
    acc = table.column(args.score_column)
    lookup = {tuple(a): float(v) for a, v in zip(table.archs.tolist(), acc)}
    score_lookup = None
    if args.score == "predictor":
        from latnas.search.scorers.proxies import parse_proxies

        score_lookup = accuracy_predictor_lookup(space, table, args.score_column, args.k_acc,
                                                 proxies=parse_proxies(args.acc_proxies))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    out = q2(space, table, devs, fit_source_models(table, devices), lookup, seeds, evals=args.evals,
             algos=tuple(args.algos.split(",")), score_lookup=score_lookup, models=tuple(args.models.split(",")),
             data=args.data, partial=None if args.json is None else Path(args.json + ".partial"))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
