"""The timed call per backend: ``forward(x)`` takes the same float32 crops (the model's NCHW / NSCHW layout) for every
backend and does whatever the artifact needs (layout move, input quantisation) inside the timed call."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Forward = Callable[[np.ndarray], object]

# Runtime options, set explicitly and reported with every row (nothing left to a runtime's default).
RUNTIME_OPTIONS = {
    "torch": {"mode": "eager, torch.inference_mode", "intra_op_threads": "= threads", "interop_threads": 1},
    "onnx": {"graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "sequential", "intra_op_threads": "= threads", "inter_op_threads": 1,
             "provider": "CPUExecutionProvider"},
    "openvino": {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": "= threads", "INFERENCE_PRECISION_HINT": "f32 (bf16 only as precision 'bf16')",
                 "shape": "reshaped to the row's static batch before compiling",
                 "infer": "x copied into the request's own input tensor (allocated once), infer() on the calling thread, views of the output tensors"},
    "tflite": {"delegate": "XNNPACK (the interpreter's default)", "num_threads": "= threads", "input": "NCHW -> NHWC moveaxis (+ int8 quantise) in the timed call"},
}


def torch_forward(model, threads: int) -> Forward:
    import torch

    torch.set_num_threads(threads)
    model.eval()

    def forward(x: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return forward


def onnx_forward(path: Path, threads: int) -> Forward:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})


def openvino_forward(path: Path, threads: int, precision: str = "fp32", batch: int = 1, call: str = "lean") -> Forward:
    """Compiled for the static input shape of this row (a dynamic batch costs 10-15% per call at batch 1, measured here).

    ``call`` is how each forward talks to the request (tools/ov_overhead.py times them against benchmark_app):
    ``lean`` (the bench's) copies x into the request's own input tensor, allocated once, as a camera loop that writes
    each frame's crops there would (a 48 KB copy, a few us), then a synchronous ``infer()`` with output views (no
    copies): it runs on the calling thread, as benchmark_app's sync API does, so the thread's CPU time (photo-to-age
    rows) includes the inference; ``async``, the call before: the same with ``start_async()`` + ``wait()``, which hands
    the inference to the stream's worker thread (the caller's CPU time then holds ~50 us of it, measured);
    ``wrap``, the call before that: a new zero-copy ``ov.Tensor`` set on every call + ``infer()`` (copied outputs)."""
    import openvino as ov

    compiled = openvino_compile(path, threads, precision, batch)
    req = compiled.create_infer_request()
    n_out = len(compiled.outputs)
    if call == "wrap":
        def forward(x: np.ndarray):
            req.set_input_tensor(ov.Tensor(x, shared_memory=True))
            req.infer()
            return [req.get_output_tensor(i).data for i in range(n_out)]

        return forward
    if call not in ("lean", "async"):
        raise ValueError(f"unknown OpenVINO call {call!r}")
    inp = req.get_input_tensor().data
    outs = [req.get_output_tensor(i).data for i in range(n_out)]  # views of the request's output memory (static shapes: fixed)

    def lean(x: np.ndarray):
        np.copyto(inp, x)
        req.infer(share_outputs=True)
        return outs

    def in_worker(x: np.ndarray):
        np.copyto(inp, x)
        req.start_async()
        req.wait()
        return outs

    return lean if call == "lean" else in_worker


def openvino_compile(path: Path, threads: int, precision: str = "fp32", batch: int = 1):
    """The IR reshaped to a static ``batch`` and compiled with RUNTIME_OPTIONS["openvino"]."""
    import openvino as ov

    core = ov.Core()
    m = core.read_model(str(path))
    shape = m.inputs[0].get_partial_shape()
    m.reshape([batch] + [d.get_length() for d in list(shape)[1:]])
    cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": int(threads),
           "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    return core.compile_model(m, "CPU", cfg)


def tflite_forward(path: Path, threads: int) -> Forward:
    from c3ae_edge.bench.onboard import load_tflite

    return load_tflite(path, threads)[0]


def output_batch(out) -> int:
    """Leading dimension of a forward's first output (checks the timed call really computed the whole batch)."""
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    shape = getattr(out, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else 1


def artifact_forward(backend: str, path: Path, threads: int, precision: str, batch: int = 1) -> Forward:
    if backend == "onnx":
        return onnx_forward(path, threads)
    if backend == "openvino":
        return openvino_forward(path, threads, precision, batch)
    if backend == "tflite":
        return tflite_forward(path, threads)
    raise ValueError(f"no forward for backend {backend!r}")
