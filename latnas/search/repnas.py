"""RepNAS branch search (algorithm ``"repnas"``) on the ``repnas`` space.

Every searchable layer is a :class:`~latnas.blocks.DiverseBranchBlock` with
all of its candidate branches; ``kxk`` is always on, every OPTIONAL branch
has a learnable importance score. One **global** top-k over all optional
branches of the network (``k = round(fraction x total)``) gives a hard 0/1
mask, so the network keeps exactly ``k`` optional branches (the branch-number
constraint of RepNAS's ODBB search). Branch outputs are multiplied by the
mask; training uses a straight-through estimator: the forward pass uses the
hard mask, the backward pass sends gradients to the scores through
``sigmoid((s + g - t) / tau)`` (``g`` Gumbel noise, ``t`` the top-k
threshold). Before that, a warm-up samples each branch on with probability
``fraction`` (independently), so all branches get trained.

After the search the final mask (top-k of the scores, no noise) is fixed, the
weights are fine-tuned briefly, the kept branches are copied into plain DBBs
and fused with :func:`latnas.reparam.reparameterize_model`; the fused model is
checked against the masked multi-branch model. The arch is the per-layer
branch mask in the space's encoding (:mod:`latnas.spaces.repnas`), its latency
comes from the context's table (``table.space == "repnas"``).

The termination's evaluation count is the number of candidate archs scored
with the problem's scorer (``ask``/``tell``): the final mask, then masks
drawn as noisy top-k of the learned scores (fitted to the budget the same
way). The trained model's own accuracies are in ``extra`` (``masked_val_acc``,
``fused_val_acc``). Options: :class:`RepNAS.Options`. Resuming is refused.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latnas.blocks.dbb import DiverseBranchBlock
from latnas.errors import DataError
from latnas.search.algorithm import Algorithm, register_algorithm, score_with
from latnas.search.evolution import result_from
from latnas.search.training import accuracy, at_resolution, batches, torch_threads, training_data
from latnas.spaces.base import SearchSpace

log = logging.getLogger(__name__)

ALWAYS_ON = "kxk"
# ------------------------------------------------------------------- masks
def n_keep(total: int, fraction: float) -> int:
    """``k = round(fraction x total)``, clipped to ``[0, total]``."""
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"repnas fraction must lie in [0, 1], got {fraction}")
    return min(total, max(0, int(round(fraction * total))))


def topk_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Hard 0/1 mask of the ``k`` largest entries: exactly ``k`` ones, ties broken by index."""
    mask = torch.zeros_like(values)
    if k > 0:
        # stable sort: among equal values the lower index wins, so ties never change the count
        order = torch.sort(values.detach(), descending=True, stable=True).indices
        mask[order[:k]] = 1.0
    return mask


def gumbel_noise(shape: Sequence[int] | torch.Size, generator: torch.Generator | None = None) -> torch.Tensor:
    u = torch.rand(tuple(shape), generator=generator).clamp_(1e-9, 1.0 - 1e-9)
    return -torch.log(-torch.log(u))


