"""A kernel record -> a one-kernel ONNX model (random weights), for timing it on a runtime.

The graph repeats the op pattern kernel detection fused (conv + activation +
residual add, GELU's erf chain, swish's sigmoid * x), so whatever the runtime
fuses in a whole model it fuses here too. Pure ``onnx.helper``: no export.
"""
from __future__ import annotations

import numpy as np

from latnas.schema.errors import UnknownNameError
from latnas.schema.kernels.records import Kernel

OPSET = 17


def _init(name: str, shape, rng, scale: float = 0.1):
    from onnx import numpy_helper

    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _const(name: str, value) -> object:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


class _B:
    """A tiny graph builder: nodes, initializers, fresh tensor names."""

    def __init__(self, rng):
        self.nodes, self.inits, self.rng, self.n = [], [], rng, 0

    def t(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def op(self, op_type: str, inputs, **attrs) -> str:
        from onnx import helper

        out = self.t()
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def weight(self, shape, scale: float = 0.1) -> str:
        name = f"w{len(self.inits)}"
        self.inits.append(_init(name, shape, self.rng, scale))
        return name

    def const(self, value) -> str:
        name = f"c{len(self.inits)}"
        self.inits.append(_const(name, value))
        return name


def _act(b: _B, x: str, act: str) -> str:
    if act == "none":
        return x
    if act == "relu6":
        return b.op("Clip", [x, b.const(0.0), b.const(6.0)])
    if act == "swish":
        return b.op("Mul", [x, b.op("Sigmoid", [x])])
    if act == "gelu":
        e = b.op("Erf", [b.op("Div", [x, b.const(1.4142135)])])
        return b.op("Mul", [b.op("Mul", [x, b.op("Add", [e, b.const(1.0)])]), b.const(0.5)])
    if act == "softmax":
        return b.op("Softmax", [x], axis=1)
    ops = {"relu": "Relu", "hswish": "HardSwish", "hsigmoid": "HardSigmoid", "sigmoid": "Sigmoid", "tanh": "Tanh",
           "leakyrelu": "LeakyRelu", "erf": "Erf"}
    if act not in ops:
        raise UnknownNameError(f"no ONNX pattern for activation {act!r}")
    return b.op(ops[act], [x])


def _conv_out(n: int, k: int, s: int) -> int:
    return (n + 2 * (k // 2) - k) // s + 1


def kernel_onnx(k: Kernel, seed: int = 0) -> tuple[bytes, tuple[int, ...]]:
    """``(serialized ONNX model, input shape)`` of one kernel."""
    from onnx import TensorProto, helper

    b = _B(np.random.default_rng(seed))
    x = "x"
    op = k.op
    if op in ("conv", "dwconv"):
        shape = (1, k.cin, k.h, k.w)
        pad = k.kernel // 2
        y = b.op("Conv", [x, b.weight((k.cout, k.cin // k.groups, k.kernel, k.kernel)), b.weight((k.cout,))],
                 kernel_shape=[k.kernel] * 2, strides=[k.stride] * 2, pads=[pad] * 4, group=k.groups)
        y = _act(b, y, k.act)
        if k.residual:
            ho, wo = _conv_out(k.h, k.kernel, k.stride), _conv_out(k.w, k.kernel, k.stride)
            y = b.op("Add", [y, b.weight((1, k.cout, ho, wo))])
    elif op == "fc":
        shape = (1, k.h, k.cin) if k.h > 1 else (1, k.cin)
        if k.h > 1:
            y = b.op("Add", [b.op("MatMul", [x, b.weight((k.cin, k.cout))]), b.weight((k.cout,))])
        else:
            y = b.op("Gemm", [x, b.weight((k.cout, k.cin)), b.weight((k.cout,))], transB=1)
        y = _act(b, y, k.act)
    elif op == "pool":
        shape = (1, k.cin, k.h, k.w)
        kind = "MaxPool" if k.variant == "max" else "AveragePool"
        y = b.op(kind, [x], kernel_shape=[k.kernel] * 2, strides=[k.stride] * 2, pads=[(k.kernel - 1) // 2] * 4)
    elif op == "gap":
        shape = (1, k.cin, k.h, k.w)
        y = b.op("GlobalAveragePool", [x])
    elif op in ("add", "mul"):
        shape = (1, k.cin, k.h, k.w)
        other = {"broadcast": (1, k.cin, 1, 1), "scalar": (1,)}.get(k.variant, shape)  # a weight: timed as a 2nd input
        y = b.op("Add" if op == "add" else "Mul", [x, b.weight(other)])
    elif op == "act":
        shape = (1, k.cin, k.h, k.w)
        y = _act(b, x, k.variant)
    elif op == "concat":
        n = max(k.inputs, 2)
        shape = (1, max(k.cin // n, 1), k.h, k.w)
        y = b.op("Concat", [x] + [b.weight(shape) for _ in range(n - 1)], axis=1)
    elif op == "slice":
        shape = (1, k.cin, k.h, k.w)
        y = b.op("Slice", [x, _i64(b, [0]), _i64(b, [k.cout]), _i64(b, [1])])
    elif op == "transpose":
        shape = (1, k.cin, k.h, k.w)
        y = b.op("Transpose", [x], perm=[int(c) for c in (k.variant or "0231")])
    elif op == "layernorm":
        shape = (1, k.h, k.cin)
        y = b.op("LayerNormalization", [x, b.weight((k.cin,)), b.weight((k.cin,))], axis=-1, epsilon=1e-6)
    else:
        raise UnknownNameError(f"no ONNX pattern for kernel op {op!r}")
    graph = helper.make_graph(b.nodes, f"kernel_{op}", [helper.make_tensor_value_info(x, TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="latnas-kernels")
    model.ir_version = 8
    return model.SerializeToString(), shape


def _i64(b: _B, values) -> str:
    from onnx import numpy_helper

    name = f"i{len(b.inits)}"
    b.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
    return name
