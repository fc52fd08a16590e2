"""Hierarchical differentiable search (H-DAS / FBNet style), algorithm ``"dnas"``.

A weight-sharing :class:`~latnas.search.supernet.Supernet` holds every op of
every searchable layer plus stage-level depth and width choices. Weights
(train split) and architecture logits (val split) are updated in turn; the
arch loss is ``CE + lambda * log(E[latency])`` with the expected latency from
the context's LatencyTable (:func:`~latnas.search.supernet.expected_latency`).
Gumbel-softmax temperature anneals exponentially from ``tau`` to ``tau_min``.

The final arch is the per-layer argmax with layers past the argmax stage
depth set to ``skip``. The width choice is not part of the space's arch
encoding: it is reported in ``SearchResult.extra["stage_width"]`` and the
reported latency is that of the full-width arch. With a budget, ``lambda``
grows while the currently derived arch is over budget, and a final arch over
budget is greedily cheapened (recorded in ``extra["budget_fixes"]``).

Options (``ctx.options``; strings from a CLI are coerced), defaults in brackets:

- ``epochs`` (5), ``warmup_epochs`` (1, weights only), ``batch_size`` (32),
  ``max_batches`` (10 per epoch; None = all), ``resolution`` (16: larger
  inputs are downsampled for the supernet);
- ``lambda_lat`` (0.2), ``tau`` (5.0), ``tau_min`` (1.5: lower temperatures
  make the weight steps nearly single-path, which does not train in a few
  epochs), ``hard`` (False: every op runs, weighted, as in FBNet; True:
  straight-through one-hot sampling as in GDAS, one op per layer: ~10x
  cheaper per step, but the supernet then does not train in a few epochs);
- ``w_lr`` (0.05, SGD), ``a_lr`` (0.05, Adam), ``width_mult`` (0.25,
  supernet proxy width), ``head_channels`` (128);
- ``search_depth`` (True), ``widths`` ((0.5, 0.75, 1.0); None/empty = no
  width search), ``width_scaling`` ("quadratic" or "linear");
- ``lambda_growth`` (1.2: with a budget, lambda is multiplied by it after each
  arch step whose derived arch is over budget, else divided by it, not below
  ``lambda_lat``), ``bn_batches`` (4, BN recalibration of the derived path);
- ``threads`` (1: torch intra-op threads during the run, restored after; 0 =
  leave as is; the tensors are tiny, so more threads mostly add overhead,
  badly so on a busy CPU).
"""
from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latnas.errors import DataError
from latnas.search.base import SearchContext, SearchData, SearchResult, register_algorithm
from latnas.search.supernet import (
    DEFAULT_WIDTHS,
    ArchParams,
    Supernet,
    build_layout,
    derive_arch,
    expected_latency,
    greedy_fit_budget,
)

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "epochs": 5,
    "warmup_epochs": 1,
    "batch_size": 32,
    "max_batches": 10,
    "resolution": 16,
    "lambda_lat": 0.2,
    "tau": 5.0,
    "tau_min": 1.5,
    "hard": False,
    "w_lr": 0.05,
    "a_lr": 0.05,
    "width_mult": 0.25,
    "head_channels": 128,
    "search_depth": True,
    "widths": DEFAULT_WIDTHS,
    "width_scaling": "quadratic",
    "lambda_growth": 1.2,
    "bn_batches": 4,
    "threads": 1,
}


SHARED_OPTIONS = frozenset({"resume", "scorer"})  # set by the search loop for every algorithm


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        if v.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if v.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise DataError(f"expected a boolean option value, got {v!r}")
    return bool(v)