def ste_topk_mask(scores: torch.Tensor, k: int, tau: float = 1.0, noise: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Straight-through global top-k mask.

    Forward value: the hard top-k of ``scores + noise * gumbel`` (exactly ``k``
    ones). Gradient: that of ``sigmoid((scores + noise * gumbel - t) / tau)``
    with ``t`` midway between the k-th and (k+1)-th noisy scores, so every
    score gets a non-zero gradient.
    """
    noisy = scores + noise * gumbel_noise(scores.shape, generator) if noise > 0 else scores
    hard = topk_mask(noisy, k)
    ordered = torch.sort(noisy.detach(), descending=True).values
    n = ordered.numel()
    if k <= 0:
        thr = ordered[0] + 1.0
    elif k >= n:
        thr = ordered[-1] - 1.0
    else:
        thr = 0.5 * (ordered[k - 1] + ordered[k])
    soft = torch.sigmoid((noisy - thr) / tau)
    return hard + (soft - soft.detach())  # exactly the hard value forward (x - x == 0)


def warmup_mask(scores: torch.Tensor, fraction: float, tau: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Warm-up mask: each branch on with probability ``fraction`` (independent draws).

    Straight-through to ``sigmoid(scores / tau)`` so the scores already learn
    which branches help while the weights warm up.
    """
    hard = (torch.rand(scores.shape, generator=generator) < fraction).to(scores.dtype)
    soft = torch.sigmoid(scores / tau)
    return hard + (soft - soft.detach())  # exactly the hard value forward (x - x == 0)


# ------------------------------------------------------------------ network
def _ch(c: int, mult: float, divisor: int = 4) -> int:
    return max(divisor, int(math.ceil(c * mult / divisor)) * divisor)


class MaskedDBB(nn.Module):
    """A DBB whose optional branch outputs are multiplied by mask entries."""

    def __init__(self, block: DiverseBranchBlock, optional: Sequence[str]):
        super().__init__()
        self.block = block
        self.optional = tuple(optional)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.block.branch[ALWAYS_ON](x)
        for i, name in enumerate(self.optional):
            out = out + mask[i] * self.block.branch[name](x)
        return self.block.act(out)


class RepNASNet(nn.Module):
    """The ``repnas`` space's backbone with every candidate branch, at ``width_mult`` x channels."""

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int, width_mult: float = 0.25):
        super().__init__()
        self.space_name = space.name
        stem = space.stem[0]
        stem_c = _ch(stem.cout, width_mult)
        self.stem = DiverseBranchBlock(in_channels, stem_c, stem.kernel, stem.stride, 1, branches=stem.branches or None)
        self.layers = nn.ModuleList()
        self.branch_index: list[tuple[int, str]] = []  # flat position -> (layer, branch)
        self.slices: list[slice] = []
        for slot in space.layers:
            names: list[str] = []
            for c in slot.allowed:
                for b in space.choices[c].branches.split("+"):
                    if b and b != ALWAYS_ON and b not in names:
                        names.append(b)
            kernel = space.choices[slot.allowed[0]].kernel
            block = DiverseBranchBlock(_ch(slot.cin, width_mult), _ch(slot.cout, width_mult), kernel, slot.stride,
                                       1, branches=(ALWAYS_ON, *names))
            optional = [b for b in block.branch_names if b != ALWAYS_ON]  # canonical order
            start = len(self.branch_index)
            self.branch_index.extend((slot.index, b) for b in optional)
            self.slices.append(slice(start, len(self.branch_index)))
            self.layers.append(MaskedDBB(block, optional))
        last = _ch(space.layers[-1].cout, width_mult)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes))

    @property
    def n_optional(self) -> int:
        return len(self.branch_index)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer, sl in zip(self.layers, self.slices):
            x = layer(x, mask[sl])
        return self.head(x)

    def kept_branches(self, mask: torch.Tensor) -> list[tuple[str, ...]]:
        """Per layer, the branches a 0/1 mask keeps (``kxk`` first)."""
        m = mask.detach()
        return [(ALWAYS_ON, *(b for b, v in zip(layer.optional, m[sl]) if v > 0.5))
                for layer, sl in zip(self.layers, self.slices)]

    @torch.no_grad()
    def pruned(self, mask: torch.Tensor) -> nn.Sequential:
        """A plain multi-branch model with only the kept branches (weights copied)."""
        blocks: list[nn.Module] = [self.stem]
        for layer, kept in zip(self.layers, self.kept_branches(mask)):
            src = layer.block
            dst = DiverseBranchBlock(src.in_channels, src.out_channels, src.kernel_size, src.stride, src.groups,
                                     branches=kept)
            for name in dst.branch_names:
                dst.branch[name].load_state_dict(src.branch[name].state_dict())
            blocks.append(dst)
        model = nn.Sequential(*[copy.deepcopy(b) for b in blocks], copy.deepcopy(self.head))
        model.train(self.training)
        return model


