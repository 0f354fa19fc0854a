"""OpenVINO IR: ov.convert_model + ov.save_model, fp32 / fp16-compressed, int8 from a QDQ ONNX with 7-bit weights
(head in float). The one compiler of an IR (``compile_ir``) serves the runner, the bench forward and the graph
report."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from c3ae_edge.errors import require
from c3ae_edge.export.backends.base import BackendSpec, BenchSupport, Runtime
from c3ae_edge.export.backends.common import META_KEY, decode_outputs, meta_json, module_missing

SPEC = BackendSpec(
    name="openvino",
    suffix=".xml",
    precisions=("fp32", "fp16", "int8"),
    runtimes=("openvino",),
    extra="openvino",
    description="OpenVINO IR (.xml + .bin), dynamic batch; int8 = u8 activations x 7-bit s8 weights (QDQ, head in "
    "float); run with f32 precision hint",
    options={"sidecar": ".bin"},
    requires=("openvino", "onnx", "onnxscript", "onnxruntime"),
    toolchain=("onnx", "onnxruntime", "onnxscript", "openvino"),  # int8 goes through onnxruntime's QDQ quantiser
)


def _ov_model(model, example: np.ndarray):
    ov = require("openvino", "openvino")
    import torch

    from c3ae_edge.export.deploy import DeployModule

    dm = DeployModule(model)
    x = torch.from_numpy(np.ascontiguousarray(example[:1], np.float32))
    shape = [-1, *x.shape[1:]]
    m = ov.convert_model(dm, example_input=(x,), input=[ov.PartialShape(shape)])
    names = ["age", "bins"] if dm.cascade else ["age"]
    for out, name in zip(m.outputs, names):
        out.get_tensor().set_names({name})
    m.inputs[0].get_tensor().set_names({"input"})
    return m


def _int8_model(model, example: np.ndarray, calibration: np.ndarray | None, options: dict):
    """u8 activations x s8 weights in 7 bits, from onnxruntime's static QDQ quantiser. OpenVINO's CPU plugin runs
    u8 x s8 convolutions with VPMADDUBSW, which saturates at int16 on AVX2 without VNNI: NNCF's 8-bit weights gave
    per-face outliers of 8-10 years there (p99 |int8 - fp32| 4.2-4.6 y, c3ae_plain, 500 faces) and stayed poor with
    its overflow fix on every layer. 7-bit weights cannot saturate; u8 weights would, but the plugin then runs the
    convolutions in f32. Measured on an AVX2 EPYC: p99 0.99 / 1.48 y, max 2.0 y (c3ae_plain / c3ae_full)."""
    import tempfile

    ov = require("openvino", "openvino")
    from c3ae_edge.export.backends.onnx_backend import quantize_qdq, to_onnx

    q = quantize_qdq(to_onnx(model, example), calibration, options, scheme="u8s8-7bit")
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "int8.onnx"
        src.write_bytes(q.SerializeToString(deterministic=True))
        return ov.convert_model(str(src))


class OpenVINOBackend:
    spec = SPEC

    @property
    def runtimes(self) -> tuple[Runtime, ...]:
        return RUNTIMES

    @property
    def bench(self) -> BenchSupport:
        return BENCH

    def export(
        self, model, example: np.ndarray, out_dir: Path, precision: str, calibration: np.ndarray | None, options: dict
    ) -> Path:
        ov = require("openvino", "openvino")
        out = Path(out_dir) / f"{options.get('stem', 'model')}_{precision}{SPEC.suffix}"
        m = _int8_model(model, example, calibration, options) if precision == "int8" else _ov_model(model, example)
        if options.get("metadata"):
            m.set_rt_info(meta_json(options["metadata"]), [META_KEY])
        ov.save_model(m, str(out), compress_to_fp16=precision == "fp16")
        return out

    def load(self, path: Path, threads: int | None = None, options: dict | None = None):
        return OpenVINORunner(path, threads, (options or {}).get("device", "CPU"))


def read_ir(path: Path, batch: int | None = None):
    """(core, model) for an IR; ``batch``: reshaped to that static batch (the artifact's batch is dynamic)."""
    ov = require("openvino", "openvino")
    core = ov.Core()
    m = core.read_model(str(path))
    if batch:
        shape = m.inputs[0].get_partial_shape()
        m.reshape([batch] + [d.get_length() for d in list(shape)[1:]])
    return core, m


def compile_ir(
    path: Path,
    threads: int | None = None,
    precision: str = "f32",
    batch: int | None = None,
    latency: bool = False,
    device: str = "CPU",
):
    """THE way c3ae-edge compiles an IR -> (model, compiled). ``INFERENCE_PRECISION_HINT`` is always set: without
    it a bf16-capable CPU silently runs "fp32" in bf16. ``latency``: the bench's one-stream LATENCY hint."""
    core, m = read_ir(path, batch)
    cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1} if latency else {}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    cfg["INFERENCE_PRECISION_HINT"] = precision
    return m, core.compile_model(m, device, cfg)


