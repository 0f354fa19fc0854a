"""The parity gates: how close an artifact's ages must come to PyTorch's, per precision, and the int8 bars. A leaf
module: export, verify, the manifest check and the cross-runtime check all read the same numbers from here."""

from __future__ import annotations

import math

import numpy as np

from c3ae_edge.errors import VerificationError

FP32_PARITY = 0.01  # years: max |artifact age - PyTorch age| an fp32 artifact may show on any face
# years, fp16 weights and activations. Rounding in the trunk dominates (keeping the head in fp32 was tried: no
# change); measured on 500 UTKFace faces, c3ae_full: mean 0.025, p99 0.11, max 0.21 years, MAE unchanged.
FP16_PARITY = 0.5
INT8_TOLERANCE_CAP = (
    6.0  # years: no recorded int8 tolerance is looser, whatever was measured (1.5 x the per-face max bar)
)


def int8_bars(max_delta: float, face_p99: float, face_max: float) -> dict:
    return {"max_int8_mae_delta": max_delta, "max_int8_face_p99": face_p99, "max_int8_face_max": face_max}


def predict(runner, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([runner.run(x[i : i + batch])["age"] for i in range(0, len(x), batch)])


def vs_pytorch(runner, x: np.ndarray, ref: np.ndarray) -> dict:
    """The bench's parity of an artifact: |its age - PyTorch's age (``ref``)| on faces ``x``, unrounded."""
    d = np.abs(predict(runner, x).astype(np.float64).reshape(-1) - ref)
    return {
        "faces": len(x),
        "max_abs_age_diff_vs_pytorch": float(np.max(d)),
        "mean_abs_age_diff_vs_pytorch": float(np.mean(d)),
    }


def measure(ages: np.ndarray, torch_ages: np.ndarray, labels: np.ndarray) -> dict:
    """Parity with PyTorch and accuracy on labelled faces, rounded for the manifest."""
    d = np.abs(ages - torch_ages)
    if not np.isfinite(d).all():
        raise VerificationError(f"{int((~np.isfinite(d)).sum())} of {len(d)} verification faces gave a non-finite age")
    mae, ref = float(np.abs(ages - labels).mean()), float(np.abs(torch_ages - labels).mean())
    return {
        "faces": int(len(ages)),
        "max_abs_diff_vs_pytorch": round(float(d.max()), 6),
        "mean_abs_diff_vs_pytorch": round(float(d.mean()), 6),
        "p50_abs_diff_vs_pytorch": round(float(np.median(d)), 6),
        "p99_abs_diff_vs_pytorch": round(float(np.quantile(d, 0.99)), 6),
        "mae": round(mae, 4),
        "pytorch_mae": round(ref, 4),
        "mae_delta_vs_fp32": round(mae - ref, 4),
    }


def tolerance(precision: str, max_diff: float) -> float:
    """Per-face bound a reimplementation must meet against PyTorch: the parity limit for fp32/fp16; for int8,
    1.5x the largest difference measured (over every runtime), rounded up to 0.05 years, never above the cap."""
    if precision == "fp32":
        return FP32_PARITY
    if precision == "fp16":
        return FP16_PARITY
    return min(math.ceil(max(max_diff, 0.1) * 1.5 * 20) / 20, INT8_TOLERANCE_CAP)


def judge(precision: str, m: dict, bars: dict, allow_degraded: bool, where: str = "") -> dict:
    """Pass/fail of one artifact under one runtime: parity for float; for int8 the MAE loss and the per-face
    |int8 - fp32| distribution (p99, max) against the target's bars (``allow_degraded`` records instead of failing)."""
    at = f"{where}: " if where else ""
    if precision in ("fp32", "fp16"):
        limit = FP32_PARITY if precision == "fp32" else FP16_PARITY
        ok = m["max_abs_diff_vs_pytorch"] <= limit
        res = {"check": f"max |age - PyTorch age| <= {limit} years", "passed": ok}
        if not ok:
            raise VerificationError(
                f"{at}{precision} parity failed: max |age diff| {m['max_abs_diff_vs_pytorch']:.4f} > {limit} years"
            )
        return res
    figures = (
        ("MAE loss", m["mae_delta_vs_fp32"], bars["max_int8_mae_delta"], "max_int8_mae_delta"),
        ("p99 |int8 - fp32| per face", m["p99_abs_diff_vs_pytorch"], bars["max_int8_face_p99"], "max_int8_face_p99"),
        ("max |int8 - fp32| per face", m["max_abs_diff_vs_pytorch"], bars["max_int8_face_max"], "max_int8_face_max"),
    )
    failed = [f for f in figures if f[1] > f[2]]
    res = {
        "check": "int8 " + ", ".join(f"{name} <= {bar}" for name, _, bar, _ in figures) + " years",
        "passed": not failed,
    }
    if failed and not allow_degraded:
        name, value, bar, key = failed[0]
        raise VerificationError(
            f"{at}int8 {name} {value:.3f} years > {bar}; use --allow-degraded to export anyway, or raise {key}"
        )
    res["degraded_allowed"] = bool(failed)
    return res


def tolerance_cap(precision: str) -> float:
    """The widest per-face tolerance (years) the exporter can write for ``precision``."""
    return {"fp32": FP32_PARITY, "fp16": FP16_PARITY, "int8": INT8_TOLERANCE_CAP}[precision]
