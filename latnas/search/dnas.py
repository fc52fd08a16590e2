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

After training, the derived arch and archs sampled from the learned
distribution (each made to fit the budget the same way) are scored with the
problem's scorer through ``ask``/``tell``: the termination's evaluation count
is the number of candidates scored (at least the derived arch). The result is
the Pareto front of the candidates, best score first; the derived arch is
named in ``extra["derived"]``. Options: :class:`DNAS.Options` (strings from
a CLI are converted by the field types). Resuming is refused.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latnas.schema.errors import DataError
from latnas.search.algorithm import Algorithm, register_algorithm, score_with
from latnas.search.evolution import result_from
from latnas.search.supernet import (
    DEFAULT_WIDTHS,
    ArchParams,
    Supernet,
    build_layout,
    derive_arch,
    expected_latency,
    greedy_fit_budget,
)
from latnas.search.training import (accuracy, at_resolution, batches, endless_batches, recalibrate_bn, torch_threads,
                                    training_data, weight_step)
from latnas.schema.spaces.base import Arch

log = logging.getLogger(__name__)


def latency_log_shift(table) -> float:
    """Shift keeping ``log(E + shift)`` finite when a table has zero or negative entries.

    Any expected latency is at least ``f(sum_l min(0, min_c T[l, c]))``
    (depth mixes entries, width scales them by (0, 1], ``f`` is monotone).
    Tables of positive latencies (the usual case) get 0.
    """
    low = float(np.sum(np.minimum(0.0, np.nanmin(table.table, axis=1))))
    bound = float(table.correct(np.array([low]))[0])
    return 0.0 if bound > 0 else 1e-3 - bound + 1e-3 * max(1.0, abs(bound))


@register_algorithm("dnas")
class DNAS(Algorithm):
    """Differentiable hierarchical search; see the module docstring."""

    @dataclass
    class Options:
        epochs: int = 5  # supernet epochs, warm-up included
        warmup_epochs: int = 1  # weights only
        batch_size: int = 32
        max_batches: int | None = 10  # per epoch; None = all
        resolution: int | None = 16  # larger inputs are downsampled for the supernet
        lambda_lat: float = 0.2  # weight of log(E[latency]) in the arch loss
        tau: float = 5.0  # initial Gumbel-softmax temperature
        tau_min: float = 1.5  # final temperature (lower: nearly single-path steps that do not train in a few epochs)
        hard: bool = False  # True: straight-through one-hot sampling (GDAS), ~10x cheaper, trains worse
        w_lr: float = 0.05  # SGD
        a_lr: float = 0.05  # Adam
        width_mult: float = 0.25  # supernet proxy width
        head_channels: int = 128
        search_depth: bool = True
        widths: tuple[float, ...] | None = DEFAULT_WIDTHS  # None/empty = no width search
        width_scaling: str = "quadratic"  # or "linear"
        lambda_growth: float = 1.2  # with a budget: lambda *= growth while the derived arch is over budget
        bn_batches: int = 4  # BN recalibration of the derived path
        threads: int = 1  # torch intra-op threads during the run (0 = unchanged)
        sample_tau: float = 1.0  # temperature of the candidate archs sampled after training

    def _steps(self):
        with torch_threads(int(self.options.threads)):
            derived, result = self._train()
        evaluator, _ = self.evaluator()
        candidates = self._candidates(derived, result, evaluator.max_evals)
        yield from score_with(evaluator, np.asarray(candidates, dtype=np.int64))
        res = result_from(self.name, evaluator, result.history, result.wall_s_start, result.extra)
        res.extra["candidates"] = len(candidates)
        return res

    def _candidates(self, derived, state, n: int) -> list[Arch]:
        """The derived arch, then distinct archs sampled from the learned distribution (fitted to the budget)."""
        problem = self.problem
        out: list[Arch] = [tuple(derived)]
        gen = torch.Generator().manual_seed(self.seed + 1)
        tries = 0
        with torch.no_grad():
            while len(out) < n and tries < 20 * n:
                tries += 1
                ops, depth, _ = state.arch.sample(float(self.options.sample_tau), True, gen)
                cand = problem.space.parse_arch(derive_arch(state.layout, [int(w.argmax()) for w in ops],
                                                            [int(w.argmax()) for w in depth]))
                if problem.budget is not None:
                    cand, _ = greedy_fit_budget(problem.latency_table, state.layout, cand, problem.budget.value)
                    cand = problem.space.parse_arch(cand)
                if cand not in out:
                    out.append(cand)
        return out

    def _train(self):
        return _train(self.problem, self.options, self.seed, self.workdir, self.progress)


@dataclass
class _Trained:
    layout: Any
    arch: ArchParams
    history: list[dict[str, Any]]
    extra: dict[str, Any]
    wall_s_start: float


