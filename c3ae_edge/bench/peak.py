"""This machine's compute limit, measured in the same run: a large fp32 matmul and an int8 one (torch._int_mm)."""
from __future__ import annotations

import time


def _best(fn, seconds: float) -> float:
    """Fastest of repeated calls over ``seconds`` (the limit, not the average: contention only slows a run down)."""
    fn()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t) / 1e9)
    return best


def measure_peak(threads: int, seconds: float = 1.0, n: int = 512) -> dict:
    """{"fp32": {...}, "int8": {...} or None}: MAC/s of an n^3 matmul on ``threads`` threads (torch's oneDNN/MKL kernels)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        out = {"fp32": {"kernel": f"torch.matmul fp32 {n}x{n}x{n}", "threads": threads, "macs_per_s": n**3 / _best(lambda: a @ b, seconds)}}
        try:
            qa = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=g)
            qb = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=g)
            out["int8"] = {"kernel": f"torch._int_mm int8->int32 {n}x{n}x{n}", "threads": threads,
                           "macs_per_s": n**3 / _best(lambda: torch._int_mm(qa, qb), seconds)}
        except (RuntimeError, AttributeError) as e:  # no int8 GEMM in this torch build
            out["int8"] = {"kernel": None, "note": f"no int8 matmul here: {str(e).splitlines()[0]}"}
        return out
    finally:
        torch.set_num_threads(old)
