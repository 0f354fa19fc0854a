"""The int8 trunk graph as a chain of layers the engine runs, every integer constant derived as TFLM derives it.

A layer is the input, a convolution or an average pool; after it may come a requantisation (QUANTIZE, as a 256-entry
table) and a squeeze-excite block (MEAN over the map -> FULLY_CONNECTED -> FULLY_CONNECTED -> LOGISTIC -> QUANTIZE ->
MUL back onto the map). TRANSPOSE pairs (the converter wraps the SE's MEAN in them) are layout views, not work: a
MEAN over a transposed view is checked to reduce exactly the map's height and width. Anything else in the graph is
refused with one line naming the operator, so an unsupported graph never yields wrong C.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from c3ae_edge.errors import UsageError
from c3ae_edge.export.engine import fixedpoint as fx
from c3ae_edge.export.engine.graph import Graph, Op, Tensor

VALID, NONE, RELU = 1, 0, 1  # TFLite Padding.VALID, ActivationFunctionType.NONE / RELU


class UnsupportedGraph(UsageError):
    """The graph holds an operator or pattern the C99 engine does not implement."""


@dataclass
class Requant:
    """Per-output-channel integer requantisation of an int32 accumulator (conv / fully connected)."""

    weights: np.ndarray  # int8 (cout, kh, kw, cin) or (cout, cin)
    bias: np.ndarray  # int32, with the input zero point folded in: bias - in_zp * sum(weights)
    mult: list[int]
    shift: list[int]
    out_zp: int
    act_min: int
    act_max: int


@dataclass
class SE:
    """Squeeze-excite: channel means of the map, two small layers, sigmoid table, per-channel rescale of the map."""

    count: int  # H * W values per channel mean
    in_zp: int
    mean_mult: int
    mean_shift: int
    mean_zp: int
    fc1: Requant
    fc2: Requant
    table: list[int]  # fc2 output + 128 -> scale value (LOGISTIC then QUANTIZE, composed)
    scale_zp: int
    mul_mult: int
    mul_shift: int
    out_zp: int
    act_min: int
    act_max: int


@dataclass
class Layer:
    kind: str  # "input", "conv", "pool"
    k: int
    stride: int
    in_shape: tuple[int, int, int]  # H, W, C
    out_shape: tuple[int, int, int]
    rq: Requant | None = None
    act: tuple[int, int] = (-128, 127)  # pool clamp
    table: list[int] | None = None  # QUANTIZE after the layer
    se: SE | None = None
    ops: list[str] = field(default_factory=list)  # graph operators this layer stands for, for the manifest

    @property
    def macs(self) -> int:
        h, w, c = self.out_shape
        if self.kind == "conv":
            return h * w * c * self.k * self.k * self.in_shape[2]
        return 0


@dataclass
class Network:
    layers: list[Layer]
    input_scale: float
    input_zp: int
    output: Tensor
    ops: dict[str, int]  # graph operator counts, for the manifest


def act_range(op: Op, out: Tensor) -> tuple[int, int]:
    f = op.options.get("fusedActivationFunction", NONE)
    if f == NONE:
        return -128, 127
    if f == RELU:
        return max(-128, out.zp), 127
    raise UnsupportedGraph(f"{op.name} #{op.index}: fused activation {f} is not supported by the C99 engine")


def requant_params(g: Graph, op: Op, x: Tensor, w: np.ndarray) -> Requant:
    """Weights (cout first), bias with the input zero point folded in, per-channel multipliers, activation range."""
    wt, out = g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
    if any(z != 0 for z in wt.zero_points):
        raise UnsupportedGraph(f"{op.name} #{op.index}: weights with a nonzero zero point are not supported")
    cout = w.shape[0]
    bias = g.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(cout, np.int32)
    sums = w.reshape(cout, -1).astype(np.int64).sum(1)
    folded = bias.astype(np.int64) - x.zp * sums
    if np.abs(folded).max() >= 1 << 31:
        raise UnsupportedGraph(f"{op.name} #{op.index}: bias out of int32 range after folding the zero point")
    scales = wt.scales if len(wt.scales) == cout else wt.scales[:1] * cout
    ms = [fx.conv_multiplier(x.scale, s, out.scale) for s in scales]
    lo, hi = act_range(op, out)
    return Requant(w, folded.astype(np.int32), [m for m, _ in ms], [s for _, s in ms], out.zp, lo, hi)


def conv_layer(g: Graph, op: Op, x: Tensor) -> Layer:
    o = op.options
    if o.get("padding") != VALID or o.get("dilationHFactor", 1) != 1 or o.get("dilationWFactor", 1) != 1:
        raise UnsupportedGraph(f"CONV_2D #{op.index}: only VALID padding without dilation is supported")
    if o.get("strideH") != o.get("strideW"):
        raise UnsupportedGraph(f"CONV_2D #{op.index}: unequal strides are not supported")
    w = g.tensors[op.inputs[1]].data
    if w is None or w.shape[1] != w.shape[2]:
        raise UnsupportedGraph(f"CONV_2D #{op.index}: needs constant square kernels")
    out = g.tensors[op.outputs[0]]
    return Layer(
        "conv", w.shape[1], o["strideH"], x.shape[1:], out.shape[1:], rq=requant_params(g, op, x, w), ops=[op.name]
    )


def pool_layer(g: Graph, op: Op, x: Tensor) -> Layer:
    o, out = op.options, g.tensors[op.outputs[0]]
    same = (o.get("filterHeight"), o.get("strideH")) == (o.get("filterWidth"), o.get("strideW"))
    if o.get("padding") != VALID or not same:
        raise UnsupportedGraph(f"AVERAGE_POOL_2D #{op.index}: only VALID, square pools are supported")
    if (x.scale, x.zp) != (out.scale, out.zp):
        raise UnsupportedGraph(f"AVERAGE_POOL_2D #{op.index}: input and output quantisation differ")
    return Layer(
        "pool", o["filterHeight"], o["strideH"], x.shape[1:], out.shape[1:], act=act_range(op, out), ops=[op.name]
    )


def quantize_table(g: Graph, op: Op) -> list[int]:
    x, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if (x.dtype, out.dtype) != ("INT8", "INT8"):
        raise UnsupportedGraph(f"QUANTIZE #{op.index}: only int8 -> int8 is supported")
    return fx.requant_table(x.scale, x.zp, out.scale, out.zp)


def compose(first: list[int] | None, then: list[int]) -> list[int]:
    return then if first is None else [then[v + 128] for v in first]
