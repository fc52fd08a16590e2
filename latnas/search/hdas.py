"""H-DAS on the NAS-Bench-201 cell, algorithm ``"hdas"``: cell, stage DAG and cells per stage.

The network (:mod:`latnas.search.hdas_net`) relaxes three levels: the NB201
cell's 6 edges (mixed ops, DARTS; or one Gumbel-sampled op per edge, GDAS),
each stage's DAG of cells (each node reads its 3 predecessors, the top 2 are
kept) and the number of cells per stage. Weights (train split, SGD) and
architecture parameters (val split, Adam, first-order DARTS) are updated in
turn, after ``warmup_epochs`` of weights only.

Hardware-aware loss: ``CE + lambda * relu(E[latency] / budget - 1)`` with
``E`` from the space's LatencyTable (:func:`hdas_expected_latency`). It is a
hinge on the problem's budget, so it never pushes an arch already within the
budget further down (the log-latency term of FBNet/``dnas`` drives depth to
its minimum); without a budget there is no latency term. Depth also has a
floor: ``min_cells`` cells per stage.

Collapse fixes (DARTS on NB201 derives all-skip cells, 54.30%):
``aux_skip`` (DARTS-: an auxiliary ``beta * x`` on every edge, ``beta`` decaying
from 1 to 0 over the search), derivation without ``none`` (DARTS' rule), and
``mode="gdas"`` (one sampled op per edge, straight-through).

The arch is the derived cell in the space's encoding (``predicted`` is the
table's latency of the benchmark network, 5 cells per stage); the stage DAG
and the cells per stage are in ``extra`` (the nb201 encoding cannot hold
them). After training the derived cell and cells sampled from ``softmax(alpha
/ sample_tau)`` are scored by the problem's scorer through ask/tell. Only the
``nb201`` space is accepted.
"""
from __future__ import annotations

import dataclasses
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
from latnas.search.hdas_net import N_OPS, HDASArch, HDASNet, StageLayout, hdas_expected_latency
from latnas.search.training import (accuracy, at_resolution, batches, endless_batches, recalibrate_bn, torch_threads,
                                    training_data, weight_step)
from latnas.schema.spaces.base import Arch

log = logging.getLogger(__name__)