class MaskBound(nn.Module):
    """``net(x, mask)`` with the mask fixed: the masked multi-branch model as a plain module."""

    def __init__(self, net: RepNASNet, mask: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.mask)


def mask_to_arch(space: SearchSpace, net: RepNASNet, mask: torch.Tensor) -> tuple[int, ...]:
    """The space arch (per-layer branch-mask choice) of a 0/1 mask."""
    from latnas.spaces.repnas import branches_choice

    return space.parse_arch([branches_choice(kept) for kept in net.kept_branches(mask)])


def fused_parity(model: nn.Module, fused: nn.Module, x: torch.Tensor) -> float:
    """Max |fused - multi-branch| relative to max |multi-branch| on ``x`` (both in eval mode)."""
    model.eval()
    fused.eval()
    with torch.no_grad():
        a, b = model(x), fused(x)
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


# ---------------------------------------------------------------- algorithm
@register_algorithm("repnas")
class RepNAS(Algorithm):
    """RepNAS branch search; see the module docstring."""

    @dataclass
    class Options:
        epochs: int = 5  # warm-up included
        warmup_epochs: int = 1
        fraction: float = 0.34  # share of optional branches kept (global top-k)
        finetune_epochs: int = 2
        batch_size: int = 32
        max_batches: int | None = None  # per epoch; None = all
        resolution: int | None = 32  # larger inputs are downsampled
        width_mult: float = 0.5  # proxy width of the trained network
        w_lr: float = 0.05
        s_lr: float = 0.05
        tau: float = 1.0  # sigmoid temperature of the STE
        noise: float = 1.0  # Gumbel noise scale on the scores (0 = none)
        threads: int = 1  # torch intra-op threads during the run (0 = unchanged)

    def _steps(self):
        t0 = time.perf_counter()
        with torch_threads(int(self.options.threads)):
            state = _run(self.problem, self.options, self.seed, self.workdir, self.progress)
        evaluator, _ = self.evaluator()
        candidates = [state["arch"]]
        gen = torch.Generator().manual_seed(self.seed + 1)
        tries = 0
        while len(candidates) < evaluator.max_evals and tries < 20 * evaluator.max_evals:
            tries += 1
            mask = topk_mask(state["scores"] + float(self.options.noise or 1.0) * gumbel_noise(state["scores"].shape, gen), state["k"])
            arch, _ = _fit_budget(self.problem, state["net"], mask, state["scores"])
            if arch not in candidates:
                candidates.append(arch)
        yield from score_with(evaluator, np.asarray(candidates, dtype=np.int64))
        res = result_from(self.name, evaluator, state["history"], t0, state["extra"])
        res.extra["candidates"] = len(candidates)
        return res


def _fit_budget(problem, net: "RepNASNet", mask: torch.Tensor, scores: torch.Tensor) -> tuple[tuple[int, ...], list[dict[str, Any]]]:
    """Drop the least important kept branches of ``mask`` (in place) until its arch meets the budget."""
    space, table = problem.space, problem.latency_table
    arch = mask_to_arch(space, net, mask)
    fixes: list[dict[str, Any]] = []
    if problem.budget is None:
        return arch, fixes
    predicted = float(table.predict(np.array([arch]))[0])
    order = [int(i) for i in torch.argsort(scores.detach()) if mask[i] > 0.5]
    for i in order:
        if predicted <= problem.budget.value:
            break
        mask[i] = 0.0
        arch = mask_to_arch(space, net, mask)
        predicted = float(table.predict(np.array([arch]))[0])
        fixes.append({"dropped": list(net.branch_index[i]), "latency": predicted})
    return arch, fixes


