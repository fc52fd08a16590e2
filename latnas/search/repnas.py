"""RepNAS branch search (algorithm ``"repnas"``) on the ``repnas`` space, with the authors' schedule.

Every searchable layer is a :class:`~latnas.schema.blocks.DiverseBranchBlock` with
the six searchable branches of the authors' code (1x1, 1x1-avg, kxk, 1x1-kxk,
1xk, kx1) plus the identity BN, always on (not searched) where the layer keeps
its shape. Each searchable branch has an importance score; ONE global top-k
over all of them (``k = round(fraction x total)``, 0.34 by default) is the
branch-number constraint of RepNAS's ODBB search. A layer without ``id`` keeps
at least one branch (its best), so every mask is a valid arch.

Schedule, as in the authors' code:

1. **warm-up** (``warmup_epochs``): every step a uniformly random subset of
   exactly ``k`` branches is on; the scores are frozen (no score update).
2. **search**: the mask is the hard top-k ``m`` of the scores, made
   differentiable straight-through on the selected branches only:
   ``mask = m + m * (sigmoid(s/tau) - sigmoid(s/tau).detach())`` (forward:
   exactly ``m``; gradient: only scores of selected branches). Weights (SGD)
   and scores (Adam) are updated together on the train split.
3. **BN reset and retrain** (``retrain_epochs``): the final mask is fixed,
   every BN's statistics and affine parameters are reset, and the weights are
   retrained with that mask (fresh cosine schedule).
4. **fusion**: the kept branches are copied into plain DBBs and fused with
   :func:`latnas.reparam.reparameterize_model`; the fused model is checked
   against the masked multi-branch model (``extra["fused_parity_rel"]``).

The arch is the per-layer branch mask in the space's encoding
(:mod:`latnas.schema.spaces.repnas`); its latency comes from the problem's table. The
termination's evaluation count is the number of candidate archs scored with
the problem's scorer: the final mask, then noisy top-k masks of the learned
scores. Options: :class:`RepNAS.Options`. Resuming is refused.
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
from latnas.search.repnas_net import (  # noqa: F401  (re-exported: the mask helpers live there)
    MaskBound,
    MaskedDBB,
    RepNASNet,
    fused_parity,
    gumbel_noise,
    mask_to_arch,
    n_keep,
    random_k_mask,
    reset_bn,
    selected_ste_mask,
    topk_mask,
)
from latnas.search.training import accuracy, at_resolution, batches, recalibrate_bn, torch_threads, training_data

log = logging.getLogger(__name__)


@register_algorithm("repnas")
class RepNAS(Algorithm):
    """RepNAS branch search; see the module docstring."""

    @dataclass
    class Options:
        epochs: int = 5  # warm-up + search epochs
        warmup_epochs: int = 1  # exactly-k random branches, scores frozen
        fraction: float = 0.34  # share of searchable branches kept (global top-k)
        retrain_epochs: int = 2  # after the search: BN reset, then the fixed mask is retrained
        bn_reset: bool = True  # reset BN statistics and affine parameters before the retrain
        bn_batches: int = 8  # after the retrain: BN statistics re-estimated (cumulative) on this many batches
        batch_size: int = 32
        max_batches: int | None = None  # per epoch; None = all
        resolution: int | None = 32  # larger inputs are downsampled
        width_mult: float = 0.5  # proxy width of the trained network
        w_lr: float = 0.05
        s_lr: float = 0.05
        tau: float = 1.0  # sigmoid temperature of the straight-through mask
        noise: float = 0.0  # Gumbel noise on the scores when picking the top-k (0 = the authors' plain top-k)
        threads: int = 1  # torch intra-op threads during the run (0 = unchanged)

    def _steps(self):
        t0 = time.perf_counter()
        with torch_threads(int(self.options.threads)):
            state = _run(self.problem, self.options, self.seed, self.workdir, self.progress)
        evaluator, _ = self.evaluator()
        net = state["net"]
        candidates = [state["arch"]]
        gen = torch.Generator().manual_seed(self.seed + 1)
        tries = 0
        while len(candidates) < evaluator.max_evals and tries < 20 * evaluator.max_evals:
            tries += 1
            noisy = state["scores"] + float(self.options.noise or 1.0) * gumbel_noise(state["scores"].shape, gen)
            mask = topk_mask(noisy, state["k"], net.required)
            arch, _ = _fit_budget(self.problem, net, mask, state["scores"])
            if arch not in candidates:
                candidates.append(arch)
        yield from score_with(evaluator, np.asarray(candidates, dtype=np.int64))
        res = result_from(self.name, evaluator, state["history"], t0, state["extra"])
        res.extra["candidates"] = len(candidates)
        return res


def _fit_budget(problem, net: RepNASNet, mask: torch.Tensor, scores: torch.Tensor) -> tuple[tuple[int, ...], list[dict[str, Any]]]:
    """Drop the least important kept branches of ``mask`` (in place) until its arch meets the budget
    (never the last branch of a layer without ``id``)."""
    space, table = problem.space, problem.latency_table
    arch = mask_to_arch(space, net, mask)
    fixes: list[dict[str, Any]] = []
    if problem.budget is None:
        return arch, fixes
    predicted = float(table.predict(np.array([arch]))[0])
    order = [int(i) for i in torch.argsort(scores.detach(), stable=True) if mask[i] > 0.5]
    for i in order:
        if predicted <= problem.budget.value:
            break
        if any(sl.start <= i < sl.stop and int(mask[sl].sum()) <= 1 for sl in net.required):
            continue
        mask[i] = 0.0
        arch = mask_to_arch(space, net, mask)
        predicted = float(table.predict(np.array([arch]))[0])
        fixes.append({"dropped": list(net.branch_index[i]), "latency": predicted})
    return arch, fixes


def train_epochs(net: RepNASNet, data, mask_fn, epochs: int, opt, gen: torch.Generator, scores=None,
                 s_opt=None, phase: str = "retrain", history: list | None = None, progress=None) -> None:
    """Train ``net`` for ``epochs`` with ``mask_fn()`` per step (scores updated when ``s_opt`` is given)."""
    bs, limit = int(opt.batch_size), (opt.max_batches or None)
    steps = min(math.ceil(len(data.x_train) / bs), limit or 10**9)
    w_opt = torch.optim.SGD(net.parameters(), lr=float(opt.w_lr), momentum=0.9, nesterov=True, weight_decay=4e-5)
    w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=max(1, epochs * steps))
    for epoch in range(epochs):
        counts: list[int] = []
        loss_sum = correct = seen = 0
        net.train()
        for xb, yb in batches(data.x_train, data.y_train, bs, gen, limit):
            mask = mask_fn()
            counts.append(int(mask.detach().round().sum()))
            out = net(xb, mask)
            loss = F.cross_entropy(out, yb)
            w_opt.zero_grad(set_to_none=True)
            if s_opt is not None:
                s_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            w_opt.step()
            w_sched.step()
            if s_opt is not None:
                s_opt.step()
            loss_sum += float(loss.detach()) * len(yb)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(yb)
        note = {"phase": phase, "epoch": epoch, "train_loss": loss_sum / max(1, seen),
                "train_acc": correct / max(1, seen), "kept_per_step": counts}
        if history is not None:
            history.append(note)
        log.info("repnas %s epoch %d: loss %.3f acc %.3f", phase, epoch, note["train_loss"], note["train_acc"])
        if progress is not None:
            progress(epoch + 1, epochs, f"{phase} epoch {epoch + 1}/{epochs} acc={note['train_acc']:.3f}")


def _run(problem, opt, seed: int, workdir, progress) -> dict[str, Any]:
    space, table = problem.space, problem.latency_table
    if space.name != "repnas" or any(space.choices[c].op != "dbb" for slot in space.layers for c in slot.allowed):
        raise DataError(f"repnas searches DBB branch masks; space {space.name!r} is not the repnas space (use --space repnas)")
    data = at_resolution(training_data(problem, seed), opt.resolution)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = RepNASNet(space, int(data.x_train.shape[1]), int(data.num_classes), float(opt.width_mult))
    total = net.n_searchable
    k = n_keep(total, float(opt.fraction))
    scores = torch.nn.Parameter(torch.zeros(total))
    warm, search = int(opt.warmup_epochs), max(0, int(opt.epochs) - int(opt.warmup_epochs))
    tau, noise = float(opt.tau), float(opt.noise)
    history: list[dict[str, Any]] = []
    # 1. warm-up: exactly k random branches per step, scores frozen
    train_epochs(net, data, lambda: random_k_mask(total, k, net.required, gen), warm, opt, gen,
                 phase="warmup", history=history, progress=progress)
    # 2. search: hard top-k forward, straight-through gradient to the selected scores only
    s_opt = torch.optim.Adam([scores], lr=float(opt.s_lr), betas=(0.5, 0.999))
    train_epochs(net, data, lambda: selected_ste_mask(scores, k, net.required, tau, noise, gen), search, opt, gen,
                 scores=scores, s_opt=s_opt, phase="search", history=history, progress=progress)
    final = topk_mask(scores, k, net.required)
    arch = mask_to_arch(space, net, final)
    fixes: list[dict[str, Any]] = []
    if table.space == space.name and table.n_layers == space.n_layers:
        arch, fixes = _fit_budget(problem, net, final, scores)
    # 3. BN reset and retrain of the chosen mask
    n_bn = reset_bn(net) if opt.bn_reset else 0
    train_epochs(net, data, lambda: final, int(opt.retrain_epochs), opt, gen, phase="retrain", history=history,
                 progress=progress)
    # BN statistics of the retrained mask as a cumulative average (a few momentum-0.1 steps after a reset
    # leave the running statistics far from the batch ones: eval accuracy at chance in a 16-step retrain)
    recalibrate_bn(net, lambda x: net(x, final), data.x_train, int(opt.batch_size), int(opt.bn_batches), gen)
    # 4. fuse
    predicted = float(table.predict(np.array([arch]))[0])
    net.eval()
    masked_acc = accuracy(lambda x: net(x, final), data.x_val, data.y_val)
    pruned = net.pruned(final).eval()
    from latnas.reparam import reparameterize_model

    fused = reparameterize_model(pruned)
    parity = fused_parity(MaskBound(net, final), fused, data.x_val[:64])
    fused_acc = accuracy(fused, data.x_val, data.y_val)
    if parity > 1e-4:
        log.warning("repnas: fused model differs from the multi-branch model by %.2e (relative)", parity)
    extra: dict[str, Any] = {
        "k": k,
        "total_searchable": total,
        "fraction": float(opt.fraction),
        "kept_searchable": int(final.sum()),
        "kept_branches": ["+".join(b) for b in net.kept_branches(final)],
        "scores": [round(float(s), 4) for s in scores.detach()],
        "branch_index": [list(b) for b in net.branch_index],
        "bn_reset": n_bn,
        "masked_val_acc": masked_acc,
        "fused_val_acc": fused_acc,
        "fused_parity_rel": parity,
        "budget_fixes": fixes,
        "options": dataclasses.asdict(opt),
        "data": data.name,
        "predicted": predicted,
    }
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": pruned.state_dict(), "fused": fused.state_dict(), "scores": scores.detach()},
                   workdir / "repnas_model.pt")
    return {"arch": tuple(arch), "net": net, "scores": scores.detach(), "k": k, "history": history, "extra": extra}


def train_fixed_mask(space, data, arch, opt: "RepNAS.Options", seed: int = 0) -> dict[str, float]:
    """Train the network with one fixed arch (mask) for ``opt.epochs + opt.retrain_epochs`` epochs, fuse it,
    and return its validation accuracy: the baseline a searched mask is compared with at equal training."""
    data = at_resolution(data, opt.resolution)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = RepNASNet(space, int(data.x_train.shape[1]), int(data.num_classes), float(opt.width_mult))
    mask = net.mask_of_arch(space.parse_arch(arch))
    train_epochs(net, data, lambda: mask, int(opt.epochs) + int(opt.retrain_epochs), opt, gen)
    from latnas.reparam import reparameterize_model

    fused = reparameterize_model(net.pruned(mask).eval())
    return {"fused_val_acc": accuracy(fused, data.x_val, data.y_val),
            "fused_parity_rel": fused_parity(MaskBound(net, mask), fused, data.x_val[:64])}
