"""The forms a PyTorch-forms bench row times (``--device cuda``, or ``--variants`` on the CPU), each prepared into one
static input and one forward call:

- ``eager``: the model as trained; ``fused``: its inference form (c3ae_edge.models.fuse: BatchNorm folded, ReLU in the
  convolution's call, conv5 in W1); ``fused-pool``: that plus each 2x2 pool folded into the next convolution;
  ``compiled`` / ``compiled-pool``: those forms through ``torch.compile`` (inductor, fixed shapes, freezing);
- ``+graph``: the forward captured once into a CUDA graph of our own and replayed (CUDA only);
  ``+cl``: channels-last memory format (4-D inputs);
- ``ort-tensorrt`` / ``ort-cuda`` / ``ort-cpu``: ONNX Runtime's TensorRT, CUDA or CPU provider on the fp32 ONNX the
  ``gpu`` bundle ships, inputs and outputs bound to device tensors; ``torch-tensorrt``: torch_tensorrt on the fused
  form. Optional: used when installed, else the variant is skipped with one line saying why.

A variant is written ``FORM[+graph][+cl]:PRECISION`` (``fused+graph+cl:fp16``); named sets expand to lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from c3ae_edge.errors import UsageError

TORCH_FORMS = ("eager", "fused", "fused-pool", "compiled", "compiled-pool")
ONNX_MAX_BATCH = 4096  # the ONNX export's dynamic batch axis (c3ae_edge/export/backends/onnx_backend.py)
ORT_FORMS = {"ort-tensorrt": "TensorrtExecutionProvider", "ort-cuda": "CUDAExecutionProvider", "ort-cpu": None}
OTHER_FORMS = ("torch-tensorrt",)
PRECISIONS = ("fp32", "fp16", "bf16")
TOLERANCE_Y = {"fp32": 0.01, "fp16": 0.5, "bf16": 0.5}  # ages vs CPU fp32 PyTorch on the real faces

SETS = {
    # the default --device cuda run: the table re-measured, and the fused form beside it (no compiling)
    "default": (
        "eager:fp32",
        "eager:fp16",
        "graph:fp32",
        "graph:fp16",
        "graph:bf16",
        "graph+cl:fp16",
        "fused+graph:fp32",
        "fused+graph:fp16",
        "fused+graph+cl:fp16",
    ),
    # batch-1 latency of the fast path
    "fast-latency": (
        "fused+graph:fp32",
        "fused+graph:fp16",
        "fused+graph+cl:fp16",
        "fused-pool+graph:fp32",
        "fused-pool+graph:fp16",
        "compiled+graph:fp32",
        "compiled-pool+graph:fp32",
        "compiled+graph+cl:fp16",
        "ort-tensorrt:fp32",
        "ort-tensorrt:fp16",
        "ort-cuda:fp32",
        "torch-tensorrt:fp16",
    ),
    # large-batch throughput of the fast path
    "fast-throughput": (
        "fused+graph+cl:fp16",
        "fused+graph+cl:bf16",
        "fused-pool+graph+cl:fp16",
        "compiled+graph+cl:fp16",
        "compiled-pool+graph+cl:fp16",
        "ort-tensorrt:fp16",
    ),
}


@dataclass(frozen=True)
class Variant:
    form: str
    precision: str
    graph: bool = False
    channels_last: bool = False

    @property
    def spec(self) -> str:
        flags = ("+graph" if self.graph else "") + ("+cl" if self.channels_last else "")
        return f"{self.form}{flags}:{self.precision}"

    @property
    def name(self) -> str:
        """The row's mode, e.g. ``fused cuda-graph channels-last`` (``cuda-graph`` alone for the eager model)."""
        parts = [] if self.form == "eager" and self.graph else [self.form]
        parts += ["cuda-graph"] if self.graph else []
        return " ".join(parts + (["channels-last"] if self.channels_last else []))

    @property
    def ort(self) -> bool:
        return self.form in ORT_FORMS


def parse_variant(text: str) -> Variant:
    form, _, prec = text.strip().partition(":")
    parts = form.split("+")
    base, flags = parts[0], set(parts[1:])
    if base == "graph":  # "graph:fp32" is the eager model in a CUDA graph
        base, flags = "eager", flags | {"graph"}
    known = (*TORCH_FORMS, *ORT_FORMS, *OTHER_FORMS)
    if base not in known or not flags <= {"graph", "cl"} or prec not in PRECISIONS:
        raise UsageError(
            f"--variants {text!r}: write FORM[+graph][+cl]:PRECISION with FORM one of {', '.join(known)} and "
            f"PRECISION one of {', '.join(PRECISIONS)}, or a set: {', '.join(SETS)}"
        )
    if base in ORT_FORMS or base in OTHER_FORMS:
        flags = set()
    if base == "ort-cuda" or base == "ort-cpu":
        if prec != "fp32":
            raise UsageError(f"--variants {text!r}: {base} runs the fp32 ONNX (fp32 only)")
    return Variant(base, prec, "graph" in flags, "cl" in flags)


def parse_variants(names: list[str], device: str) -> list[Variant]:
    """Names and sets -> variants, in order, without repeats. On the CPU a set drops its CUDA graphs and its CUDA
    runtimes; a CUDA-only variant named by itself is refused."""
    out: list[Variant] = []
    for name in names:
        for text in SETS.get(name.strip(), (name,)):
            v = parse_variant(text)
            if device != "cuda" and (v.graph or v.form in ("ort-tensorrt", "ort-cuda", "torch-tensorrt")):
                if name.strip() not in SETS:
                    raise UsageError(f"--variants {text}: needs --device cuda")
                v = Variant(v.form, v.precision, False, v.channels_last) if not v.ort else Variant("ort-cpu", "fp32")
                if v.form == "torch-tensorrt":
                    continue
            if v not in out:
                out.append(v)
    return out


def applies(v: Variant, model, batch: int) -> str | None:
    """Why the variant does not apply to this model at this batch (None: it does)."""
    if v.channels_last and len(model.cfg.input_shape) != 3:
        return "channels-last is a 4-D layout; this model takes a 5-D crop stack"
    if v.form.endswith("-pool"):
        from c3ae_edge.models.fuse import inference_form

        if not inference_form(model, pool_into_conv=True).form_notes.pools_into_conv:
            return "no 2x2 pool followed by a convolution: the same form without -pool"
    if v.ort and batch > ONNX_MAX_BATCH:
        return f"the gpu bundle's ONNX takes batches up to {ONNX_MAX_BATCH}"
    return None


def missing(v: Variant) -> str | None:
    """Why an optional runtime variant cannot run here (None: it can)."""
    import importlib.util

    if v.ort:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        import onnxruntime

        ep = ORT_FORMS[v.form]
        if ep and ep not in onnxruntime.get_available_providers():
            return f"this onnxruntime ({onnxruntime.__version__}) has no {ep}"
    if v.form == "torch-tensorrt" and importlib.util.find_spec("torch_tensorrt") is None:
        return "torch_tensorrt is not installed"
    return None