def _train(problem, opt, seed: int, workdir, progress) -> tuple[Arch, _Trained]:
    t0 = time.perf_counter()
    space, table = problem.space, problem.latency_table
    budget = None if problem.budget is None else problem.budget.value
    if table.n_layers != space.n_layers:
        raise DataError(f"latency table has {table.n_layers} layers, space {space.name!r} has {space.n_layers}")
    data = at_resolution(training_data(problem, seed), opt.resolution)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    layout = build_layout(space, bool(opt.search_depth), opt.widths, opt.width_scaling)
    net = Supernet(space, layout, int(data.x_train.shape[1]), int(data.num_classes),
                   float(opt.width_mult), int(opt.head_channels))
    arch = ArchParams(layout)
    epochs, warm = int(opt.epochs), int(opt.warmup_epochs)
    bs, limit = int(opt.batch_size), (opt.max_batches or None)
    steps_per_epoch = math.ceil(len(data.x_train) / bs) if limit is None else min(int(limit), math.ceil(len(data.x_train) / bs))
    w_opt = torch.optim.SGD(net.parameters(), lr=float(opt.w_lr), momentum=0.9, weight_decay=4e-5, nesterov=True)
    w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=max(1, epochs * steps_per_epoch))
    a_opt = torch.optim.Adam(arch.parameters(), lr=float(opt.a_lr), betas=(0.5, 0.999))
    lam0 = float(opt.lambda_lat)
    lam = lam0 if (budget is None or lam0 > 0) else 0.01
    lam_floor = lam
    tau0, tau_min, hard = float(opt.tau), float(opt.tau_min), bool(opt.hard)
    log_shift = latency_log_shift(table)
    history: list[dict[str, Any]] = []
    xv, yv = data.x_val, data.y_val
    for epoch in range(epochs):
        tau = tau0 * (tau_min / tau0) ** (epoch / max(1, epochs - 1))
        search = epoch >= warm
        val_iter = endless_batches(xv, yv, bs, gen)
        tr_loss = tr_correct = tr_n = 0
        e_lat = float("nan")
        for xb, yb in batches(data.x_train, data.y_train, bs, gen, limit):
            net.train()
            with torch.no_grad():
                w = arch.sample(tau, hard, gen)
            loss_sum, correct = weight_step(net(xb, *w), yb, w_opt, w_sched, net.parameters())
            tr_loss, tr_correct, tr_n = tr_loss + loss_sum, tr_correct + correct, tr_n + len(yb)
            if not search:
                continue
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
            if budget is not None:
                # steer by the arch that would be derived now (the expected latency of a
                # still-diffuse distribution sits far above any argmax arch)
                now = derive_arch(layout, *arch.argmax()[:2])
                over = float(table.predict(np.array([now]))[0]) > budget
                growth = float(opt.lambda_growth)
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
        if progress is not None:
            progress(epoch + 1, epochs, f"epoch {epoch + 1}/{epochs} E[lat]={note['expected_latency']:.4g} {table.unit}")

    op_i, d_i, w_i = arch.argmax()
    derived = space.parse_arch(derive_arch(layout, op_i, d_i))
    fixes: list[dict] = []
    if budget is not None:
        derived, fixes = greedy_fit_budget(table, layout, derived, budget)
        derived = space.parse_arch(derived)
        if fixes:
            log.info("dnas: derived arch over budget, %d greedy replacements", len(fixes))
    # Accuracy of the derived path in the supernet (the arch actually reported:
    # after budget fixes, at the derived stage widths, full depth of the fixed arch).
    allowed_pos = [info.allowed.index(c) for info, c in zip(layout.layers, derived)]
    full_depth = [len(st.depths) - 1 for st in layout.stages]
    path = arch.one_hot(allowed_pos, full_depth, w_i)
    recalibrate_bn(net, lambda x: net(x, *path), data.x_train, bs, int(opt.bn_batches), gen)
    net.eval()
    val_acc = accuracy(lambda x: net(x, *path), xv, yv)
    full_w = [len(st.widths) - 1 for st in layout.stages]
    full_path = arch.one_hot(allowed_pos, full_depth, full_w)
    val_acc_full_width = accuracy(lambda x: net(x, *full_path), xv, yv) if w_i != full_w else val_acc
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
        "derived": space.format_arch(derived),
        "lambda_final": lam,
        "log_shift": log_shift,
        "budget_fixes": fixes,
        "budget_met": None if budget is None else bool(predicted <= budget),
        "op_probs": [[round(float(v), 4) for v in p] for p in probs[0]],
        "depth_probs": [[round(float(v), 4) for v in p] for p in probs[1]],
        "width_probs": [[round(float(v), 4) for v in p] for p in probs[2]],
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(opt).items()},
        "data": data.name,
    }
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        torch.save({"supernet": net.state_dict(), "arch": arch.state_dict()}, workdir / "dnas_supernet.pt")
        (workdir / "dnas_arch.json").write_text(json.dumps({"arch": space.format_arch(derived), **extra}, indent=1))
    return tuple(derived), _Trained(layout=layout, arch=arch, history=history, extra=extra, wall_s_start=t0)