def _run(problem, opt, seed: int, workdir, progress) -> dict[str, Any]:
    space, table = problem.space, problem.latency_table
    if any(space.choices[c].op != "dbb" for slot in space.layers for c in slot.allowed) or not space.stem:
        raise DataError(f"repnas searches DBB branch masks; space {space.name!r} has no DBB layers (use --space repnas)")
    data = at_resolution(training_data(problem, seed), opt.resolution)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = RepNASNet(space, int(data.x_train.shape[1]), int(data.num_classes), float(opt.width_mult))
    total = net.n_optional
    fraction = float(opt.fraction)
    k = n_keep(total, fraction)
    scores = nn.Parameter(torch.zeros(total))
    epochs, warm = int(opt.epochs), int(opt.warmup_epochs)
    ft_epochs = int(opt.finetune_epochs)
    bs, limit = int(opt.batch_size), (opt.max_batches or None)
    steps = min(math.ceil(len(data.x_train) / bs), limit or 10**9)
    w_opt = torch.optim.SGD(net.parameters(), lr=float(opt.w_lr), momentum=0.9, nesterov=True, weight_decay=4e-5)
    w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=max(1, (epochs + ft_epochs) * steps))
    s_opt = torch.optim.Adam([scores], lr=float(opt.s_lr), betas=(0.5, 0.999))
    tau, noise = float(opt.tau), float(opt.noise)
    history: list[dict[str, Any]] = []
    on_rate: list[float] = []
    for epoch in range(epochs + ft_epochs):
        phase = "warmup" if epoch < warm else ("search" if epoch < epochs else "finetune")
        final = topk_mask(scores, k) if phase == "finetune" else None
        counts: list[int] = []
        loss_sum = correct = seen = 0
        net.train()
        for xb, yb in batches(data.x_train, data.y_train, bs, gen, limit):
            if phase == "warmup":
                mask = warmup_mask(scores, fraction, tau, gen)
                on_rate.append(float(mask.detach().mean()))
            elif phase == "search":
                mask = ste_topk_mask(scores, k, tau, noise, gen)
            else:
                mask = final
            counts.append(int(mask.detach().round().sum()))
            out = net(xb, mask)
            loss = F.cross_entropy(out, yb)
            w_opt.zero_grad(set_to_none=True)
            s_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            w_opt.step()
            w_sched.step()
            if phase != "finetune":
                s_opt.step()
            loss_sum += float(loss.detach()) * len(yb)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(yb)
        note = {
            "epoch": epoch,
            "phase": phase,
            "train_loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "kept_per_step": counts,
            "arch": space.format_arch(mask_to_arch(space, net, topk_mask(scores, k))),
        }
        history.append(note)
        log.info("repnas epoch %d (%s): loss %.3f acc %.3f", epoch, phase, note["train_loss"], note["train_acc"])
        if progress is not None:
            progress(epoch + 1, epochs + ft_epochs, f"{phase} epoch {epoch + 1}/{epochs + ft_epochs} acc={note['train_acc']:.3f}")

    final = topk_mask(scores, k)
    arch = mask_to_arch(space, net, final)
    fixes: list[dict[str, Any]] = []
    if table.space == space.name and table.n_layers == space.n_layers:
        arch, fixes = _fit_budget(problem, net, final, scores)
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
    kept = net.kept_branches(final)
    extra: dict[str, Any] = {
        "k": k,
        "total_optional": total,
        "fraction": fraction,
        "kept_optional": int(final.sum()),
        "kept_branches": ["+".join(b) for b in kept],
        "scores": [round(float(s), 4) for s in scores.detach()],
        "branch_index": [list(b) for b in net.branch_index],
        "warmup_on_rate": float(np.mean(on_rate)) if on_rate else None,
        "masked_val_acc": masked_acc,
        "fused_val_acc": fused_acc,
        "fused_parity_rel": parity,
        "budget_fixes": fixes,
        "options": dataclasses.asdict(opt),
        "data": data.name,
    }
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": pruned.state_dict(), "fused": fused.state_dict(), "scores": scores.detach()},
                   workdir / "repnas_model.pt")
    extra["predicted"] = predicted
    return {"arch": tuple(arch), "net": net, "scores": scores.detach(), "k": k, "history": history, "extra": extra}
