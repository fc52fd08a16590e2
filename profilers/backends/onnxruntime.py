"""``onnxruntime`` (CPU EP) and ``onnxruntime-cuda`` (CUDA EP) backends.

The module is exported to ONNX once per item into a private temporary folder
(:meth:`OnnxRuntimeBackend.build`, see :mod:`profilers.onnx_export`); every
session of the item is a new ``InferenceSession`` on that file, with all
graph optimisations, sequential execution, ``intra_op_num_threads =
config.threads`` and one inter-op thread; the folder is removed when the item is done.
The timed call is ``session.run`` on a fixed NumPy input (CPU); with the CUDA
EP, input and outputs are bound on the GPU (I/O binding) so copies are not timed;
option ``cuda_graph=True`` turns on the CUDA EP's ``enable_cuda_graph`` (ORT
captures the session's kernels once and replays them; outputs are then
pre-allocated at fixed device addresses, as ORT requires).

Clock (CPU EP): option ``clock`` is ``auto`` (default: the calling thread's
CPU time with one intra-op thread, else wall time), ``cpu`` or ``wall``. With
one thread ORT runs the graph on the calling thread, so its CPU time is the
run's latency without the time slices other tenants of a shared host took
(:class:`profilers.protocol.ThreadCpuCall`); the clock used is stored in
each measurement's ``meta``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from profilers.base import Backend, ProtocolConfig, register_backend

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass
class OnnxArtifact:
    """An item exported once: its ONNX file (in a private temporary folder) and the input."""

    path: Path
    x: Any


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    description = "ONNX Runtime, CPU execution provider (option provider='cuda' for the CUDA EP)"
    requires = "onnxruntime, onnx"
    agent_options = frozenset({"provider", "exporter", "opset", "clock"})  # what an agent client may set

    def __init__(self, provider: str = "cpu", exporter: str = "auto", opset: int | None = None, cuda_graph: bool = False,
                 clock: str = "auto"):
        if provider not in PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime provider {provider!r} (known: {', '.join(PROVIDERS)})")
        if isinstance(cuda_graph, str):  # from the CLI: "true"/"false"
            cuda_graph = cuda_graph.lower() in ("1", "true", "yes", "on")
        if cuda_graph and provider != "cuda":
            raise ValueError("cuda_graph needs provider='cuda'")
        self.provider = provider
        self.exporter = exporter
        self.opset = opset
        self.cuda_graph = bool(cuda_graph)
        from profilers.protocol import resolve_clock

        resolve_clock(clock, 1)  # a bad name is refused here
        self.clock = clock
        self._last_meta: dict[str, Any] = {}

    def availability(self) -> tuple[bool, str]:
        for lib in ("onnxruntime", "onnx"):
            if importlib.util.find_spec(lib) is None:
                return False, f"python package {lib!r} is not installed"
        import onnxruntime as ort

        ep = PROVIDERS[self.provider]
        if ep not in ort.get_available_providers():
            return False, f"ONNX Runtime {ort.__version__} has no {ep} here (available: {', '.join(ort.get_available_providers())})"
        return True, ""

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime as ort

        out = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "provider": PROVIDERS[self.provider]}
        if self.cuda_graph:
            out["cuda_graph"] = "1"
        if self.provider == "cuda":
            try:
                import torch

                out["cuda"] = str(torch.version.cuda)
            except ImportError:
                pass
        return out

    def session_options(self, config: ProtocolConfig):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(config.threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return so

    def providers(self) -> list:
        provider = PROVIDERS[self.provider]
        return [(provider, {"enable_cuda_graph": "1"})] if self.cuda_graph else [provider]

    def session(self, module, example, config: ProtocolConfig):
        """Export ``module`` and load it into an ONNX Runtime session (temp files removed)."""
        import onnxruntime as ort

        from profilers.onnx_export import DEFAULT_OPSET, onnx_file

        with onnx_file(module, example, opset=self.opset or DEFAULT_OPSET, exporter=self.exporter) as path:
            return ort.InferenceSession(str(path), self.session_options(config), providers=self.providers())

    def build(self, module, example, config: ProtocolConfig) -> OnnxArtifact:
        """Export once per item to a private temporary file; every session loads that file."""
        import tempfile

        from profilers.onnx_export import DEFAULT_OPSET, export_onnx

        folder = tempfile.mkdtemp(prefix="latnas-onnx-item-")
        artifact = OnnxArtifact(Path(folder) / "model.onnx", example.detach().cpu().numpy())
        try:
            export_onnx(module, example, artifact.path, opset=self.opset or DEFAULT_OPSET, exporter=self.exporter)
        except BaseException:
            self.release(artifact)
            raise
        return artifact

    def open_session(self, artifact: OnnxArtifact, config: ProtocolConfig) -> Callable[[], Any]:
        """A new ``InferenceSession`` on the item's exported file."""
        import onnxruntime as ort

        sess = ort.InferenceSession(str(artifact.path), self.session_options(config), providers=self.providers())
        return self._call(sess, artifact.x)

    def release(self, artifact: OnnxArtifact) -> None:
        import shutil

        shutil.rmtree(artifact.path.parent, ignore_errors=True)

    def measure(self, fn: Callable[[], Any], config: ProtocolConfig):
        """CPU EP: CPU-time samples with one thread (option ``clock``); the clock used goes in :meth:`measurement_meta`."""
        from profilers.protocol import ThreadCpuCall, measure, measure_cpu, resolve_clock

        if self.provider != "cpu":
            return measure(fn, config)
        if resolve_clock(self.clock, config.threads) == "wall":
            self._last_meta = {"clock": "wall"}
            return measure(fn, config)
        stats, used = measure_cpu(ThreadCpuCall(fn), config)
        self._last_meta = {"clock": used}
        return stats

    def measurement_meta(self) -> dict[str, Any]:
        return dict(self._last_meta)

    def prepare(self, module, example, config: ProtocolConfig) -> Callable[[], Any]:
        return self._call(self.session(module, example, config), example.detach().cpu().numpy())

    def _call(self, sess, x) -> Callable[[], Any]:
        if self.provider == "cuda":
            return bound_call(sess, x, "cuda", fixed_outputs=self.cuda_graph)
        feed = {sess.get_inputs()[0].name: x}
        run = sess.run

        def call():
            return run(None, feed)

        return call