@register_algorithm("hdas")
class HDAS(Algorithm):
    """Hierarchical DARTS on the nb201 cell; see the module docstring."""

    @dataclass
    class Options:
        epochs: int = 8  # warm-up included
        warmup_epochs: int = 3  # weights only
        batch_size: int = 32
        max_batches: int | None = 15  # per epoch; None = all
        resolution: int | None = 8  # inputs downsampled to this (digits are 8x8 at source)
        channels: tuple[int, ...] = (8, 16, 32)  # proxy widths of the 3 stages (benchmark: 16, 32, 64)
        max_cells: int = 3  # cells per stage in the search network (benchmark: 5)
        min_cells: int = 1  # floor of the cells-per-stage choice
        window: int = 3  # stage DAG: a node reads this many predecessors
        top: int = 2  # ... and keeps this many
        search_stage: bool = True  # False: plain chain, fixed max_cells (cell search only)
        mode: str = "darts"  # "darts" (softmax mixture) or "gdas" (one Gumbel-sampled op per edge)
        aux_skip: bool = True  # DARTS-: auxiliary skip beta*x on every edge, beta 1 -> 0
        free_op_dropout: float = 0.6  # P-DARTS: dropout on skip/pool outputs during the search (0 = off)
        allow_none: bool = False  # derive with "none" as a candidate (DARTS excludes it)
        derive: str = "argmax"  # "argmax" of alpha, or "pt": DARTS-PT's perturbation (the op whose removal hurts most)
        pt_images: int = 256  # val images per perturbation evaluation
        lambda_lat: float = 1.0  # weight of the budget hinge relu(E/B - 1)
        w_optimizer: str = "sgd"  # "sgd" (DARTS: momentum, cosine) or "adam" (trains the tiny proxy faster)
        w_lr: float = 0.05  # weight learning rate (cosine decay)
        a_lr: float = 3e-3  # Adam
        a_wd: float = 1e-3  # arch weight decay
        tau: float = 10.0  # gdas: Gumbel temperature, annealed to tau_min
        tau_min: float = 0.5
        bn_batches: int = 4
        sample_tau: float = 1.0  # temperature of the candidate cells sampled after training
        threads: int = 1  # torch intra-op threads during the run (0 = unchanged)

    def _steps(self):
        if self.problem.space.name != "nb201":
            raise DataError(f"hdas searches the NAS-Bench-201 cell; space {self.problem.space.name!r} "
                            "is not supported (use --space nb201, or --algo dnas)")
        opt = self.options
        if opt.mode not in ("darts", "gdas"):
            raise DataError(f"hdas mode must be 'darts' or 'gdas', got {opt.mode!r}")
        if opt.w_optimizer not in ("sgd", "adam"):
            raise DataError(f"hdas w_optimizer must be 'sgd' or 'adam', got {opt.w_optimizer!r}")
        if opt.derive not in ("argmax", "pt"):
            raise DataError(f"hdas derive must be 'argmax' or 'pt', got {opt.derive!r}")
        if not 1 <= int(opt.min_cells) <= int(opt.max_cells) or int(opt.top) < 1 or int(opt.window) < 1:
            raise DataError("hdas needs 1 <= min_cells <= max_cells, top >= 1, window >= 1")
        with torch_threads(int(opt.threads)):
            derived, trained = search_hdas(self.problem, opt, self.seed, self.progress)
        evaluator, _ = self.evaluator()
        cands = self._candidates(derived, trained["alpha"], evaluator.max_evals)
        yield from score_with(evaluator, np.asarray(cands, dtype=np.int64))
        res = result_from(self.name, evaluator, trained["history"], trained["t0"], trained["extra"])
        res.extra["candidates"] = len(cands)
        return res

    def _candidates(self, derived: Arch, alpha: torch.Tensor, n: int) -> list[Arch]:
        space, out = self.problem.space, [tuple(derived)]
        gen = torch.Generator().manual_seed(self.seed + 1)
        logits = alpha.detach().clone()
        if not self.options.allow_none:
            logits[:, 0] = -float("inf")
        probs = F.softmax(logits / float(self.options.sample_tau), dim=-1)
        for _ in range(20 * n):
            if len(out) >= n:
                break
            cand = space.parse_arch([int(v) for v in torch.multinomial(probs, 1, generator=gen).reshape(-1)])
            if self.problem.budget is not None:
                cand = fit_budget(self.problem.latency_table, cand, alpha, self.problem.budget.value)
            if cand not in out:
                out.append(cand)
        return out


def fit_budget(table, arch: Arch, alpha: torch.Tensor, budget: float) -> Arch:
    """Move edges to cheaper ops until the arch fits: each step the cheaper op with the highest alpha
    on the edge where that costs the least alpha (``none`` last). Stops at the cheapest arch."""
    a = list(arch)
    al = alpha.detach().numpy()
    while float(table.predict(np.array([a]))[0]) > budget:
        best = None
        for e in range(len(a)):
            for c in range(al.shape[1]):
                if table.table[e, c] < table.table[e, a[e]]:
                    cost = (al[e, a[e]] - al[e, c]) + (1e3 if c == 0 else 0.0)
                    if best is None or cost < best[0]:
                        best = (cost, e, c)
        if best is None:
            break
        a[best[1]] = best[2]
    return tuple(a)


def gumbel_hard(logits: torch.Tensor, tau: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """GDAS's sample: one op per edge (row), one-hot forward, Gumbel-softmax gradient (straight-through)."""
    u = torch.rand(logits.shape, generator=gen).clamp_(1e-9, 1.0 - 1e-9)
    soft = F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)
    hard = F.one_hot(soft.detach().argmax(dim=-1), logits.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())  # exactly one-hot forward


