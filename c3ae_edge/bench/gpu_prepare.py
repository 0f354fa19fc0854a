"""Each variant of c3ae_edge.bench.gpu_forms made ready to time: one static input tensor on the device and one
forward that reads it and returns the ages. Modules are converted once per variant and kept for every batch; a CUDA
graph is captured per batch."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c3ae_edge.bench.gpu_forms import ORT_FORMS, Variant

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class Prepared:
    x: object  # the static input tensor the forward reads: parity copies faces into it
    forward: Callable[[], object]  # one forward -> the ages tensor (b,)
    info: dict = field(default_factory=dict)  # what the form is: folds, cuDNN fused ReLU, compile seconds, provider
    load_s: float = 0.0


def dtype_of(precision: str):
    import torch

    return getattr(torch, DTYPES[precision])


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def device_input(x: np.ndarray, device, v: Variant):
    """Faces as the variant's input: on the device, in its dtype (ONNX Runtime: fp32) and memory format."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x)).to(device, torch.float32 if v.ort else dtype_of(v.precision))
    return t.contiguous(memory_format=torch.channels_last) if v.channels_last else t


class Forms:
    """The converted module (or session maker) per variant, built on first use and kept for every batch."""

    def __init__(self, model, device, tmp: Path):
        self.model, self.device, self.tmp = model, device, Path(tmp)
        self.modules: dict = {}
        self.onnx: Path | None = None

    def prepare(self, v: Variant, x_batch: np.ndarray) -> Prepared:
        t = time.perf_counter()
        x = device_input(x_batch, self.device, v)
        if v.ort:
            p = self._ort(v, x)
        else:
            mod, info = self._module(v, x)
            if v.graph:
                p = Prepared(x, _graphed(mod, x), info)
            else:
                p = Prepared(x, _eager(mod, x), info)
        p.forward()  # the first call (compiles, builds an engine) counts as load
        sync(self.device)
        p.load_s = time.perf_counter() - t
        return p

    def _module(self, v: Variant, x):
        key = (v.form, v.precision, v.channels_last)
        if key not in self.modules:
            self.modules[key] = _build(self.model, v, self.device, x)
        return self.modules[key]

    def _ort(self, v: Variant, x) -> Prepared:
        if self.onnx is None:
            self.onnx = bundle_onnx(self.model, self.tmp)
        return ort_prepared(self.onnx, v, x, self.tmp)


def _build(model, v: Variant, device, x) -> tuple[object, dict]:
    """The variant's module on the device: eager copy, fused form, or the fused form compiled."""
    import torch

    from c3ae_edge.models.fuse import inference_form

    if v.form == "eager":
        m, info = copy.deepcopy(model).eval(), {"form": "eager"}
    else:
        m = inference_form(model, pool_into_conv=v.form.endswith("-pool"))
        info = {"form": v.form, "folds": vars(m.form_notes).copy()}
    m = m.to(device, dtype_of(v.precision))
    if v.channels_last:
        m = m.to(memory_format=torch.channels_last)
    if v.form in ("fused", "fused-pool") and device.type == "cuda":
        info["fused_kernels"] = _try_fused_kernels(m, x)
    if v.form.startswith("compiled"):
        m, info["compile"] = _compiled(m, x)
    if v.form == "torch-tensorrt":
        m, info["compile"] = _torch_tensorrt(m, x, v)
    return m, info


def _try_fused_kernels(m, x) -> int | str:
    """Use the single-kernel calls (cuDNN conv + bias + ReLU, cuBLASLt linear + ReLU) where they run and agree with
    the plain ops; else say why not."""
    import torch

    from c3ae_edge.models.fuse import use_fused_kernels

    with torch.inference_mode():
        ref = m(x[:1]).float()
        n = use_fused_kernels(m, True)
        try:
            got = m(x[:1]).float()
            ok = bool(torch.allclose(got, ref, rtol=1e-2, atol=1e-2))
        except RuntimeError as e:
            ok, why = False, f"refused: {str(e).splitlines()[0][:120]}"
        else:
            why = "the fused calls' result differed: off"
    if not ok:
        use_fused_kernels(m, False)
        return why
    return n


def _compiled(m, x) -> tuple[object, dict]:
    """torch.compile (inductor, fixed shapes; freezing: weights become constants). Compiles on the first call."""
    import torch

    t = time.perf_counter()
    c = torch.compile(m, dynamic=False, options={"freezing": True})
    with torch.inference_mode():
        c(x)  # compile now, so the row's load time is the compile time of its first shape
    return c, {"backend": "inductor", "freezing": True, "first_shape_s": round(time.perf_counter() - t, 2)}


def _torch_tensorrt(m, x, v: Variant) -> tuple[object, dict]:
    import torch
    import torch_tensorrt

    t = time.perf_counter()
    c = torch_tensorrt.compile(m, ir="dynamo", inputs=[x], enabled_precisions={dtype_of(v.precision), torch.float32})
    secs = round(time.perf_counter() - t, 2)
    return c, {"backend": "torch_tensorrt", "version": torch_tensorrt.__version__, "s": secs}


def _eager(m, x) -> Callable[[], object]:
    import torch

    def forward():
        with torch.inference_mode():
            return m(x)

    return forward


def _graphed(m, x) -> Callable[[], object]:
    """Capture one forward into a CUDA graph (after warm-up on a side stream); the call replays it."""
    import torch

    with torch.inference_mode():
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                m(x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = m(x)

    def forward():
        g.replay()
        return out

    return forward


def bundle_onnx(model, tmp: Path) -> Path:
    """The fp32 ONNX the ``gpu`` bundle ships for this model (the ONNX backend's export, head weights as metadata),
    by export's conversion step (c3ae_edge.export.convert)."""
    from c3ae_edge.export.backends.common import head_weights
    from c3ae_edge.export.convert import convert
    from c3ae_edge.export.registry import get_backend

    x1 = np.zeros((1, *model.cfg.input_shape), np.float32)
    decode = head_weights(model)
    opts = {"stem": f"{model.cfg.name}_onnx", "metadata": {"decode": decode} if decode else {}}
    return convert(get_backend("onnx"), model, x1, Path(tmp), "fp32", None, opts).path


def ort_prepared(path: Path, v: Variant, x, tmp: Path) -> Prepared:
    """An ONNX Runtime session on the provider, input and outputs bound to tensors on the device (no copies)."""
    import onnxruntime as ort
    import torch

    shape = "x".join(map(str, x.shape))
    ep = ORT_FORMS[v.form]
    opts = {
        "TensorrtExecutionProvider": {
            "trt_fp16_enable": v.precision == "fp16",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(tmp / "trt"),
            **{f"trt_profile_{k}_shapes": f"input:{shape}" for k in ("min", "opt", "max")},
        },
        "CUDAExecutionProvider": {"device_id": x.device.index or 0},
    }
    providers = [(ep, opts[ep])] if ep else []
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=providers + ["CPUExecutionProvider"])
    b = x.shape[0]
    outs = {o.name: torch.empty((b, 12) if o.name == "bins" else (b,), device=x.device) for o in sess.get_outputs()}
    io = sess.io_binding()
    kind, idx = x.device.type, x.device.index or 0
    io.bind_input("input", kind, idx, np.float32, tuple(x.shape), x.data_ptr())
    for name, t in outs.items():
        io.bind_output(name, kind, idx, np.float32, tuple(t.shape), t.data_ptr())

    def forward():
        sess.run_with_iobinding(io)
        return outs["age"]

    info = {"form": v.form, "onnx": path.name, "providers": sess.get_providers(), "ort": ort.__version__}
    return Prepared(x, forward, info)