def bound_call(sess, x, device: str, fixed_outputs: bool = False) -> Callable[[], Any]:
    """A call that keeps input and output on ``device`` (I/O binding), so GPU timings
    exclude host<->device copies; ``run_with_iobinding`` returns after the device
    stream is synchronised (ORT's default run option). ``fixed_outputs``
    pre-allocates the outputs once (CUDA graphs replay into fixed addresses)."""
    import numpy as np
    import onnxruntime as ort

    binding = sess.io_binding()
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(x, device, 0))
    outputs = []
    for out in sess.get_outputs():
        if fixed_outputs:
            if not all(isinstance(d, int) for d in out.shape):
                raise ValueError(f"cuda_graph needs static output shapes, got {out.shape} for {out.name}")
            dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}.get(out.type, np.float32)
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(out.shape), dtype, device, 0)
            outputs.append(value)
            binding.bind_ortvalue_output(out.name, value)
        else:
            binding.bind_output(out.name, device)
    run = sess.run_with_iobinding

    def call():
        run(binding)
        return binding

    call.binding = binding
    call.outputs = outputs  # keep pre-allocated outputs alive
    return call


@register_backend("onnxruntime-cuda")
class OnnxRuntimeCUDABackend(OnnxRuntimeBackend):
    description = "ONNX Runtime, CUDA execution provider"
    requires = "onnxruntime-gpu and an NVIDIA GPU"
    agent_options = frozenset({"exporter", "opset"})

    def __init__(self, exporter: str = "auto", opset: int | None = None, cuda_graph: bool = False):
        super().__init__(provider="cuda", exporter=exporter, opset=opset, cuda_graph=cuda_graph)
