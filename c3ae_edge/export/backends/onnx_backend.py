"""ONNX: dynamo export (one self-contained file, local paths stripped), fp32 / fp16, int8 QDQ per-channel via ORT.
The one onnxruntime session opener (``session``) serves the runner, the bench forward and the graph report."""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from c3ae_edge.errors import require
from c3ae_edge.export.backends.base import BackendSpec, BenchSupport, Runtime
from c3ae_edge.export.backends.common import META_KEY, batches, decode_outputs, meta_json, module_missing

SPEC = BackendSpec(
    name="onnx",
    suffix=".onnx",
    precisions=("fp32", "fp16", "int8"),
    runtimes=("onnxruntime",),
    extra="onnx",
    description="ONNX opset 18, dynamic batch; int8 = QDQ U8U8 per-channel "
    "(onnxruntime static quantisation, head in float)",
    requires=("onnx", "onnxscript", "onnxruntime"),
    toolchain=("onnx", "onnxruntime", "onnxscript"),
)

# Integer schemes (activation, weight, reduce_range). onnxruntime's x86 int8 kernels multiply u8 by s8 with
# VPMADDUBSW, which saturates at int16 on AVX2 CPUs without VNNI: an s8-weight graph that is exact on AVX-512 VNNI
# or AMX came out up to 46 years off on an AVX2 EPYC. u8 x u8 takes a kernel that widens to int16 first (exact on
# every ISA); 7-bit weights (reduce_range) keep u8 x s8 pairs below the int16 limit. Measured, c3ae_full, 500 faces,
# AVX2 EPYC: u8u8 p99 |int8 - fp32| 1.37 y, max 1.90 y, fused kernels == unfused QDQ reference; today's s8s8: max 45.9.
SCHEMES = {"u8u8": ("QUInt8", "QUInt8", False), "u8s8-7bit": ("QUInt8", "QInt8", True)}


def _strip(model) -> None:
    """Drop doc strings and per-node metadata (stack traces with local paths) from the graph."""
    model.doc_string = ""
    model.graph.doc_string = ""
    for n in model.graph.node:
        n.doc_string = ""
        del n.metadata_props[:]
    for vi in (
        list(model.graph.value_info)
        + list(model.graph.input)
        + list(model.graph.output)
        + list(model.graph.initializer)
    ):
        vi.doc_string = ""
        if hasattr(vi, "metadata_props"):
            del vi.metadata_props[:]
    del model.metadata_props[:]


def embed_metadata(model, meta: dict | None) -> None:
    if meta:
        p = model.metadata_props.add()
        p.key, p.value = META_KEY, meta_json(meta)


def _head_nodes(model) -> list[str]:
    """The cascade head (W1 -> softmax -> W2 and what follows) to keep in float: softmax, its producer, its
    consumers."""
    nodes = list(model.graph.node)
    soft = [n for n in nodes if n.op_type == "Softmax"]
    if not soft:
        return []
    keep = {soft[-1].name}
    produced = {o: n for n in nodes for o in n.output}
    src = produced.get(soft[-1].input[0])
    if src is not None:
        keep.add(src.name)
    frontier = set(soft[-1].output)
    for n in nodes:  # topological order: everything downstream of the softmax
        if frontier & set(n.input):
            keep.add(n.name)
            frontier |= set(n.output)
    return sorted(keep)


class _Reader:
    """ORT CalibrationDataReader over a float array."""

    def __init__(self, x: np.ndarray, name: str):
        self._it = iter([{name: b} for b in batches(x, 1)])

    def get_next(self):
        return next(self._it, None)


