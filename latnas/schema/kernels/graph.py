"""ONNX graph -> kernel records (static shapes, one input), with a backend's fusion rules."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latnas.schema.errors import DataError, ShapeError, UnknownNameError
from latnas.schema.kernels.records import Kernel
from latnas.schema.kernels.rules import FusionRules, rules_for

ELEMENTWISE = {"Add": "add", "Sub": "add", "Mul": "mul", "Div": "mul"}
STANDALONE_ACTS = {"Relu": "relu", "Clip": "relu6", "HardSwish": "hswish", "HardSigmoid": "hsigmoid",
                   "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyRelu": "leakyrelu", "Gelu": "gelu", "Erf": "erf",
                   "Softmax": "softmax"}
KNOWN = set(ELEMENTWISE) | set(STANDALONE_ACTS) | {
    "Conv", "BatchNormalization", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "ReduceMean", "Concat", "Slice", "Split", "Transpose", "LayerNormalization"}


def load_onnx(source: Any):
    """An ``onnx.ModelProto`` from a path or bytes; one-line error for a file that is not an ONNX model."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray)):
        try:
            model = onnx.load_from_string(bytes(source))
        except Exception as exc:
            raise DataError(f"the bytes are not an ONNX model ({type(exc).__name__})") from None
        if not model.graph.node:
            raise DataError("the bytes are not an ONNX model (no graph nodes)")
        return model
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-derived errors ...
        raise DataError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise DataError(f"{path} is not an ONNX model (no graph nodes)")
    return model


def _dims(vi) -> list:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def model_input_shape(model) -> tuple[int, ...]:
    """The static shape of the model's only input; one-line error for several inputs or dynamic shapes."""
    g = model.graph
    consts = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)[:120]
        raise ShapeError(f"model has {len(inputs)} inputs ({names}); kernel prediction and profiling need exactly one")
    dims = _dims(inputs[0])
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise ShapeError(f"input {inputs[0].name!r} has dynamic or unknown shape {dims}; export with a static shape")
    if inputs[0].type.tensor_type.elem_type != 1:
        raise ShapeError(f"input {inputs[0].name!r} is not float32; kernel profiles are float32")
    return tuple(dims)