class OpenVINORunner:
    """Compiled model; ``INFERENCE_PRECISION_HINT=f32`` or this CPU silently runs "fp32" in bf16."""

    def __init__(self, path: Path, threads: int | None = None, device: str = "CPU"):
        m, self.compiled = compile_ir(path, threads, device=device)
        self.input_name = m.inputs[0].get_any_name()
        self.output_names = tuple(o.get_any_name() for o in m.outputs)
        self.meta = json.loads(m.get_rt_info([META_KEY]).astype(str)) if m.has_rt_info([META_KEY]) else {}
        self.request = self.compiled.create_infer_request()

    def io(self) -> dict:
        def row(p):
            return {
                "name": p.get_any_name(),
                "shape": [d.get_length() if d.is_static else -1 for d in p.get_partial_shape()],
                "dtype": "float32",
            }

        i = self.compiled.inputs[0]
        return {
            "input": {**row(i), "layout": "NSCHW" if len(i.get_partial_shape()) == 5 else "NCHW"},
            "outputs": [row(o) for o in self.compiled.outputs],
        }

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return {name: np.array(res[self.compiled.outputs[i]]) for i, name in enumerate(self.output_names)}

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return decode_outputs(self.raw(x), self.meta)


def bench_forward(path: Path, threads: int, precision: str = "fp32", batch: int = 1, call: str = "lean"):
    """Compiled for the static input shape of this row (a dynamic batch costs 10-15% per call at batch 1, measured
    here).

    ``call`` is how each forward talks to the request (bench/scripts/ov_overhead.py times them against benchmark_app):
    ``lean`` (the bench's) copies x into the request's own input tensor, allocated once, as a camera loop that writes
    each frame's crops there would (a 48 KB copy, a few us), then a synchronous ``infer()`` with output views (no
    copies): it runs on the calling thread, as benchmark_app's sync API does, so the thread's CPU time (photo-to-age
    rows) includes the inference; ``async``, the call before: the same with ``start_async()`` + ``wait()``, which
    hands the inference to the stream's worker thread (the caller's CPU time then holds ~50 us of it, measured);
    ``wrap``, the call before that: a new zero-copy ``ov.Tensor`` set on every call + ``infer()`` (copied outputs)."""
    ov = require("openvino", "openvino")
    _, compiled = compile_ir(path, threads, "bf16" if precision == "bf16" else "f32", batch, latency=True)
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
    outs = [req.get_output_tensor(i).data for i in range(n_out)]  # views of the request's output memory (static shape)

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


def graph_report(path: Path, threads: int = 1) -> dict:
    """Op counts, MACC at batch 1, and the CPU plugin's executed graph: layer types by runtime precision (I8 / FP32 /
    BF16)."""
    _, m = read_ir(path, batch=1)
    macc = 0
    ops = Counter()
    for op in m.get_ordered_ops():
        t = op.get_type_name()
        if t in ("Parameter", "Result", "Constant"):
            continue
        ops[t] += 1
        if t in ("Convolution", "GroupConvolution", "MatMul"):
            out = list(op.output(0).get_shape())
            w = list(op.input(1).get_shape())
            if t == "Convolution":
                macc += math.prod(out) * math.prod(w[1:])
            elif t == "GroupConvolution":
                macc += math.prod(out) * math.prod(w[2:])
            else:
                a = list(op.input(0).get_shape())
                ta = op.get_attributes().get("transpose_a", False)
                macc += math.prod(out) * (a[-2] if ta else a[-1])
    rt = Counter()
    _, compiled = compile_ir(path, threads)
    for op in compiled.get_runtime_model().get_ordered_ops():
        ri = op.get_rt_info()
        lt = ri["layerType"].astype(str)
        if lt in ("Input", "Output", "Const", "Parameter", "Result"):
            continue
        rt[f"{lt}:{ri['runtimePrecision'].astype(str)}"] += 1
    return {
        "format": "openvino",
        "ops": dict(ops.most_common()),
        "nodes": sum(ops.values()),
        "macc": macc or None,
        "runtime": {"executor": "OpenVINO CPU plugin", "executed_layers_by_precision": dict(sorted(rt.items()))},
    }


def _ov_missing() -> str | None:
    return module_missing("openvino", "openvino", "openvino")


RUNTIMES = (
    Runtime(
        "openvino/cpu",
        "openvino",
        "cpu",
        lambda p, t: OpenVINORunner(p, t),
        _ov_missing,
        "OpenVINO CPU plugin, INFERENCE_PRECISION_HINT=f32 (int8 layers run in u8/i8)",
    ),
)
BENCH = BenchSupport(
    options={
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": "= threads",
        "INFERENCE_PRECISION_HINT": "f32 (bf16 only as precision 'bf16')",
        "shape": "reshaped to the row's static batch before compiling",
        "infer": "x copied into the request's own input tensor (allocated once), infer() on the calling thread, "
        "views of the output tensors",
    },
    forward=bench_forward,
    graph=graph_report,
    conversion_ops={"transpose": ("Transpose",), "quantize": ("FakeQuantize",), "dequantize": ()},
    run_as={"bf16": "fp32"},  # the fp32 IR run with INFERENCE_PRECISION_HINT=bf16
    variants={"int8": ("dwpool",)},  # measured to help the int8 IR only (c3ae_edge.export.rewrite)
)
BACKEND = OpenVINOBackend()
