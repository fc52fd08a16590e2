"""Analytic block features: FLOPs, MACs, params, memory traffic.

FLOPs come from ``torch.utils.flop_counter`` (it counts convolutions and matrix
products, 2 FLOPs per multiply-accumulate) on one forward pass on the meta
device; results are cached per spec. torch is imported on the first count, so
importing this module (e.g. for :class:`BlockCost`) stays light.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from latnas.schema.spec import BlockSpec

BYTES_PER_ELEMENT = 4  # fp32


@dataclass(frozen=True)
class BlockCost:
    flops: int  # 2 * MACs of convs and linears
    macs: int
    params: int
    weight_bytes: int
    activation_bytes: int  # input + output tensors, plus intermediate activations
    arithmetic_intensity: float  # flops per byte moved (weights + activations)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _count(spec: BlockSpec, device: str) -> tuple[int, int, int, int]:
    """(flops, params, input elements, output elements of every leaf module)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device(device):
        module = spec.build().eval()
        x = torch.zeros(spec.input_shape)
    params = sum(p.numel() for p in module.parameters())
    act_elems = 0

    def hook(_m, _inp, out):
        nonlocal act_elems
        if isinstance(out, torch.Tensor):
            act_elems += out.numel()

    leaves = [m for m in module.modules() if len(list(m.children())) == 0]
    handles = [m.register_forward_hook(hook) for m in leaves]
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            module(x)
    finally:
        for h in handles:
            h.remove()
    return int(counter.get_total_flops()), params, x.numel(), act_elems


@lru_cache(maxsize=65536)
def block_cost(spec: BlockSpec) -> BlockCost:
    """Analytic cost of one block at its input shape.

    Counted on the meta device (no memory, no arithmetic); a block whose
    build cannot run on meta tensors is counted on the CPU instead.
    """
    spec.validate()
    try:
        flops, params, in_elems, act_elems = _count(spec, "meta")
    except (NotImplementedError, RuntimeError):
        flops, params, in_elems, act_elems = _count(spec, "cpu")
    act_bytes = (in_elems + act_elems) * BYTES_PER_ELEMENT
    weight_bytes = params * BYTES_PER_ELEMENT
    moved = weight_bytes + act_bytes
    return BlockCost(
        flops=flops,
        macs=flops // 2,
        params=params,
        weight_bytes=weight_bytes,
        activation_bytes=act_bytes,
        arithmetic_intensity=flops / moved if moved else 0.0,
    )