@torch.no_grad()
def perturbation_cell(net: HDASNet, arch: HDASArch, x: torch.Tensor, y: torch.Tensor, allow_none: bool) -> list[int]:
    """DARTS-PT's selection: per edge, the op whose removal from the mixture lowers val accuracy most.

    The trained relaxed network is evaluated (eval mode, no auxiliary skip)
    with one op of one edge zeroed at a time; alpha's magnitude is not used,
    which is why it does not inherit DARTS' bias towards parameter-free ops.
    Ties go to the larger alpha.
    """
    net.eval()
    w = arch.op_probs().detach()
    cell = []
    for e in range(w.shape[0]):
        best = None
        for c in range(0 if allow_none else 1, w.shape[1]):
            wp = w.clone()
            wp[e, c] = 0.0
            acc = accuracy(lambda xb: net(xb, arch, wp, 0.0), x, y)
            key = (acc, -float(w[e, c]))
            if best is None or key < best[0]:
                best = (key, c)
        cell.append(best[1])
    return cell


def search_hdas(problem, opt, seed: int, progress=None) -> tuple[Arch, dict[str, Any]]:
    """Train the relaxed network; return the derived cell and a record of the run."""
    t0 = time.perf_counter()
    space, table = problem.space, problem.latency_table
    budget = None if problem.budget is None else float(problem.budget.value)
    data = at_resolution(training_data(problem, seed), opt.resolution)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    max_cells = int(opt.max_cells)
    min_cells = int(opt.min_cells) if opt.search_stage else max_cells
    layout = StageLayout(max_cells, min_cells, int(opt.window) if opt.search_stage else 1, int(opt.top))
    chans = tuple(int(c) for c in opt.channels)
    net = HDASNet(chans, layout, int(data.x_train.shape[1]), int(data.num_classes))
    arch = HDASArch(len(chans), layout)
    search_params = [arch.alpha] + (list(arch.beta) + [arch.gamma] if opt.search_stage else [])
    epochs, warm = int(opt.epochs), int(opt.warmup_epochs)
    bs, limit = int(opt.batch_size), (opt.max_batches or None)
    per_epoch = math.ceil(len(data.x_train) / bs) if limit is None else min(int(limit), math.ceil(len(data.x_train) / bs))
    if opt.w_optimizer == "adam":
        w_opt = torch.optim.Adam(net.parameters(), lr=float(opt.w_lr), weight_decay=3e-4)
    else:
        w_opt = torch.optim.SGD(net.parameters(), lr=float(opt.w_lr), momentum=0.9, weight_decay=3e-4, nesterov=True)
    w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=max(1, epochs * per_epoch))
    a_opt = torch.optim.Adam(search_params, lr=float(opt.a_lr), betas=(0.5, 0.999), weight_decay=float(opt.a_wd))
    gdas = opt.mode == "gdas"
    search_steps = max(1, (epochs - warm) * per_epoch)
    step = 0
    cells_n = getattr(space, "cells_per_stage", 5)

    def op_weights(tau: float) -> torch.Tensor:
        if gdas:
            return gumbel_hard(arch.alpha, tau, gen)
        return arch.op_probs()

    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        search = epoch >= warm
        tau = float(opt.tau) * (float(opt.tau_min) / float(opt.tau)) ** (epoch / max(1, epochs - 1))
        val_iter = endless_batches(data.x_val, data.y_val, bs, gen)
        tr_loss = tr_correct = tr_n = 0
        e_lat = float("nan")
        for xb, yb in batches(data.x_train, data.y_train, bs, gen, limit):
            # DARTS-: beta = 1 during warm-up, then linearly to 0 by the end of the search
            beta = (1.0 - step / search_steps if search else 1.0) if opt.aux_skip else 0.0
            net.train()
            with torch.no_grad():
                w = op_weights(tau)
            drop = float(opt.free_op_dropout)
            loss_sum, correct = weight_step(net(xb, arch, w.detach(), beta, drop=drop), yb, w_opt, w_sched,
                                            net.parameters())
            tr_loss, tr_correct, tr_n = tr_loss + loss_sum, tr_correct + correct, tr_n + len(yb)
            if not search:
                continue
            step += 1
            xa, ya = next(val_iter)
            a_loss = F.cross_entropy(net(xa, arch, op_weights(tau), beta, drop=drop), ya)
            lat = hdas_expected_latency(table, arch.op_probs(), arch.count_probs(), layout.counts, cells_n)
            if budget is not None and float(opt.lambda_lat) > 0:
                a_loss = a_loss + float(opt.lambda_lat) * F.relu(lat / budget - 1.0).to(a_loss.dtype)
            a_opt.zero_grad(set_to_none=True)
            w_opt.zero_grad(set_to_none=True)
            a_loss.backward()
            a_opt.step()
            e_lat = float(lat.detach())
        cell = arch.derive_cell(bool(opt.allow_none))
        p = arch.op_probs().detach()
        note = {
            "epoch": epoch,
            "phase": "search" if search else "warmup",
            "train_loss": tr_loss / max(1, tr_n),
            "train_acc": tr_correct / max(1, tr_n),
            "expected_latency": e_lat,
            "skip_weight": round(float(p[:, 1].mean()), 4),
            "cell": space.format_arch(cell),
            "cells_per_stage": arch.derive_counts(),
        }
        history.append(note)
        log.info("hdas epoch %d: %s", epoch, note)
        if progress is not None:
            progress(epoch + 1, epochs, f"epoch {epoch + 1}/{epochs} cell={note['cell']} skip={note['skip_weight']}")

    if opt.derive == "pt":
        cell = space.parse_arch(perturbation_cell(net, arch, data.x_val[: int(opt.pt_images)],
                                                  data.y_val[: int(opt.pt_images)], bool(opt.allow_none)))
    else:
        cell = space.parse_arch(arch.derive_cell(bool(opt.allow_none)))
    derived = cell if budget is None else fit_budget(table, cell, arch.alpha, budget)
    counts, dag = arch.derive_counts(), arch.derive_dag()
    # the derived network (cell one-hot, DAG and counts fixed) inside the search net, after BN recalibration
    one_hot = F.one_hot(torch.tensor(derived), N_OPS).to(arch.alpha.dtype)
    fixed = (counts, dag)
    recalibrate_bn(net, lambda x: net(x, arch, one_hot, 0.0, fixed), data.x_train, bs, int(opt.bn_batches), gen)
    net.eval()
    val_acc = accuracy(lambda x: net(x, arch, one_hot, 0.0, fixed), data.x_val, data.y_val)
    with torch.no_grad():
        lat_stage = float(hdas_expected_latency(
            table, one_hot, F.one_hot(torch.tensor([layout.counts.index(c) for c in counts]), len(layout.counts)),
            layout.counts, cells_n))
    extra: dict[str, Any] = {
        "derived": space.format_arch(derived),
        "arch_str": space.arch_str(derived),
        "budget_moves": int(sum(a != b for a, b in zip(cell, derived))),
        "stage_dag": dag if opt.search_stage else None,
        "cells_per_stage": counts,
        "predicted_with_stage": lat_stage,
        "op_probs": [[round(float(v), 4) for v in row] for row in arch.op_probs().detach()],
        "count_probs": [[round(float(v), 4) for v in row] for row in arch.count_probs().detach()],
        "search_val_acc": val_acc,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(opt).items()},
        "data": data.name,
        "search_s": time.perf_counter() - t0,
    }
    return tuple(derived), {"alpha": arch.alpha.detach().clone(), "history": history, "extra": extra, "t0": t0}


__all__ = ["HDAS", "fit_budget", "search_hdas"]
