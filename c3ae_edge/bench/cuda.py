"""One PyTorch-forms bench row (``--device cuda``: eager, CUDA graphs, the fused and compiled forms, ONNX Runtime /
TensorRT; the same code on the CPU with ``--variants``): prepare, warm up, time within the row's budget, and check the
ages against CPU fp32 PyTorch on the real faces."""

from __future__ import annotations

import numpy as np

from c3ae_edge.bench.budget import Budget, RowClock, warm_up
from c3ae_edge.bench.gpu_forms import TOLERANCE_Y, Variant
from c3ae_edge.bench.gpu_prepare import Forms, Prepared, device_input, sync
from c3ae_edge.board import stats
from c3ae_edge.errors import C3AEError

GPU_BATCHES = (1, 256, 4096)  # single-image latency, then throughput


class NothingMeasured(C3AEError):
    """A run that was asked to measure a device and could not: no rows, no files, a non-zero exit."""

    exit_code = 1


def parity(p: Prepared, faces_dev, ref: np.ndarray, v: Variant) -> dict:
    """Ages of the prepared forward on every face (batches of its static input, faces cycled) vs the reference."""
    n, b = len(ref), p.x.shape[0]
    ages = []
    for s in range(0, n, b):
        idx = np.arange(s, s + b) % n
        p.x.copy_(faces_dev[idx])
        out = p.forward().float().cpu().numpy().reshape(-1)[: min(b, n - s)]
        ages.append(np.array(out, np.float64))  # a copy: the forward may return the same buffer every call
    d = np.abs(np.concatenate(ages) - ref)
    tol = TOLERANCE_Y[v.precision]
    return {
        "faces": n,
        "reference": "PyTorch eager fp32 on the CPU",
        "max_abs_age_diff_vs_pytorch": float(d.max()),
        "mean_abs_age_diff_vs_pytorch": float(d.mean()),
        "tolerance": tol,
        "within_tolerance": bool(d.max() <= tol),
    }


def bench_row(forms: Forms, v: Variant, b: int, x_all: np.ndarray, ref: np.ndarray, budget: Budget, seconds) -> dict:
    """One timed row (or one with ``error``): load, first call, warm-up, timed forwards within ``seconds``, parity."""
    import torch

    dev = forms.device
    row = {"backend": backend_label(v, dev), "precision": v.precision, "batch": b, "device": dev.type}
    row["form"] = {"spec": v.spec}
    try:
        with CudaFlags(v, dev) as flags:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            p, clock, first = _timed(forms, v, x_all[np.arange(b) % len(x_all)], budget, seconds)
            par = parity(p, device_input(x_all, dev, v), ref, v)
    except Exception as e:  # one row that cannot run (out of memory, a compiler or provider refusing) is an error row
        return {**row, "error": f"run failed: {type(e).__name__}: {_first_line(e)}"}
    lat = stats.latency_stats(clock.ns)
    row.update(
        latency=lat,
        throughput={"unit": "samples/s", "value": b / lat["p50"]},
        timing=budget.record(clock),
        load={"unit": "s", "time": p.load_s},
        first_inference={"unit": "s", "time": first / 1e9},
        parity=par,
    )
    row["form"].update({**p.info, **flags.record})
    if dev.type == "cuda":
        row["memory"] = {"unit": "MB", "gpu_peak_allocated": torch.cuda.max_memory_allocated() / 2**20}
    return row


def _timed(forms: Forms, v: Variant, x_b: np.ndarray, budget: Budget, seconds):
    """-> (the prepared forward, its clock, the first call's ns after load)."""
    p = forms.prepare(v, x_b)
    clock = RowClock(budget, seconds)

    def call():
        p.forward()
        sync(forms.device)

    first = warm_up(call, budget, seconds)
    clock.block(call, budget.runs)
    return p, clock, first


class CudaFlags:
    """A GPU row's cuDNN/cuBLAS settings, restored after it: fp32 rows are true fp32 (TF32 off, for convolutions and
    matmuls alike); the fused and compiled forms let cuDNN time its algorithms for each shape (benchmark mode) before
    their graphs are captured. The eager rows keep PyTorch's default algorithm choice."""

    def __init__(self, v: Variant, dev):
        self.v, self.on = v, dev.type == "cuda" and not v.ort
        self.record: dict = {}

    def __enter__(self):
        if self.on:
            import torch

            be = torch.backends
            self.saved = (be.cudnn.benchmark, be.cudnn.allow_tf32, be.cuda.matmul.allow_tf32)
            be.cudnn.benchmark = self.v.form != "eager"
            tf32 = self.v.precision != "fp32" and self.saved[1]
            be.cudnn.allow_tf32, be.cuda.matmul.allow_tf32 = tf32, tf32 and self.saved[2]
            self.record = {"cudnn_benchmark": be.cudnn.benchmark, "tf32": tf32}
        return self

    def __exit__(self, *a):
        if self.on:
            import torch

            be = torch.backends
            be.cudnn.benchmark, be.cudnn.allow_tf32, be.cuda.matmul.allow_tf32 = self.saved
        return False


def backend_label(v: Variant, dev) -> str:
    if v.ort:
        return f"onnxruntime {v.form.removeprefix('ort-')}"
    if v.form == "torch-tensorrt":
        return "torch-tensorrt"
    return f"torch-{dev.type} {v.name}"


def row_line(model: str, r: dict) -> str:
    """The progress line of one row."""
    head = f"{model:22s} {r['backend']:42s} {r['precision']} b{r['batch']}"
    if "error" in r:
        return f"{head}: {r['error']}"
    par = r["parity"]
    flag = "" if par["within_tolerance"] else f"  PARITY OUTSIDE {par['tolerance']} y"
    return (
        f"{head}: p50 {r['latency']['p50'] * 1e6:.1f} us, {r['throughput']['value']:,.0f} img/s, "
        f"{r['timing']['runs']} runs, ages max diff {par['max_abs_age_diff_vs_pytorch']:.4f} y{flag}"
    )


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e) else ""