class _Graph:
    def __init__(self, model, rules: FusionRules):
        import onnx

        self.rules = rules
        model_input_shape(model)
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception as exc:
            raise DataError(f"ONNX shape inference failed: {type(exc).__name__}: {str(exc)[:120]}") from None
        g = model.graph
        self.shapes = {vi.name: _dims(vi) for vi in [*g.input, *g.value_info, *g.output]}
        self.inits = {i.name: i for i in g.initializer}
        self.shapes.update({i.name: list(i.dims) for i in g.initializer})
        self.const = set(self.inits)
        self.nodes = []
        for n in g.node:  # constant subgraphs (Identity on weights, shape arithmetic) run once at load
            if n.op_type == "Constant" or (n.input and all(i in self.const or not i for i in n.input)):
                self.const.update(n.output)
            else:
                self.nodes.append(n)
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.used: set[int] = set()

    def shape(self, name: str) -> list[int]:
        s = self.shapes.get(name)
        if not s or not all(isinstance(d, int) for d in s):
            raise ShapeError(f"tensor {name!r} has dynamic or unknown shape {s}; export with a static shape")
        return s

    def only_consumer(self, tensor: str, op_types) -> Any:
        users = self.consumers.get(tensor, [])
        if len(users) == 1 and tensor not in self.outputs and users[0].op_type in op_types and id(users[0]) not in self.used:
            return users[0]
        return None

    def attr(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                import onnx

                return onnx.helper.get_attribute_value(a)
        return default


def _chw(shape: list[int]) -> tuple[int, int, int]:
    """(c, h, w) of a tensor: NCHW for 4-D, (C, 1, 1) for 2-D, rows folded into h otherwise."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 2:
        return shape[1], 1, 1
    if len(shape) == 3:
        return shape[2], shape[1], 1
    n = 1
    for d in shape[1:]:
        n *= d
    return n, 1, 1


def _fuse_tail(g: _Graph, k: Kernel, out: str) -> str:
    """Absorb BN, an activation (or swish), a residual add and an activation after it, as the rules allow."""
    bn = g.only_consumer(out, {"BatchNormalization"}) if g.rules.fuse_bn else None
    if bn is not None:
        g.used.add(id(bn)); k.nodes.append(bn.name); out = bn.output[0]
    out = _fuse_act(g, k, out)
    if g.rules.fuse_add:
        add = g.only_consumer(out, {"Add"})
        if add is not None:
            other = [i for i in add.input if i != out]
            if other and other[0] not in g.const and g.shapes.get(other[0]) == g.shapes.get(out):
                g.used.add(id(add)); k.nodes.append(add.name); k.residual = 1; out = add.output[0]
                if g.rules.fuse_act_after_add and k.act == "none":
                    out = _fuse_act(g, k, out)
    return out


def _fuse_act(g: _Graph, k: Kernel, out: str) -> str:
    users = g.consumers.get(out, [])
    if len(users) == 2 and out not in g.outputs:  # swish: x * sigmoid(x)
        sig = next((u for u in users if u.op_type == "Sigmoid"), None)
        mul = next((u for u in users if u.op_type == "Mul"), None)
        if sig is not None and mul is not None and set(mul.input) == {out, sig.output[0]}:
            g.used.update((id(sig), id(mul))); k.nodes += [sig.name, mul.name]; k.act = "swish"
            return mul.output[0]
    act = g.only_consumer(out, set(g.rules.activations))
    if act is not None:
        g.used.add(id(act)); k.nodes.append(act.name); k.act = g.rules.activations[act.op_type]
        return act.output[0]
    return out


def _gelu(g: _Graph, n) -> Kernel | None:
    """timm's erf GELU: Div(x, c) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5) as one act kernel."""
    x = n.input[0]
    erf = g.only_consumer(n.output[0], {"Erf"})
    add = erf is not None and g.only_consumer(erf.output[0], {"Add"})
    mul = add and g.only_consumer(add.output[0], {"Mul"})
    if not mul or x not in mul.input:
        return None
    chain = [n, erf, add, mul]
    half = g.only_consumer(mul.output[0], {"Mul"})
    if half is not None and any(i in g.const for i in half.input):
        chain.append(half)
    g.used.update(id(c) for c in chain)
    c, h, w = _chw(g.shape(x))
    return Kernel("act", cin=c, cout=c, h=h, w=w, ho=h, wo=w, variant="gelu", nodes=[c_.name for c_ in chain])


def _kernel_of(g: _Graph, n) -> Kernel | None:
    op = n.op_type
    if op == "Conv":
        x, wshape = g.shape(n.input[0]), g.shape(n.input[1])
        y = g.shape(n.output[0])
        if len(x) != 4:
            raise ShapeError(f"Conv {n.name!r} is not 2-D (input shape {x}); only Conv2d is covered")
        groups = int(g.attr(n, "group", 1))
        ks = list(g.attr(n, "kernel_shape", wshape[2:]))
        strides = list(g.attr(n, "strides", [1, 1]))
        kind = "dwconv" if groups == x[1] and groups > 1 else "conv"
        k = Kernel(kind, cin=x[1], cout=y[1], kernel=max(ks), stride=max(strides), groups=groups, h=x[2], w=x[3],
                   ho=y[2], wo=y[3], nodes=[n.name])
        _fuse_tail(g, k, n.output[0])
        return k
    if op in ("Gemm", "MatMul"):
        x, y = g.shape(n.input[0]), g.shape(n.output[0])
        if op == "MatMul" and n.input[1] not in g.const:
            raise UnknownNameError(f"op MatMul with two activations (node {n.name!r}) is not covered by the kernel set")
        rows = 1
        for d in x[:-1]:
            rows *= d
        k = Kernel("fc", cin=x[-1], cout=y[-1], h=rows, ho=rows, nodes=[n.name])
        out = n.output[0]
        if op == "MatMul":  # nn.Linear on a 3-D/4-D tensor: MatMul + bias Add
            add = g.only_consumer(out, {"Add"})
            if add is not None and any(i in g.const for i in add.input):
                g.used.add(id(add)); k.nodes.append(add.name); out = add.output[0]
        _fuse_act(g, k, out)
        return k
    if op in ("MaxPool", "AveragePool"):
        x, y = g.shape(n.input[0]), g.shape(n.output[0])
        ks, st = list(g.attr(n, "kernel_shape", [1])), list(g.attr(n, "strides", [1]))
        return Kernel("pool", cin=x[1], cout=y[1], kernel=max(ks), stride=max(st), h=x[2], w=x[3], ho=y[2], wo=y[3],
                      variant=op[:3].lower(), nodes=[n.name])
    if op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean"):
        x = g.shape(n.input[0])
        c, h, w = _chw(x)
        return Kernel("gap", cin=c, cout=c, h=h, w=w, nodes=[n.name])
    if op == "Div" and n.input[1] in g.const:
        k = _gelu(g, n)
        if k is not None:
            return k
    if op in ELEMENTWISE:
        y = g.shape(n.output[0])
        c, h, w = _chw(y)
        shapes = [g.shapes.get(i) or [] for i in n.input if i]
        sizes = [int(np.prod(s)) if all(isinstance(d, int) for d in s) else 1 for s in shapes]
        variant = "same" if all(s == y for s in shapes) else ("scalar" if min(sizes) == 1 else "broadcast")
        return Kernel(ELEMENTWISE[op], cin=c, cout=c, h=h, w=w, ho=h, wo=w, inputs=len(shapes), variant=variant,
                      nodes=[n.name])
    if op in STANDALONE_ACTS:
        c, h, w = _chw(g.shape(n.output[0]))
        k = Kernel("act", cin=c, cout=c, h=h, w=w, ho=h, wo=w, variant=STANDALONE_ACTS[op], nodes=[n.name])
        if op == "Sigmoid":  # standalone swish
            mul = g.only_consumer(n.output[0], {"Mul"})
            if mul is not None and n.input[0] in mul.input:
                g.used.add(id(mul)); k.nodes.append(mul.name); k.variant = "swish"
        return k
    if op == "Concat":
        ins = [i for i in n.input if i]  # a constant operand is copied like any other
        c, h, w = _chw(g.shape(n.output[0]))
        return Kernel("concat", cin=c, cout=c, h=h, w=w, ho=h, wo=w, inputs=len(ins), nodes=[n.name])
    if op in ("Slice", "Split"):
        ci, h, w = _chw(g.shape(n.input[0]))
        co = _chw(g.shape(n.output[0]))[0]
        return Kernel("slice", cin=ci, cout=co, h=h, w=w, ho=h, wo=w, nodes=[n.name])
    if op == "Transpose":
        x = g.shape(n.input[0])
        c, h, w = _chw(x)
        perm = tuple(g.attr(n, "perm", list(reversed(range(len(x))))))
        return Kernel("transpose", cin=c, cout=c, h=h, w=w, ho=h, wo=w, variant="".join(map(str, perm)), nodes=[n.name])
    if op == "LayerNormalization":
        x = g.shape(n.input[0])
        rows = 1
        for d in x[:-1]:
            rows *= d
        return Kernel("layernorm", cin=x[-1], cout=x[-1], h=rows, ho=rows, nodes=[n.name])
    return None


def detect_kernels(source: Any, backend: str = "onnxruntime") -> list[Kernel]:
    """The kernels of an ONNX model (path, bytes or ``ModelProto``) under ``backend``'s fusion rules.

    Ops outside the kernel set raise one :class:`UnknownNameError` naming all
    of them; dynamic shapes and several inputs raise :class:`ShapeError`.
    """
    model = load_onnx(source)
    g = _Graph(model, rules_for(backend))
    unknown = sorted({n.op_type for n in g.nodes if n.op_type not in KNOWN and n.op_type not in g.rules.free})
    if unknown:
        raise UnknownNameError(f"op(s) {', '.join(unknown)} not covered by the kernel set")
    kernels = []
    for n in g.nodes:
        if id(n) in g.used or n.op_type in g.rules.free:
            continue
        g.used.add(id(n))
        k = _kernel_of(g, n)
        if k is not None:
            kernels.append(k)
    return kernels