def _as_floats(v: Any) -> tuple[float, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(float(t) for t in v.replace("+", ",").split(",") if t.strip())
    if isinstance(v, (int, float)):
        return (float(v),)
    return tuple(float(t) for t in v)


def options_with_defaults(options: dict[str, Any], defaults: dict[str, Any], algo: str) -> dict[str, Any]:
    """``defaults`` overridden by ``options``, values coerced to the defaults' types (CLI gives strings)."""
    out = dict(defaults)
    for key, value in options.items():
        if key in SHARED_OPTIONS:
            continue
        if key not in defaults:
            log.warning("%s ignores unknown option %r (known: %s)", algo, key, ", ".join(sorted(defaults)))
            continue
        default = defaults[key]
        try:
            if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "all")):
                out[key] = None
            elif isinstance(default, bool):
                out[key] = _as_bool(value)
            elif isinstance(default, tuple):
                out[key] = _as_floats(value)
            elif isinstance(default, int) or (default is None and isinstance(value, str) and value.strip().isdigit()):
                out[key] = int(value)
            elif isinstance(default, float):
                out[key] = float(value)
            else:
                out[key] = value
        except (TypeError, ValueError):
            raise DataError(f"{algo} option {key}={value!r} is not a valid {type(default).__name__}") from None
    return out


def context_data(ctx: SearchContext) -> SearchData:
    """The context's dataset, or the default one from :mod:`latnas.search.data`."""
    if ctx.data is not None:
        return ctx.data
    try:
        from latnas.search.data import load_data
    except ImportError:
        raise DataError("this search needs a dataset (SearchContext.data) and latnas.search.data is unavailable") from None
    return load_data(space=ctx.space, seed=ctx.seed)


def _at_resolution(data: SearchData, resolution: int | None) -> SearchData:
    """Downsample (never upsample) the images so the supernet trains fast on a CPU."""
    if not resolution or min(data.x_train.shape[-2:]) <= int(resolution):
        return data
    size = (int(resolution), int(resolution))
    rs = lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)  # noqa: E731
    return SearchData(rs(data.x_train), data.y_train, rs(data.x_val), data.y_val, data.num_classes,
                      f"{data.name}->{resolution}px")


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, gen: torch.Generator, limit: int | None):
    perm = torch.randperm(len(x), generator=gen)
    n = math.ceil(len(x) / batch_size)
    if limit is not None:
        n = min(n, int(limit))
    for i in range(n):
        idx = perm[i * batch_size:(i + 1) * batch_size]
        yield x[idx], y[idx]


