"""``--device cuda``: PyTorch eager, CUDA Graphs replay, fp16/bf16 and channels-last, single image and large batches."""

from __future__ import annotations

import time

import numpy as np

from c3ae_edge.board import onboard

GPU_BATCHES = (1, 256, 4096)  # single-image latency, then throughput


def available() -> tuple[bool, str]:
    """(usable, why not) without raising."""
    import torch

    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device visible"
        return False, f"skip --device cuda: CUDA not available ({why}; torch {torch.__version__})"
    return True, ""


def _variants():
    import torch

    yield "eager", "fp32", torch.float32, False, False
    yield "eager", "fp16", torch.float16, False, False
    yield "eager", "bf16", torch.bfloat16, False, False
    yield "eager channels-last", "fp16", torch.float16, True, False
    yield "cuda-graph", "fp32", torch.float32, False, True
    yield "cuda-graph", "fp16", torch.float16, False, True
    yield "cuda-graph", "bf16", torch.bfloat16, False, True
    yield "cuda-graph channels-last", "fp16", torch.float16, True, True


def _timed(fn, runs: int, warmup: int) -> tuple[dict, float]:
    import torch

    def call(_):
        fn()
        torch.cuda.synchronize()

    ns, first = onboard.time_runs(call, None, runs, warmup)
    return onboard.latency_stats(ns), first / 1e9


def bench_model(model, x_all: np.ndarray, cfg, log=print) -> list[dict]:
    """Rows for one model on the GPU; [] and one line when CUDA is absent."""
    import copy

    import torch

    ok, why = available()
    if not ok:
        log(why)
        return []
    dev = torch.device("cuda")
    rows = []
    batches = sorted(set(cfg.batches) | set(GPU_BATCHES)) if cfg.batches == [1] else cfg.batches
    for mode, prec, dtype, cl, graph in _variants():
        m = copy.deepcopy(model).to(dev, dtype).eval()
        if cl and len(model.cfg.input_shape) == 3:
            m = m.to(memory_format=torch.channels_last)
        elif cl:
            continue  # channels-last is a 4-D layout; the 3-crop input is 5-D
        for b in batches:
            idx = np.arange(b) % len(x_all)
            x = torch.from_numpy(np.ascontiguousarray(x_all[idx])).to(dev, dtype)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            t = time.perf_counter_ns()
            try:
                with torch.inference_mode():
                    if graph:
                        fn = _graphed(m, x)
                    else:

                        def fn(m=m, x=x):
                            return m(x)

                    load_s = (time.perf_counter_ns() - t) / 1e9
                    lat, first = _timed(fn, cfg.runs, cfg.warmup)
            except RuntimeError as e:  # e.g. out of memory at a large batch
                rows.append(
                    {
                        "backend": f"torch-cuda {mode}",
                        "precision": prec,
                        "batch": b,
                        "device": "cuda",
                        "error": str(e).splitlines()[0],
                    }
                )
                continue
            r = onboard.row(
                model.cfg.name,
                f"torch-cuda {mode}",
                prec,
                None,
                b,
                lat,
                first,
                load_s,
                device="cuda",
                gpu={
                    "name": torch.cuda.get_device_name(),
                    "capability": list(torch.cuda.get_device_capability()),
                    "cuda": torch.version.cuda,
                    "cudnn": torch.backends.cudnn.version(),
                },
                memory={"unit": "MB", "gpu_peak_allocated": torch.cuda.max_memory_allocated() / 2**20},
                artifact={"file": None, "bytes": model.cfg.fp32_bytes},
            )
            rows.append(r)
            log(
                f"{model.cfg.name:22s} cuda {mode:26s} {prec} b{b}: p50 {lat['p50'] * 1e6:.1f} us, "
                f"{r['throughput']['value']:.0f} img/s"
            )
        del m
        torch.cuda.empty_cache()
    return rows


def _graphed(m, x):
    """Capture one forward into a CUDA graph on a side stream; the returned call replays it."""
    import torch

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            m(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        m(x)
    return g.replay
