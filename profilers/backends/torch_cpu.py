"""``torch-cpu``: eager PyTorch on the CPU (eval mode, ``torch.inference_mode``)."""
from __future__ import annotations

from typing import Any, Callable

from profilers.base import Backend, ProtocolConfig, register_backend


@register_backend("torch-cpu")
class TorchCPUBackend(Backend):
    description = "eager PyTorch on the CPU"
    requires = "torch"
    agent_options = frozenset()  # takes no options

    def __init__(self, **opts: Any):
        if opts:
            raise TypeError(f"torch-cpu takes no options, got {', '.join(opts)}")

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__}

    def prepare(self, module, example, config: ProtocolConfig) -> Callable[[], Any]:
        import torch

        module = module.eval().cpu()
        example = example.cpu()

        def run():
            with torch.inference_mode():
                return module(example)

        return run
