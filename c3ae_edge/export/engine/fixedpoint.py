"""TFLite's integer arithmetic for int8 kernels, in Python integers, as TFLite Micro's reference kernels compute it.

The engine's C code does the per-element work; this module derives every constant it needs exactly as TFLM's
``Prepare`` steps do (multipliers and shifts from the graph's float32 scales, in double) and tabulates the ops whose
input is one int8 value (LOGISTIC, QUANTIZE) as 256-entry tables, using the same fixed-point steps (gemmlowp's
``logistic`` on a Q4.27 input, rounding-doubling high multiplies, rounding divides by powers of two).
"""

from __future__ import annotations

import math

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def i32(x: int) -> int:
    """Wrap to a signed 32-bit value (C's int32_t arithmetic on two's complement machines)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _tdiv(a: int, b: int) -> int:
    """C's integer division (truncates toward zero) for b > 0."""
    q = abs(a) // b
    return q if a >= 0 else -q


def round_half_away(x: float) -> int:
    """std::round: halves away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32 rounded to nearest (gemmlowp's nudge: ties toward +inf)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return i32(_tdiv(ab + nudge, 1 << 31))


def rdbpot(x: int, exponent: int) -> int:
    """RoundingDivideByPOT: x / 2**exponent, rounded to nearest, ties away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm(x: int, multiplier: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (TFLite's double-rounding form, the default build)."""
    left, right = max(shift, 0), max(-shift, 0)
    return rdbpot(srdhm(i32(x * (1 << left)), multiplier), right)


def quantize_multiplier(d: float) -> tuple[int, int]:
    """QuantizeMultiplier: double d > 0 -> (int32 significand in [2**30, 2**31), shift), d ~ m * 2**(shift - 31)."""
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)
    fixed = round_half_away(q * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def f64(x: float) -> float:
    """A float32 scale as TFLM reads it (static_cast<double>(float))."""
    import numpy as np

    return float(np.float32(x))


def conv_multiplier(in_scale: float, w_scale: float, out_scale: float) -> tuple[int, int]:
    """Per-channel conv / fully-connected requantisation: input_scale * filter_scale / output_scale in double."""
    return quantize_multiplier(f64(in_scale) * f64(w_scale) / f64(out_scale))


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """MEAN over ``count`` int8 values: the in/out multiplier with 1/count folded in (reduce.h's integer mean)."""
    mult, shift = quantize_multiplier(f64(in_scale) / f64(out_scale))
    s = min(count.bit_length() - 1, 32, 31 + shift)
    return (mult << s) // count, shift - s


def requant_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> list[int]:
    """QUANTIZE int8 -> int8 (reference Requantize) for every int8 input, indexed by input + 128."""
    mult, shift = quantize_multiplier(f64(in_scale) / f64(out_scale))
    return [max(-128, min(127, mbqm(v - in_zp, mult, shift) + out_zp)) for v in range(-128, 128)]


def _srmbpot(x: int, exponent: int) -> int:
    """SaturatingRoundingMultiplyByPOT."""
    if exponent == 0:
        return x
    if exponent < 0:
        return rdbpot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return i32(x << exponent)


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def _exp_quarter(a: int) -> int:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8."""
    const_term, one_third = 1895147668, 715827883
    x = i32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    poly = _srmbpot(i32(srdhm(i32(_srmbpot(x4, -2) + x3), one_third) + x2), -1)
    return i32(const_term + srdhm(const_term, i32(x + poly)))


def exp_on_negative_values(a: int, int_bits: int) -> int:
    """exp(a) for a <= 0 in Q(int_bits).(31-int_bits) -> Q0.31."""
    frac = 31 - int_bits
    quarter = 1 << (frac - 2)
    a_mod = i32((a & (quarter - 1)) - quarter)
    result = _exp_quarter(_srmbpot(a_mod, int_bits))
    remainder = i32(a_mod - a)
    for exponent, mult in _EXP_BARREL:
        if int_bits > exponent and remainder & (1 << (frac + exponent)):
            result = srdhm(result, mult)
    if int_bits > 5 and a < -(1 << (36 - int_bits)):
        result = 0
    return INT32_MAX if a == 0 else result


def _one_over_one_plus_x(a: int) -> int:
    """1 / (1 + a) for a in [0, 1), Q0.31 in and out: three Newton-Raphson steps in Q2.29."""
    s = a + INT32_MAX
    half = i32(_tdiv(s + (1 if s >= 0 else -1), 2))
    x = i32(1515870810 + srdhm(half, -1010580540))
    for _ in range(3):
        one_minus = i32((1 << 29) - srdhm(half, x))
        x = i32(x + _srmbpot(srdhm(x, one_minus), 2))
    return _srmbpot(x, 1)


def logistic_q(a: int, int_bits: int = 4) -> int:
    """gemmlowp's logistic on a Q(int_bits) input -> Q0.31."""
    if a == 0:
        return 1 << 30
    pos = _one_over_one_plus_x(exp_on_negative_values(i32(-abs(a)) if a > 0 else a, int_bits))
    return pos if a > 0 else i32(INT32_MAX - pos)


def logistic_table(in_scale: float, in_zp: int) -> list[int]:
    """LOGISTIC int8 -> int8 (output scale 1/256, zero point -128) for every int8 input, indexed by input + 128."""
    q, left_shift = math.frexp(f64(in_scale) * float(1 << 27))
    mult = round_half_away(q * (1 << 31))
    radius = math.floor(15.0 * float(1 << 27) / float(1 << left_shift))
    out = []
    for v in range(-128, 128):
        x = v - in_zp
        if x <= -radius:
            out.append(-128)
        elif x >= radius:
            out.append(127)
        else:
            y = rdbpot(logistic_q(mbqm(x, mult, left_shift)), 23)
            out.append(max(-128, min(127, y - 128)))
    return out
