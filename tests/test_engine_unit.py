"""The C99 engine's generator without a bundle: TFLite's integer arithmetic, the graph walk's refusals, the planner,
and the target fields (fast tier: no export, no data set)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from c3ae_edge.errors import UsageError
from c3ae_edge.export.engine import fixedpoint as fx
from c3ae_edge.export.engine.graph import Graph, Op, Tensor


def test_rounding_primitives():
    """Rounding doubling high multiply (ties toward +infinity, as gemmlowp's nudge gives) and rounding divide by a
    power of two (ties away from zero), both signs."""
    assert fx.srdhm(1 << 30, 1 << 30) == 1 << 29
    assert fx.srdhm(fx.INT32_MIN, fx.INT32_MIN) == fx.INT32_MAX  # the one saturating case
    assert fx.srdhm(-3, 1 << 30) == -1 and fx.srdhm(3, 1 << 30) == 2  # -1.5 -> -1, 1.5 -> 2
    assert [fx.rdbpot(v, 1) for v in (3, -3, 5, -5, 2, -2)] == [2, -2, 3, -3, 1, -1]
    assert fx.rdbpot(-1, 4) == 0 and fx.rdbpot(-8, 4) == -1 and fx.rdbpot(8, 4) == 1
    for x, d in ((1000, 0.3), (-1000, 0.3), (123456, 0.0071), (-7, 3.5)):
        m, s = fx.quantize_multiplier(d)
        assert 1 << 30 <= m < 1 << 31 and abs(fx.mbqm(x, m, s) - x * d) <= 0.5 + 1e-9


def test_quantize_multiplier_edges():
    assert fx.quantize_multiplier(0.0) == (0, 0)
    assert fx.quantize_multiplier(0.5) == (1 << 30, 0)
    assert fx.quantize_multiplier(1.0) == (1 << 30, 1)
    assert fx.quantize_multiplier(2.0**-40) == (0, 0)  # below 2^-31: flushed, as TFLite does
    m, s = fx.quantize_multiplier(1.0 - 2.0**-40)  # rounds up to 2^31: halved, exponent + 1
    assert (m, s) == (1 << 30, 1)


def test_mean_multiplier_folds_the_count():
    m0, s0 = fx.quantize_multiplier(fx.f64(0.028) / fx.f64(0.009))
    m, s = fx.mean_multiplier(0.028, 0.009, 961)
    assert s == s0 - 9 and m == (m0 << 9) // 961  # 2^9 <= 961 < 2^10


@pytest.mark.parametrize("scale,zp", [(0.0486517, 38), (0.0181628, -9), (0.00878782, 3), (0.2, 0)])
def test_logistic_table_follows_the_sigmoid(scale, zp):
    """gemmlowp's fixed-point logistic lands within one output step of the real sigmoid, monotone, in range."""
    t = fx.logistic_table(scale, zp)
    real = [1 / (1 + math.exp(-(v - zp) * scale)) for v in range(-128, 128)]
    assert len(t) == 256 and all(a <= b for a, b in zip(t, t[1:]))
    assert max(abs((q + 128) / 256 - r) for q, r in zip(t, real)) <= 1 / 256 + 1e-9


def test_requant_table_is_the_scaled_identity():
    t = fx.requant_table(0.0318035, -128, 0.0281648, -128)
    want = np.clip(np.round((np.arange(-128, 128) + 128) * 0.0318035 / 0.0281648) - 128, -128, 127)
    assert np.abs(np.array(t) - want).max() <= 1 and t[0] == -128


def _graph(ops: list[tuple[str, tuple, tuple, dict]], tensors: list[Tensor]) -> Graph:
    return Graph(tuple(tensors), tuple(Op(i, *o) for i, o in enumerate(ops)), (0,), (tensors[-1].index,))


def _t(i: int, shape, data=None, scales=(0.1,), zps=(0,), dtype="INT8") -> Tensor:
    return Tensor(i, f"t{i}", dtype, tuple(shape), scales, zps, data)


def test_unsupported_graph_is_one_line():
    """An operator the engine does not implement is refused naming it, never turned into wrong C."""
    from c3ae_edge.export.engine.network import UnsupportedGraph
    from c3ae_edge.export.engine.walk import build

    t = [_t(0, (1, 8, 8, 3)), _t(1, (1, 8, 8, 3)), _t(2, (1, 8, 8, 3))]
    g = _graph([("ADD", (0, 1), (2,), {})], t)
    with pytest.raises(UnsupportedGraph, match=r"^ADD #0: not supported by the C99 engine \(use --engine tflm\)$"):
        build(g)
    w = _t(1, (4, 3, 3, 3), np.ones((4, 3, 3, 3), np.int8), (0.01,) * 4, (0,) * 4)
    same = {"padding": 0, "strideH": 1, "strideW": 1, "fusedActivationFunction": 0}
    g = _graph([("CONV_2D", (0, 1, -1), (2,), same)], [t[0], w, _t(2, (1, 8, 8, 4))])
    with pytest.raises(UnsupportedGraph, match="only VALID padding"):
        build(g)
    f = _t(0, (1, 8, 8, 3), dtype="FLOAT32")
    with pytest.raises(UnsupportedGraph, match="needs int8"):
        build(_graph([], [f]))


def test_conv_chain_plan_and_tables():
    """A two-conv chain: zero point folded into the bias, rings of the consumer's kernel height, the last layer kept."""
    from c3ae_edge.export.engine.plan import choose
    from c3ae_edge.export.engine.walk import build

    rng = np.random.default_rng(0)
    w1 = rng.integers(-127, 128, (8, 3, 3, 3), dtype=np.int8)
    w2 = rng.integers(-127, 128, (4, 3, 3, 8), dtype=np.int8)
    relu = {"padding": 1, "strideH": 1, "strideW": 1, "fusedActivationFunction": 1}
    tensors = [
        _t(0, (1, 16, 16, 3), zps=(5,)),
        _t(1, w1.shape, w1, (0.01,) * 8, (0,) * 8),
        _t(2, (8,), np.arange(8, dtype=np.int32), dtype="INT32"),
        _t(3, (1, 14, 14, 8), scales=(0.2,), zps=(-128,)),
        _t(4, w2.shape, w2, (0.02,) * 4, (0,) * 4),
        _t(5, (1, 12, 12, 4), scales=(0.3,), zps=(3,)),
    ]
    g = _graph([("CONV_2D", (0, 1, 2), (3,), relu), ("CONV_2D", (3, 4, -1), (5,), relu)], tensors)
    net = build(g)
    c1 = net.layers[1].rq
    assert list(c1.bias) == [int(b) - 5 * int(w1[i].astype(int).sum()) for i, b in enumerate(range(8))]
    assert (c1.act_min, c1.act_max) == (-128, 127) and net.layers[2].rq.act_min == 3
    plan = choose(net, crops=1)
    assert plan.kept == (2,) and plan.rings[:2] == [3, 3] and plan.macs == plan.base_macs
    assert plan.work_bytes % 4 == 0 and plan.work_bytes >= 3 * 16 * 3 + 3 * 14 * 8 + 12 * 12 * 4


def test_target_engine_fields():
    from c3ae_edge.export.targets import load_target, parse, with_engine

    base = 'name = "b"\ndescription = "d"\narch = "a"\nbackend = "tflm"\nprecisions = ["int8"]\n'
    assert parse(base + 'engine = "c99"\ncpu_hz = 1000\n', "b.toml").engine == "c99"
    with pytest.raises(UsageError, match="engine 'cmsis' must be one of c99, tflm"):
        parse(base + 'engine = "cmsis"\n', "b.toml")
    with pytest.raises(UsageError, match="engine_plan 'tiny' must be one of smallest, fastest"):
        parse(base + 'engine_plan = "tiny"\n', "b.toml")
    onnx = base.replace('"tflm"', '"onnx"')
    with pytest.raises(UsageError, match="engine applies to microcontroller targets"):
        parse(onnx + 'engine = "c99"\n', "b.toml")
    c3 = load_target("esp32c3")
    assert c3.engine == "c99" and c3.cpu_hz == 160_000_000 and c3.budget["work_bytes"] == 49152
    assert with_engine(load_target("cortex-m"), "tflm").engine == "tflm"
    with pytest.raises(UsageError, match="--engine applies to microcontroller targets"):
        with_engine(load_target("rpi4"), "c99")
    assert "engine" not in load_target("rpi4").to_dict()  # other targets' manifests keep their bytes