@torch.no_grad()
def evaluate(net: torch.nn.Module, weights, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        out = net(x[i:i + batch_size], *weights)
        correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(1, len(x))


@torch.no_grad()
def recalibrate_bn(net: torch.nn.Module, weights, x: torch.Tensor, batch_size: int, n_batches: int, gen: torch.Generator) -> None:
    """Re-estimate BN statistics for one fixed path (its stats differ from the mixed ones)."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    net.train()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(max(1, n_batches)):
        idx = perm[i * batch_size:(i + 1) * batch_size]
        if len(idx) == 0:
            break
        net(x[idx], *weights)
    for bn in bns:
        bn.momentum = 0.1


def score_arch(ctx: SearchContext, arch, fallback: float) -> tuple[float, str]:
    """RWE score of ``arch`` (:mod:`latnas.search.rwe`, on the context's data) or ``fallback``."""
    try:
        from latnas.search.rwe import make_scorer
    except ImportError:
        return fallback, "supernet_val_acc"
    try:
        return float(make_scorer(ctx)([tuple(arch)])[0]), "rwe"
    except Exception as exc:  # scoring is a report, never fatal
        log.warning("RWE scoring failed (%s); using supernet validation accuracy", exc)
        return fallback, "supernet_val_acc"


def latency_log_shift(table) -> float:
    """Shift keeping ``log(E + shift)`` finite when a table has zero or negative entries.

    Any expected latency is at least ``f(sum_l min(0, min_c T[l, c]))``
    (depth mixes entries, width scales them by (0, 1], ``f`` is monotone).
    Tables of positive latencies (the usual case) get 0.
    """
    low = float(np.sum(np.minimum(0.0, np.nanmin(table.table, axis=1))))
    bound = float(table.correct(np.array([low]))[0])
    return 0.0 if bound > 0 else 1e-3 - bound + 1e-3 * max(1.0, abs(bound))


@contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch intra-op threads (0: unchanged), restoring the old count."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@register_algorithm("dnas")
def run(ctx: SearchContext) -> SearchResult:
    """Differentiable hierarchical search; see the module docstring."""
    opt = options_with_defaults(dict(ctx.options), DEFAULTS, "dnas")
    with torch_threads(int(opt["threads"])):
        return _run(ctx, opt)


def _run(ctx: SearchContext, opt: dict[str, Any]) -> SearchResult:
    t0 = time.perf_counter()
    space, table = ctx.space, ctx.latency
    if table.n_layers != space.n_layers:
        raise DataError(f"latency table has {table.n_layers} layers, space {space.name!r} has {space.n_layers}")
    if ctx.budget is not None:
        _, lat_min = table.min_arch()
        if lat_min > ctx.budget:
            raise DataError(f"budget {ctx.budget:g} {table.unit} is below the cheapest arch's {lat_min:.4g} {table.unit}")
    if ctx.data is None:
        ctx.data = context_data(ctx)
    data = _at_resolution(ctx.data, opt["resolution"])
    torch.manual_seed(ctx.seed)
    gen = torch.Generator().manual_seed(ctx.seed)
    layout = build_layout(space, bool(opt["search_depth"]), opt["widths"], opt["width_scaling"])
    net = Supernet(space, layout, int(data.x_train.shape[1]), int(data.num_classes),
                   float(opt["width_mult"]), int(opt["head_channels"]))
    arch = ArchParams(layout)
    epochs, warm = int(opt["epochs"]), int(opt["warmup_epochs"])
    bs, limit = int(opt["batch_size"]), (opt["max_batches"] or None)
    steps_per_epoch = math.ceil(len(data.x_train) / bs) if limit is None else min(int(limit), math.ceil(len(data.x_train) / bs))
    w_opt = torch.optim.SGD(net.parameters(), lr=float(opt["w_lr"]), momentum=0.9, weight_decay=4e-5, nesterov=True)
    w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=max(1, epochs * steps_per_epoch))
    a_opt = torch.optim.Adam(arch.parameters(), lr=float(opt["a_lr"]), betas=(0.5, 0.999))
    lam0 = float(opt["lambda_lat"])
    lam = lam0 if (ctx.budget is None or lam0 > 0) else 0.01
    lam_floor = lam
    tau0, tau_min, hard = float(opt["tau"]), float(opt["tau_min"]), bool(opt["hard"])
    log_shift = latency_log_shift(table)
    history: list[dict[str, Any]] = []
    xv, yv = data.x_val, data.y_val
    for epoch in range(epochs):
        tau = tau0 * (tau_min / tau0) ** (epoch / max(1, epochs - 1))
        search = epoch >= warm
        val_iter = batches(xv, yv, bs, gen, None)
        tr_loss = tr_correct = tr_n = 0
        e_lat = float("nan")
        for xb, yb in batches(data.x_train, data.y_train, bs, gen, limit):
            net.train()
            with torch.no_grad():
                w = arch.sample(tau, hard, gen)
            out = net(xb, *w)
            loss = F.cross_entropy(out, yb)
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            w_opt.step()
            w_sched.step()
            tr_loss += float(loss.detach()) * len(yb)
            tr_correct += int((out.argmax(1) == yb).sum())
            tr_n += len(yb)
            if not search:
                continue
            try:
                xa, ya = next(val_iter)
            except StopIteration:
                val_iter = batches(xv, yv, bs, gen, None)
                xa, ya = next(val_iter)
            w = arch.sample(tau, hard, gen)
            ce = F.cross_entropy(net(xa, *w), ya)
            lat = expected_latency(table, layout, *arch.probs())
            a_loss = ce + lam * torch.log(lat + log_shift).to(ce.dtype) if lam > 0 else ce
            a_opt.zero_grad(set_to_none=True)
            w_opt.zero_grad(set_to_none=True)
            a_loss.backward()
            a_opt.step()
            e_lat = float(lat.detach())
            if ctx.budget is not None:
                # steer by the arch that would be derived now (the expected latency of a
                # still-diffuse distribution sits far above any argmax arch)
                now = derive_arch(layout, *arch.argmax()[:2])
                over = float(table.predict(np.array([now]))[0]) > ctx.budget
                growth = float(opt["lambda_growth"])
                lam = lam * growth if over else max(lam_floor, lam / growth)
        op_i, d_i, w_i = arch.argmax()
        derived = derive_arch(layout, op_i, d_i)
        note = {
            "epoch": epoch,
            "phase": "search" if search else "warmup",
            "tau": round(tau, 4),
            "lambda": lam,
            "train_loss": tr_loss / max(1, tr_n),
            "train_acc": tr_correct / max(1, tr_n),
            "expected_latency": e_lat if search else float(expected_latency(table, layout, *arch.probs()).detach()),
            "arch": space.format_arch(derived),
            "arch_latency": float(table.predict(np.array([derived]))[0]),
        }
        history.append(note)
        log.info("dnas epoch %d: %s", epoch, note)
        if ctx.progress is not None:
            ctx.progress(epoch + 1, epochs, f"epoch {epoch + 1}/{epochs} E[lat]={note['expected_latency']:.4g} {table.unit}")

    op_i, d_i, w_i = arch.argmax()
    derived = space.parse_arch(derive_arch(layout, op_i, d_i))
    fixes: list[dict] = []
    if ctx.budget is not None:
        derived, fixes = greedy_fit_budget(table, layout, derived, ctx.budget)
        derived = space.parse_arch(derived)
        if fixes:
            log.info("dnas: derived arch over budget, %d greedy replacements", len(fixes))
    # Accuracy of the derived path in the supernet (the arch actually reported:
    # after budget fixes, at the derived stage widths, full depth of the fixed arch).
    allowed_pos = [info.allowed.index(c) for info, c in zip(layout.layers, derived)]
    full_depth = [len(st.depths) - 1 for st in layout.stages]
    path = arch.one_hot(allowed_pos, full_depth, w_i)
    recalibrate_bn(net, path, data.x_train, bs, int(opt["bn_batches"]), gen)
    val_acc = evaluate(net, path, xv, yv)
    full_w = [len(st.widths) - 1 for st in layout.stages]
    val_acc_full_width = evaluate(net, arch.one_hot(allowed_pos, full_depth, full_w), xv, yv) if w_i != full_w else val_acc
    score, score_kind = score_arch(ctx, derived, val_acc)
    predicted = float(table.predict(np.array([derived]))[0])
    widths = [st.widths[i] for st, i in zip(layout.stages, w_i)]
    with torch.no_grad():
        lat_with_width = float(expected_latency(table, layout, *arch.one_hot(allowed_pos, full_depth, w_i)))
    probs = [[p.detach() for p in group] for group in arch.probs()]
    extra: dict[str, Any] = {
        "stage_depth": [st.depths[i] for st, i in zip(layout.stages, d_i)],
        "stage_width": widths,
        "width_representable": False,
        "predicted_with_width": lat_with_width,
        "width_scaling": layout.width_scaling,
        "supernet_val_acc": val_acc,
        "supernet_val_acc_full_width": val_acc_full_width,
        "score_kind": score_kind,
        "lambda_final": lam,
        "log_shift": log_shift,
        "budget_fixes": fixes,
        "budget_met": None if ctx.budget is None else bool(predicted <= ctx.budget),
        "op_probs": [[round(float(v), 4) for v in p] for p in probs[0]],
        "depth_probs": [[round(float(v), 4) for v in p] for p in probs[1]],
        "width_probs": [[round(float(v), 4) for v in p] for p in probs[2]],
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opt.items()},
        "data": data.name,
    }
    if ctx.workdir is not None:
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        torch.save({"supernet": net.state_dict(), "arch": arch.state_dict()}, ctx.workdir / "dnas_supernet.pt")
        (ctx.workdir / "dnas_arch.json").write_text(json.dumps({"arch": space.format_arch(derived), **extra}, indent=1))
    return SearchResult(
        algo="dnas",
        archs=[derived],
        predicted=[predicted],
        scores=[score],
        evals=1,
        wall_s=time.perf_counter() - t0,
        history=history,
        extra=extra,
    )
