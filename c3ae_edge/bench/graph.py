"""Graph report per artifact: op counts, the layout/quantisation ops a conversion added, MACC counted from the
graph, and where each op ran (TFLite delegate vs CPU kernels, OpenVINO runtime precision, ORT's fused graph)."""
from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

# op names (per format) of the ops we count as added by a conversion
_ADDED = {"transpose": ("Transpose", "TRANSPOSE"), "quantize": ("QuantizeLinear", "QUANTIZE", "FakeQuantize"),
          "dequantize": ("DequantizeLinear", "DEQUANTIZE")}


def source_transposes(model, example) -> int:
    """Transposes/permutes the PyTorch forward itself calls (ShuffleNet's channel shuffle has some): the baseline.
    Counted with a TorchFunctionMode over one eager forward (milliseconds, no export)."""
    import torch
    from torch.overrides import TorchFunctionMode

    from c3ae_edge.export.deploy import DeployModule

    kinds = {torch.permute, torch.Tensor.permute, torch.transpose, torch.Tensor.transpose, torch.t, torch.Tensor.t,
             torch.swapaxes, torch.Tensor.swapaxes, torch.Tensor.mT.__get__, torch.Tensor.T.__get__}
    count = [0]

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in kinds:
                count[0] += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Count():
        DeployModule(model).eval()(torch.from_numpy(example[:1]))
    return count[0]


def _added(ops: Counter, base_transposes: int | None) -> dict:
    out = {}
    for key, names in _ADDED.items():
        n = sum(ops.get(k, 0) for k in names)
        out[key] = max(0, n - base_transposes) if key == "transpose" and base_transposes is not None else n
    return out


def onnx_report(path: Path) -> dict:
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
    return {"format": "onnx", "ops": dict(ops.most_common()), "nodes": sum(ops.values()), "macc": macc or None, "runtime": _ort_optimised(path)}


def _ort_optimised(path: Path) -> dict:
    """The graph onnxruntime actually executes after ORT_ENABLE_ALL (fusions: QLinearConv, FusedConv, ...), all on the CPU EP."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        return {}
    with tempfile.TemporaryDirectory() as td:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(td) / "opt.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(so.optimized_model_filepath)
    ops = Counter(n.op_type for n in opt.graph.node)
    return {"executor": "onnxruntime CPUExecutionProvider (every node)", "optimised_ops": dict(ops.most_common())}


def tflite_report(path: Path, threads: int = 1) -> dict:
    """Op counts, MACC from tensor shapes, and which ops the default XNNPACK delegate took (the rest run as CPU kernels)."""
    from c3ae_edge.board.onboard import tflite_interpreter

    Interp, _ = tflite_interpreter()
    it = Interp(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    nodes = it._get_ops_details()
    shapes = {int(t["index"]): [int(v) for v in t["shape"]] for t in it.get_tensor_details()}
    orig = [n for n in nodes if n["op_name"] != "DELEGATE"]
    dele = [n for n in nodes if n["op_name"] == "DELEGATE"]
    macc = 0
    for n in orig:
        ins, outs = [int(v) for v in n["inputs"]], [int(v) for v in n["outputs"]]
        o = shapes.get(outs[0]) if outs else None
        w = shapes.get(ins[1]) if len(ins) > 1 else None
        if not o or not w:
            continue
        if n["op_name"] == "CONV_2D":
            macc += math.prod(o) * math.prod(w[1:])
        elif n["op_name"] == "DEPTHWISE_CONV_2D":
            macc += math.prod(o) * w[1] * w[2]
        elif n["op_name"] == "FULLY_CONNECTED":
            macc += math.prod(o) * w[-1]
    taken = _delegated(orig, dele)
    ops = Counter(n["op_name"] for n in orig)
    by_delegate = Counter(n["op_name"] for n in orig if int(n["index"]) in taken)
    on_cpu = Counter(n["op_name"] for n in orig if int(n["index"]) not in taken)
    return {"format": "tflite", "ops": dict(ops.most_common()), "nodes": len(orig), "macc": macc or None,
            "runtime": {"delegate": "XNNPACK (default delegate)" if dele else None, "partitions": len(dele),
                        "delegate_ops": dict(by_delegate.most_common()), "cpu_ops": dict(on_cpu.most_common())}}


def _delegated(orig: list[dict], dele: list[dict]) -> set[int]:
    """Original nodes inside a delegate partition: on a path from the partition's inputs to its outputs."""
    taken: set[int] = set()
    for d in dele:
        d_in, d_out = set(d["inputs"]), set(d["outputs"])
        fwd = set(d_in)
        for n in orig:  # nodes are in topological order
            if fwd & set(n["inputs"]):
                fwd |= set(n["outputs"])
        back = set(d_out)
        for n in reversed(orig):
            if back & set(n["outputs"]):
                back |= set(n["inputs"])
        taken |= {int(n["index"]) for n in orig if set(n["inputs"]) & fwd and set(n["outputs"]) & back and not set(n["outputs"]) & d_in}
    return taken


def openvino_report(path: Path, threads: int = 1) -> dict:
    """Op counts, MACC at batch 1, and the CPU plugin's executed graph: layer types by runtime precision (I8 / FP32 / BF16)."""
    import openvino as ov

    core = ov.Core()
    m = core.read_model(str(path))
    shape = m.inputs[0].get_partial_shape()
    m.reshape([1] + [d.get_length() for d in list(shape)[1:]])
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
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    for op in compiled.get_runtime_model().get_ordered_ops():
        ri = op.get_rt_info()
        lt = ri["layerType"].astype(str)
        if lt in ("Input", "Output", "Const", "Parameter", "Result"):
            continue
        rt[f"{lt}:{ri['runtimePrecision'].astype(str)}"] += 1
    return {"format": "openvino", "ops": dict(ops.most_common()), "nodes": sum(ops.values()), "macc": macc or None,
            "runtime": {"executor": "OpenVINO CPU plugin", "executed_layers_by_precision": dict(sorted(rt.items()))}}


def report(backend: str, path: Path, base_transposes: int | None = None, threads: int = 1) -> dict:
    """The graph report for one artifact; {"error": ...} rather than failing the bench."""
    fn = {"onnx": onnx_report, "tflite": tflite_report, "openvino": openvino_report}.get(backend)
    if fn is None:
        return {}
    try:
        r = fn(path) if backend == "onnx" else fn(path, threads)
    except Exception as e:  # a report must never sink the timing rows
        return {"error": f"{type(e).__name__}: {e}"}
    r["added_by_conversion"] = _added(Counter(r["ops"]), base_transposes)
    r["source_transposes"] = base_transposes
    return r
