"""OpenVINO IR: ov.convert_model + ov.save_model, fp32 / fp16-compressed, int8 from a QDQ ONNX with 7-bit weights (head in float)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from c3ae_edge.errors import require
from c3ae_edge.export.backends.base import BackendSpec, Runtime
from c3ae_edge.export.backends.common import META_KEY, decode_outputs, meta_json, module_missing

SPEC = BackendSpec(
    name="openvino", suffix=".xml", precisions=("fp32", "fp16", "int8"), runtimes=("openvino",), extra="openvino",
    description="OpenVINO IR (.xml + .bin), dynamic batch; int8 = u8 activations x 7-bit s8 weights (QDQ, head in float); run with f32 precision hint",
    options={"sidecar": ".bin"},
    requires=("openvino", "onnx", "onnxscript", "onnxruntime"),
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

    def export(self, model, example: np.ndarray, out_dir: Path, precision: str, calibration: np.ndarray | None, options: dict) -> Path:
        ov = require("openvino", "openvino")
        out = Path(out_dir) / f"{options.get('stem', 'model')}_{precision}{SPEC.suffix}"
        m = _int8_model(model, example, calibration, options) if precision == "int8" else _ov_model(model, example)
        if options.get("metadata"):
            m.set_rt_info(meta_json(options["metadata"]), [META_KEY])
        ov.save_model(m, str(out), compress_to_fp16=precision == "fp16")
        return out

    def load(self, path: Path, threads: int | None = None, options: dict | None = None):
        return OpenVINORunner(path, threads, (options or {}).get("device", "CPU"))


class OpenVINORunner:
    """Compiled model; ``INFERENCE_PRECISION_HINT=f32`` or this CPU silently runs "fp32" in bf16."""

    def __init__(self, path: Path, threads: int | None = None, device: str = "CPU"):
        ov = require("openvino", "openvino")
        core = ov.Core()
        m = core.read_model(str(path))
        cfg = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(m, device, cfg)
        self.input_name = m.inputs[0].get_any_name()
        self.output_names = tuple(o.get_any_name() for o in m.outputs)
        self.meta = json.loads(m.get_rt_info([META_KEY]).astype(str)) if m.has_rt_info([META_KEY]) else {}
        self.request = self.compiled.create_infer_request()

    def io(self) -> dict:
        def row(p):
            return {"name": p.get_any_name(), "shape": [d.get_length() if d.is_static else -1 for d in p.get_partial_shape()], "dtype": "float32"}
        i = self.compiled.inputs[0]
        return {"input": {**row(i), "layout": "NSCHW" if len(i.get_partial_shape()) == 5 else "NCHW"}, "outputs": [row(o) for o in self.compiled.outputs]}

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return {name: np.array(res[self.compiled.outputs[i]]) for i, name in enumerate(self.output_names)}

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return decode_outputs(self.raw(x), self.meta)


def _ov_missing() -> str | None:
    return module_missing("openvino", "openvino", "openvino")


RUNTIMES = (
    Runtime("openvino/cpu", "openvino", "cpu", lambda p, t: OpenVINORunner(p, t), _ov_missing,
            "OpenVINO CPU plugin, INFERENCE_PRECISION_HINT=f32 (int8 layers run in u8/i8)"),
)
BACKEND = OpenVINOBackend()