def to_onnx(model, example: np.ndarray, fp16: bool = False):
    """The model as a stripped ONNX ModelProto (dynamo export, dynamic batch, named I/O)."""
    require("onnx", "onnx")
    require("onnxscript", "onnx")
    import torch

    from c3ae_edge.export.deploy import DeployModule

    dm = DeployModule(model)
    names = ["age", "bins"] if dm.cascade else ["age"]
    if fp16:
        dm = _Fp16(dm)
    x = torch.from_numpy(np.ascontiguousarray(example[:1], np.float32))
    prog = torch.onnx.export(
        dm,
        (x,),
        None,
        dynamo=True,
        external_data=False,
        input_names=["input"],
        output_names=names,
        dynamic_shapes=({0: torch.export.Dim("batch", max=4096)},),
        optimize=True,
        verbose=False,
    )
    m = prog.model_proto
    _strip(m)
    m.producer_name, m.producer_version = "c3ae-edge", ""
    return m


class OnnxBackend:
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
        onnx = require("onnx", "onnx")
        out = Path(out_dir) / f"{options.get('stem', 'model')}_{precision}{SPEC.suffix}"
        m = to_onnx(model, example, fp16=precision == "fp16")
        if precision == "int8":
            m = quantize_qdq(m, calibration, options)
        embed_metadata(m, options.get("metadata"))
        onnx.checker.check_model(m)
        out.write_bytes(m.SerializeToString(deterministic=True))
        return out

    def load(self, path: Path, threads: int | None = None, options: dict | None = None):
        return OnnxRunner(path, threads, (options or {}).get("providers"))


def quantize_qdq(m, calibration: np.ndarray | None, options: dict, scheme: str = "u8u8"):
    """Static QDQ int8 (``scheme``: a key of SCHEMES), per-channel symmetric weights, MinMax activation ranges,
    the head left in float (``head_float`` option, default on)."""
    import tempfile

    import onnx

    require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calibration is None or len(calibration) == 0:
        raise ValueError("int8 needs calibration data")
    act, wt, reduce = SCHEMES[scheme]
    exclude = _head_nodes(m) if options.get("head_float", True) else []
    with tempfile.TemporaryDirectory() as td:
        src, dst = Path(td) / "fp32.onnx", Path(td) / "int8.onnx"
        src.write_bytes(m.SerializeToString())
        quantize_static(
            str(src),
            str(dst),
            _Reader(calibration.astype(np.float32), "input"),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce,
            activation_type=QuantType[act],
            weight_type=QuantType[wt],
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        q = onnx.load(str(dst))
    _strip(q)
    q.producer_name, q.producer_version = "c3ae-edge", ""
    return q


def _Fp16(dm):
    """fp16 weights and compute, float32 input and outputs (casts at the edges)."""
    import copy

    import torch

    class Fp16(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = copy.deepcopy(inner).half()  # never touch the caller's fp32 model
            self.cascade = inner.cascade

        def forward(self, x):
            out = self.inner(x.half())
            return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()

    return Fp16(dm).eval()


def session(
    model: Path | bytes, threads: int | None = None, providers: list[str] | None = None, optimized: Path | None = None
):
    """THE onnxruntime session of c3ae-edge (runner, bench forward, graph report, peak kernel): every option set
    explicitly (see ``BENCH.options``); ``optimized``: also write the graph ORT executes after its fusions there."""
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, so, providers=providers or ["CPUExecutionProvider"])


class OnnxRunner:
    """onnxruntime session over an exported artifact."""

    def __init__(self, path: Path, threads: int | None = None, providers: list[str] | None = None):
        self.session = session(path, threads, providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = json.loads(props[META_KEY]) if META_KEY in props else {}

    def io(self) -> dict:
        def row(t):
            return {"name": t.name, "shape": [d if isinstance(d, int) else -1 for d in t.shape], "dtype": "float32"}

        i = self.session.get_inputs()[0]
        return {
            "input": {**row(i), "layout": "NSCHW" if len(i.shape) == 5 else "NCHW"},
            "outputs": [row(o) for o in self.session.get_outputs()],
        }

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})
        return dict(zip(self.output_names, outs))

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return decode_outputs(self.raw(x), self.meta)


