"""OpenVINO IR: ov.convert_model + ov.save_model, fp32 / fp16-compressed, int8 by NNCF (head in float)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from c3ae_edge.errors import require
from c3ae_edge.export.backends.base import BackendSpec
from c3ae_edge.export.backends.common import META_KEY, decode_outputs, meta_json

SPEC = BackendSpec(
    name="openvino", suffix=".xml", precisions=("fp32", "fp16", "int8"), runtimes=("openvino",), extra="openvino",
    description="OpenVINO IR (.xml + .bin), dynamic batch; int8 = NNCF post-training quantisation, head in float; run with f32 precision hint",
    options={"sidecar": ".bin"},
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


class OpenVINOBackend:
    spec = SPEC

    def export(self, model, example: np.ndarray, out_dir: Path, precision: str, calibration: np.ndarray | None, options: dict) -> Path:
        ov = require("openvino", "openvino")
        out = Path(out_dir) / f"{options.get('stem', 'model')}_{precision}{SPEC.suffix}"
        m = _ov_model(model, example)
        if precision == "int8":
            nncf = require("nncf", "openvino")
            import logging

            nncf.set_log_level(logging.ERROR)  # NNCF logs progress to stdout, which is the CLI's
            if calibration is None or len(calibration) == 0:
                raise ValueError("int8 needs calibration data")
            items = [calibration[i:i + 1].astype(np.float32) for i in range(len(calibration))]
            ignored = nncf.IgnoredScope(patterns=[".*head.*"], validate=False) if options.get("head_float", True) else None
            kw = {"ignored_scope": ignored} if ignored else {}
            m = nncf.quantize(m, nncf.Dataset(items), subset_size=len(items), preset=nncf.QuantizationPreset.MIXED, **kw)
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

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        outs = {name: np.array(res[self.compiled.outputs[i]]) for i, name in enumerate(self.output_names)}
        return decode_outputs(outs, self.meta)


BACKEND = OpenVINOBackend()
