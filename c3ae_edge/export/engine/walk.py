"""Walk the trunk graph from its input to its output and build the engine's layer chain (see ``network``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from c3ae_edge.export.engine import fixedpoint as fx
from c3ae_edge.export.engine.graph import Graph, Op
from c3ae_edge.export.engine.network import (
    SE,
    Layer,
    Network,
    UnsupportedGraph,
    act_range,
    compose,
    conv_layer,
    pool_layer,
    quantize_table,
    requant_params,
)

IDENTITY = (0, 1, 2, 3)


@dataclass(frozen=True)
class Use:
    """A non-TRANSPOSE operator reading tensor ``base`` through a chain of transposes with permutation ``perm``."""

    op: Op
    perm: tuple[int, ...]


def _perm(g: Graph, op: Op) -> tuple[int, ...]:
    p = g.tensors[op.inputs[1]].data
    if p is None:
        raise UnsupportedGraph(f"TRANSPOSE #{op.index}: needs a constant permutation")
    return tuple(int(v) for v in p.reshape(-1))


def uses(g: Graph, t: int, perm: tuple[int, ...] = IDENTITY) -> list[Use]:
    """Every operator reading ``t`` or a transposed view of it; TRANSPOSE chains are followed, not counted."""
    out: list[Use] = []
    for op in g.consumers(t):
        if op.name == "TRANSPOSE" and op.inputs[0] == t:
            p = _perm(g, op)
            out += uses(g, op.outputs[0], tuple(perm[i] for i in p))
        else:
            out.append(Use(op, perm))
    return out


def _single(g: Graph, t: int, name: str) -> Op:
    us = uses(g, t)
    if len(us) != 1 or us[0].op.name != name or us[0].perm != IDENTITY:
        got = ", ".join(u.op.name for u in us) or "nothing"
        raise UnsupportedGraph(f"squeeze-excite: expected {name} after tensor #{t}, found {got}")
    return us[0].op


def _se_mean(g: Graph, mean: Use, x_index: int):
    """MEAN over a view of the map: it must reduce exactly the map's H and W axes; -> (count, mult, shift, zp)."""
    x, out = g.tensors[x_index], g.tensors[mean.op.outputs[0]]
    axes = g.tensors[mean.op.inputs[1]].data
    if axes is None or sorted(mean.perm[int(a)] for a in axes.reshape(-1)) != [1, 2]:
        raise UnsupportedGraph(f"MEAN #{mean.op.index}: only a mean over the map's height and width is supported")
    count = x.shape[1] * x.shape[2]
    mult, shift = fx.mean_multiplier(x.scale, out.scale, count)
    return count, mult, shift, out


def _se(g: Graph, mean: Use, mul: Op, x_index: int) -> tuple[SE, int]:
    """The squeeze-excite branch from MEAN to the MUL that rescales the map; -> (SE, MUL output tensor)."""
    x = g.tensors[x_index]
    count, mean_mult, mean_shift, m = _se_mean(g, mean, x_index)
    fc1 = _single(g, m.index, "FULLY_CONNECTED")
    fc2 = _single(g, fc1.outputs[0], "FULLY_CONNECTED")
    sig = _single(g, fc2.outputs[0], "LOGISTIC")
    pre = g.tensors[sig.inputs[0]]
    table = fx.logistic_table(pre.scale, pre.zp)
    t = sig.outputs[0]
    while (nxt := uses(g, t)) and len(nxt) == 1 and nxt[0].op.name == "QUANTIZE":
        table, t = compose(table, quantize_table(g, nxt[0].op)), nxt[0].op.outputs[0]
    if t not in mul.inputs or g.tensors[t].shape[-1] != x.shape[-1]:
        raise UnsupportedGraph(f"MUL #{mul.index}: its scale input is not the squeeze-excite branch")
    s, out = g.tensors[t], g.tensors[mul.outputs[0]]
    mm, ms = fx.quantize_multiplier(fx.f64(x.scale) * fx.f64(s.scale) / fx.f64(out.scale))
    lo, hi = act_range(mul, out)
    d1 = requant_params(g, fc1, m, g.tensors[fc1.inputs[1]].data)
    d2 = requant_params(g, fc2, g.tensors[fc1.outputs[0]], g.tensors[fc2.inputs[1]].data)
    se = SE(count, x.zp, mean_mult, mean_shift, m.zp, d1, d2, table, s.zp, mm, ms, out.zp, lo, hi)
    return se, mul.outputs[0]


def _step(g: Graph, layers: list[Layer], cur: int) -> int | None:
    """Consume what reads ``cur``: a new layer, a table or an SE block on the last layer; -> the next tensor."""
    us = uses(g, cur)
    if not us:
        return None
    means = [u for u in us if u.op.name == "MEAN"]
    main = [u for u in us if u.op.name != "MEAN"]
    if any(u.perm != IDENTITY for u in main) or len(main) != 1 or len(means) > 1:
        names = ", ".join(sorted(u.op.name for u in us))
        raise UnsupportedGraph(f"tensor #{cur} feeds {names}: the C99 engine runs a single chain with squeeze-excite")
    op, last = main[0].op, layers[-1]
    if means:
        if op.name != "MUL" or last.se is not None:
            raise UnsupportedGraph(f"MEAN #{means[0].op.index}: only the squeeze-excite pattern is supported")
        last.se, nxt = _se(g, means[0], op, cur)
        last.ops += ["MEAN", "FULLY_CONNECTED", "FULLY_CONNECTED", "LOGISTIC", "MUL"]
        return nxt
    if op.name == "CONV_2D":
        layers.append(conv_layer(g, op, g.tensors[cur]))
    elif op.name == "AVERAGE_POOL_2D":
        layers.append(pool_layer(g, op, g.tensors[cur]))
    elif op.name == "QUANTIZE" and last.se is None:
        last.table = compose(last.table, quantize_table(g, op))
        last.ops.append(op.name)
    else:
        raise UnsupportedGraph(f"{op.name} #{op.index}: not supported by the C99 engine (use --engine tflm)")
    return op.outputs[0]


def build(g: Graph) -> Network:
    """The layer chain from the graph's single int8 input (1, H, W, C) to its single int8 output."""
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise UnsupportedGraph("the C99 engine needs a graph with one input and one output")
    x = g.tensors[g.inputs[0]]
    if x.dtype != "INT8" or len(x.shape) != 4 or x.shape[0] != 1:
        raise UnsupportedGraph(f"graph input {x.name}: needs int8 (1, H, W, C), got {x.dtype} {list(x.shape)}")
    layers = [Layer("input", 1, 1, x.shape[1:], x.shape[1:], ops=[])]
    cur, end = x.index, g.outputs[0]
    while (nxt := _step(g, layers, cur)) is not None:
        cur = nxt
    if cur != end:
        raise UnsupportedGraph(f"the chain ends at tensor #{cur}, not at the graph output #{end}")
    out = g.tensors[end]
    if out.dtype != "INT8" or len(out.shape) != 4:
        raise UnsupportedGraph(f"graph output {out.name}: needs int8 (1, H, W, C)")
    counts = Counter(op.name for op in g.ops)
    return Network(layers, x.scale, x.zp, out, dict(counts))