def int8_from_fp32(fp32: Path, dst: Path, calibration: np.ndarray, options: dict) -> Path:
    """The int8 ``export`` writes (``quantize_qdq``: QDQ per-channel, head in float), made from an fp32 artifact
    (the bench: saves a second torch export)."""
    onnx = require("onnx", "onnx")
    m = quantize_qdq(onnx.load(str(fp32)), calibration, options)
    embed_metadata(m, options.get("metadata"))
    onnx.checker.check_model(m)
    dst.write_bytes(m.SerializeToString(deterministic=True))
    return dst


def bench_forward(path: Path, threads: int, precision: str = "fp32", batch: int = 1):
    """The bench's timed call: one ``session.run`` on the float32 crops."""
    s = session(path, threads)
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})


def graph_report(path: Path, threads: int = 1) -> dict:
    """Op counts, MACC from the graph (shapes inferred at batch 1) and ORT's optimised graph (what really runs)."""
    import onnx
    from onnx import shape_inference

    m = onnx.load(str(path))
    for d in m.graph.input[0].type.tensor_type.shape.dim[:1]:
        d.ClearField("dim_param")
        d.dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {i.name: list(i.dims) for i in m.graph.initializer}
    for vi in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    macc = 0
    for n in m.graph.node:
        out = shapes.get(n.output[0])
        if n.op_type == "Conv" and out:
            w = shapes.get(n.input[1])
            if w:
                macc += math.prod(out) * math.prod(w[1:])
        elif n.op_type in ("Gemm", "MatMul") and out:
            a = shapes.get(n.input[0])
            trans = any(at.name == "transA" and at.i for at in n.attribute)
            if a:
                macc += math.prod(out) * (a[0] if trans else a[-1])
    ops = Counter(n.op_type for n in m.graph.node)
    return {
        "format": "onnx",
        "ops": dict(ops.most_common()),
        "nodes": sum(ops.values()),
        "macc": macc or None,
        "runtime": _ort_optimised(path),
    }


def _ort_optimised(path: Path) -> dict:
    """The graph onnxruntime executes after ORT_ENABLE_ALL (fusions: QLinearConv, FusedConv, ...), all on the CPU EP."""
    import onnx

    from c3ae_edge.errors import MissingExtraError

    with tempfile.TemporaryDirectory() as td:
        try:
            session(path, optimized=Path(td) / "opt.onnx")
        except MissingExtraError:  # onnx without onnxruntime: the report without the executed graph
            return {}
        opt = onnx.load(str(Path(td) / "opt.onnx"))
    ops = Counter(n.op_type for n in opt.graph.node)
    return {"executor": "onnxruntime CPUExecutionProvider (every node)", "optimised_ops": dict(ops.most_common())}


def _ort_missing() -> str | None:
    return module_missing("onnxruntime", "onnxruntime", "onnx")


def _cuda_missing() -> str | None:
    if _ort_missing():
        return _ort_missing()
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "no CUDA provider here (onnxruntime-gpu and an NVIDIA GPU are needed)"
    return None


RUNTIMES = (
    Runtime(
        "onnxruntime/cpu",
        "onnxruntime",
        "cpu",
        lambda p, t: OnnxRunner(p, t),
        _ort_missing,
        "CPUExecutionProvider with its fused int8 kernels (the ISA of this CPU picks them)",
    ),
    Runtime(
        "onnxruntime-gpu/cuda",
        "onnxruntime-gpu",
        "cuda",
        lambda p, t: OnnxRunner(p, t, ["CUDAExecutionProvider"]),
        _cuda_missing,
        "onnxruntime-gpu's CUDAExecutionProvider",
    ),
)
BENCH = BenchSupport(
    options={
        "graph_optimization_level": "ORT_ENABLE_ALL",
        "execution_mode": "sequential",
        "intra_op_threads": "= threads",
        "inter_op_threads": 1,
        "provider": "CPUExecutionProvider",
    },
    forward=bench_forward,
    graph=graph_report,
    conversion_ops={"transpose": ("Transpose",), "quantize": ("QuantizeLinear",), "dequantize": ("DequantizeLinear",)},
    int8_from_fp32=int8_from_fp32,
)
BACKEND = OnnxBackend()
