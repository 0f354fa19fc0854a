"""Timing statistics shared by the on-board runner (onboard.py) and ``c3ae-edge bench``: the timed loop and the latency
distribution (percentiles, a bootstrap 95% CI of the median, outliers), so every row is measured and summarised the
same way.

Standalone on purpose (numpy and the standard library only): it travels beside onboard.py (``c3ae-edge bench
write-runner``, ``bench remote``) and inside TFLite bundles, pinned by sha256 in manifest.json's ``bundle_files``.
"""

from __future__ import annotations

import time

import numpy as np


def latency_stats(ns, seed: int = 0, boot: int = 1000) -> dict:
    """Distribution of per-run latencies (ns in, seconds out): count, mean, stdev, min/max, p50 with a bootstrap 95% CI,
    p90/p95/p99, and the mean/stdev without outliers (Tukey: above Q3 + 3 IQR, i.e. pre-emptions, not the kernel)."""
    v = np.asarray(ns, np.float64) / 1e9
    if v.size == 0:
        raise ValueError("no timed runs")
    q1, q3 = np.percentile(v, [25, 75])
    keep = v[v <= q3 + 3 * (q3 - q1)]
    p = np.percentile(v, [50, 90, 95, 99])
    return {
        "unit": "s",
        "count": int(v.size),
        "total": float(v.sum()),
        "mean": float(v.mean()),
        "stdev": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "p50": float(p[0]),
        "p50_ci95": median_ci95(v, seed, boot),
        "p90": float(p[1]),
        "p95": float(p[2]),
        "p99": float(p[3]),
        "outliers": int(v.size - keep.size),
        "mean_without_outliers": float(keep.mean()),
        "stdev_without_outliers": float(keep.std(ddof=1)) if keep.size > 1 else 0.0,
    }


def median_ci95(v: np.ndarray, seed: int = 0, boot: int = 1000) -> list[float]:
    """Bootstrap 95% confidence interval of the median of ``v`` ([low, high]; ``boot`` resamples, seeded)."""
    rng = np.random.default_rng(seed)
    meds = np.empty(boot)
    for i in range(0, boot, 100):  # chunks keep memory flat for 2000 x 1000 resamples
        k = min(100, boot - i)
        meds[i : i + k] = np.median(v[rng.integers(0, v.size, (k, v.size))], axis=1)
    return [float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))]


def time_runs(fn, x, runs: int, warmup: int, first: bool = True) -> tuple[list[int], int]:
    """(per-run ns of ``runs`` timed calls, ns of the very first call (0 if ``first`` is off));
    ``warmup`` untimed calls in between."""
    t0 = 0
    if first:
        t = time.perf_counter_ns()
        fn(x)
        t0 = time.perf_counter_ns() - t
    for _ in range(warmup):
        fn(x)
    out = [0] * runs
    clock = time.perf_counter_ns
    for i in range(runs):
        t = clock()
        fn(x)
        out[i] = clock() - t
    return out, t0
