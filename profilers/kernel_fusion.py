"""Detect a backend's fusion rules by timing a pair of ops against its parts (as nn-Meter's builder does).

For a mid-sized conv, each candidate follower (an activation, a residual add,
an activation after the add) is timed three ways: the conv alone, the
follower alone, and the pair in one graph. The follower is *fused* when the
pair costs less than the conv plus ``FUSED_SHARE`` of the follower alone:
a runtime that fuses it pays (next to) nothing for it. The result is a
:class:`~latnas.schema.kernels.rules.FusionRules` (plus the timings), to review and
write into ``latnas/schema/kernels/rules.py`` for a new backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from latnas.schema.kernels.records import Kernel
from latnas.schema.kernels.rules import FusionRules, rules_for
from profilers.base import Backend, ProtocolConfig
from profilers.kernels import KERNEL_CONFIG, OnnxItem, _session_item, require_onnx_backend
from profilers.kernel_graphs import kernel_onnx
from profilers.sessions import SessionHooks, run_sessions

FUSED_SHARE = 0.5  # a follower is fused when the pair costs less than conv + this share of the follower alone
#: ONNX activation op -> the activation name kernels carry
CANDIDATE_ACTS = {"Relu": "relu", "Clip": "relu6", "HardSwish": "hswish", "HardSigmoid": "hsigmoid",
                  "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyRelu": "leakyrelu"}


@dataclass
class FusionReport:
    """Detected rules and the medians (ms) they were read from."""

    rules: FusionRules
    medians: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, bool] = field(default_factory=dict)


def _time(backend: Backend, kernels: dict[str, Kernel], config: ProtocolConfig) -> dict[str, float]:
    items = []
    for name, k in kernels.items():
        data, shape = kernel_onnx(k)
        items.append(_session_item(backend, OnnxItem(name, {}, data, shape), config))
    out: dict[str, float] = {}

    def done(item) -> None:
        out[item.key] = min(s.median_ms for s in item.sessions)

    run_sessions(items, config, SessionHooks(on_done=done))
    return out


def detect_fusions(backend: Backend, config: ProtocolConfig = KERNEL_CONFIG, channels: int = 64, size: int = 56,
                   say: Callable[[str], None] = lambda s: None) -> FusionReport:
    """Time conv / follower / pair graphs on ``backend`` and read off which followers it fuses.

    The conv is a cheap 1x1 expansion (16 -> ``channels``) over a large map, so
    a follower's own cost is a sizeable share of the pair's and stands out of
    the timing noise.
    """
    require_onnx_backend(backend)
    conv = Kernel("conv", cin=16, cout=channels, kernel=1, h=size, w=size, ho=size, wo=size)
    elem = dict(cin=channels, cout=channels, h=size, w=size, ho=size, wo=size)
    elem["cin"] = channels
    graphs = {"conv": conv, "add": Kernel("add", inputs=2, variant="same", **elem),
              "conv+add": replace(conv, residual=1)}
    for op, act in CANDIDATE_ACTS.items():
        graphs[act] = Kernel("act", variant=act, **elem)
        graphs[f"conv+{act}"] = replace(conv, act=act)
    ms = _time(backend, graphs, config)
    verdicts = {name: ms[name] < ms["conv"] + FUSED_SHARE * ms[name.split("+", 1)[1]]
                for name in graphs if name.startswith("conv+")}
    for name, fused in verdicts.items():
        say(f"  {name}: pair {ms[name]:.4f} ms vs conv {ms['conv']:.4f} + part {ms[name.split('+', 1)[1]]:.4f}"
            f" -> {'fused' if fused else 'separate'}")
    try:
        free = rules_for(backend.name).free
    except Exception:  # a backend without rules yet: the usual free ops
        free = rules_for("onnxruntime").free
    acts = {op: act for op, act in CANDIDATE_ACTS.items() if verdicts[f"conv+{act}"]}
    rules = FusionRules(activations=acts, fuse_bn=True, fuse_add=verdicts["conv+add"],
                        fuse_act_after_add=verdicts["conv+add"] and bool(acts), free=free)
    return FusionReport(rules, ms, verdicts)
