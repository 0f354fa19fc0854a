"""This machine's compute limit, measured in the same run: a large fp32 matmul, and the fastest of the int8 matmuls
we can run (torch._int_mm; onnxruntime's MatMulInteger, whose u8 x s8 kernels use the CPU's int8 dot-product
instructions: VPMADDUBSW on AVX2, VPDPBUSD on VNNI, AMX tiles). On an AVX2 EPYC torch._int_mm reached 0.73 GMAC/s,
far below what the int8 models themselves ran at, so efficiencies read 844-1664%."""

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
    """{"fp32": {...}, "int8": {...} or None}: MAC/s of an n^3 matmul on ``threads`` threads (torch's oneDNN/MKL
    kernels)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        out = {
            "fp32": {
                "kernel": f"torch.matmul fp32 {n}x{n}x{n}",
                "threads": threads,
                "macs_per_s": n**3 / _best(lambda: a @ b, seconds),
            }
        }
        out["int8"] = _best_int8([_torch_int8(g, n, seconds), _ort_int8(n, threads, seconds)], threads)
        return out
    finally:
        torch.set_num_threads(old)


def _best_int8(candidates: list[dict | None], threads: int) -> dict:
    """The fastest int8 kernel that ran, with the int8 ISA this CPU offers (what the kernels could use)."""
    from c3ae_edge.export.crosscheck import cpu

    ran = [c for c in candidates if c and c.get("macs_per_s")]
    isa = cpu()["int8_isa"]
    if not ran:
        return {"kernel": None, "isa": isa, "note": "no int8 matmul ran here"}
    best = max(ran, key=lambda c: c["macs_per_s"])
    return {**best, "threads": threads, "isa": isa, "tried": {c["kernel"]: c["macs_per_s"] for c in ran}}


def _torch_int8(g, n: int, seconds: float) -> dict | None:
    import torch

    try:
        qa = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=g)
        qb = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=g)
        return {
            "kernel": f"torch._int_mm int8->int32 {n}x{n}x{n}",
            "macs_per_s": n**3 / _best(lambda: torch._int_mm(qa, qb), seconds),
        }
    except (RuntimeError, AttributeError):  # no int8 GEMM in this torch build
        return None


def _ort_int8(n: int, threads: int, seconds: float) -> dict | None:
    """onnxruntime MatMulInteger, u8 activations x s8 weights (its fastest x86 int8 path), int32 out."""
    try:
        import numpy as np
        import onnxruntime  # noqa: F401
        from onnx import TensorProto, helper, numpy_helper

        from c3ae_edge.export.backends.onnx_backend import session
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.integers(-128, 127, (n, n), dtype=np.int8), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
        "peak",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
        [b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    sess = session(model.SerializeToString(), threads)
    a = {"A": rng.integers(0, 255, (n, n), dtype=np.uint8)}
    return {
        "kernel": f"onnxruntime MatMulInteger u8xs8->int32 {n}x{n}x{n}",
        "macs_per_s": n**3 / _best(lambda: sess.run(None, a), seconds),
    }
