"""TFLite Micro for Cortex-M class parts: a batch-1 int8 trunk graph (run once per crop) + the head in C, in float.

The whole-model int8 file batches the three crops through the trunk, so the first conv's output for all of them is
alive at once (TFLM arena 473,744 bytes). Here the graph takes one crop (1, 64, 64, 3) int8 and ends at the pooled
feature map (1, 2, 2, 32) int8, NHWC at both ends (the SE blocks' MEAN still sits behind TRANSPOSE pairs: the
converter's doing; spelling the squeeze as a pool removes them but cost accuracy, see README). The firmware invokes
it once per crop and runs W1 (384 -> 12, columns reordered to the H, W, C feature order, int8 per row), softmax and
W2 in float: 4.6 K multiply-adds, 4.7 KB of flash. Export measures the smallest working arena under the tflite-micro
interpreter; ``c3ae_edge.export.mcu`` writes the C sources and cross-compiles them when arm-none-eabi-gcc is here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from c3ae_edge.errors import MissingExtraError, UsageError, require
from c3ae_edge.export.backends.base import BackendSpec, Runtime
from c3ae_edge.export.backends.common import module_missing
from c3ae_edge.export.backends.tflm_runtime import SIDECAR, TFLMRunner, remember, smallest_arena

SPEC = BackendSpec(
    name="tflm",
    suffix=".tflite",
    precisions=("int8",),
    runtimes=("tflite-micro",),
    extra="mcu",
    description="TFLite Micro: batch-1 int8 trunk graph (NHWC, run once per crop, aligned flatbuffer) + head in C "
    "(float); C sources: const model arrays, op resolver, crop/quantise/decode library",
    options={"layout": "NHWC", "sidecar": SIDECAR},
    requires=("litert_torch", "ai_edge_litert", "tflite_micro"),
    # tflite-micro (the aligner) is left out to keep the bundles' bytes: its version is in the artifact's runtimes row
    toolchain=("litert-torch", "ai-edge-litert"),
)


def _feature_module(model):
    """One crop NHWC -> the feature map the head reads, NHWC (1, h, w, c): trunk (+ the full model's pool)."""
    import torch.nn as nn

    class Trunk(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.trunk, self.pool = m.trunk, getattr(m, "pool", None)

        def forward(self, x):
            f = self.trunk(x.movedim(-1, -3))
            if self.pool is not None:
                f = self.pool(f)
            return f.movedim(-3, -1)

    return Trunk(model).eval()


def _convert_trunk(model, calibration: np.ndarray) -> bytes:
    import torch

    require("litert_torch", "tflite")
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    crops = calibration.reshape(-1, *calibration.shape[-3:])  # every crop of every face: the trunk sees them one by one
    cal = torch.from_numpy(np.ascontiguousarray(np.moveaxis(crops, -3, -1), np.float32))
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    g = prepare_pt2e(torch.export.export(_feature_module(model), (cal[:1],), strict=True).module(), quantizer)
    with torch.no_grad():
        for i in range(len(cal)):
            g(cal[i : i + 1])
    g = convert_pt2e(g, fold_quantize=False)
    return litert_torch.convert(g, (cal[:1],), quant_config=QuantConfig(pt2e_quantizer=quantizer)).model_content()


def _align(flat: bytes, tmp: Path) -> bytes:
    """Re-serialise through TFLM's C++ flatbuffer API so every buffer sits on its required alignment."""
    try:
        from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as aligner
    except ImportError:
        raise MissingExtraError("mcu", "tflite_micro") from None
    src, dst = tmp.with_suffix(".unaligned"), tmp.with_suffix(".aligned")
    src.write_bytes(flat)
    try:
        aligner.align_tflite_model(str(src), str(dst))
        return dst.read_bytes()
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)


def head_sidecar(model, feat_shape: tuple[int, ...]) -> dict:
    """The head the C library runs: W1 with its columns reordered from the torch flatten order (crop, C, H, W) to the
    graph's (crop, H, W, C), stored int8 per output row (4.6 KB of flash instead of 18 KB) and applied in float."""
    head = model.head
    w1 = head.w1.weight.detach().numpy().astype(np.float64)  # (bins, crops * c * h * w)
    h, w, c = feat_shape
    n = w1.shape[1] // (c * h * w)
    w1 = w1.reshape(-1, n, c, h, w).transpose(0, 1, 3, 4, 2).reshape(w1.shape[0], -1)
    scale = np.abs(w1).max(1) / 127.0
    q = np.clip(np.round(w1 / scale[:, None]), -127, 127).astype(int)
    g = lambda vals: [float(f"{float(v):.9g}") for v in vals]  # noqa: E731
    return {
        "crops": n,
        "feature_shape": [h, w, c],
        "w1_int8": q.tolist(),
        "w1_scale": g(scale.astype(np.float32)),
        "b1": g(head.w1.bias.detach().numpy()),
        "w2": g(head.w2.weight.detach().reshape(-1).numpy()),
        "b2": float(f"{float(head.w2.bias.detach().reshape(-1)[0]):.9g}"),
    }


class TFLMBackend:
    spec = SPEC

    @property
    def runtimes(self) -> tuple[Runtime, ...]:
        return RUNTIMES

    @property
    def bench(self) -> None:
        """Not timed by the host bench: TFLM's reference kernels on a PC say nothing about a microcontroller's
        latency; the export measures what does transfer (arena, flash, RAM: manifest "mcu")."""
        return None

    def export(
        self, model, example: np.ndarray, out_dir: Path, precision: str, calibration: np.ndarray | None, options: dict
    ) -> Path:
        from c3ae_edge.export.backends.tflite_backend import finish

        if precision != "int8":
            raise UsageError(f"tflm: precision {precision!r} is not supported (int8 only)")
        if not (hasattr(model, "trunk") and hasattr(getattr(model, "head", None), "w2")):
            raise UsageError("tflm: needs a C3AE cascade model (trunk + W1/W2 head)")
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 needs calibration data")
        require("tflite_micro", "mcu")  # before the minutes of conversion, not after
        out = Path(out_dir) / f"{options.get('stem', 'model')}_{precision}{SPEC.suffix}"
        flat = _align(finish(_convert_trunk(model, calibration), ["features"], None), out)
        out.write_bytes(flat)
        remember(flat, True)  # until bundle_extras: the engine's check re-runs TFLM on the verification crops
        shape = tuple(int(v) for v in TFLMRunner.details(flat)[1]["shape"][1:])
        out.with_suffix(SPEC.options["sidecar"]).write_text(json.dumps(head_sidecar(model, shape)) + "\n")
        return out

    def load(self, path: Path, threads: int | None = None, options: dict | None = None):
        return TFLMRunner(path)

    def bundle_extras(self, folder: Path, man: dict, log=print, faces=None) -> dict:
        """The target's engine: "c99" (generated engine, built, verified bit-exact, run on emulated cores -> the
        manifest's "engine" section) or "tflm" (arena search, C sources, cross-compiled sizes -> "mcu"). Budgets
        are checked either way. reference_infer.py goes: it cannot run a trunk-only graph."""
        (folder / "reference_infer.py").unlink(missing_ok=True)
        flat = (folder / next(a["file"] for a in man["artifacts"] if a["backend"] == "tflm")).read_bytes()
        try:
            return self._extras(folder, man, log, faces)
        finally:
            remember(flat, False)

    def derived_files(self, man: dict) -> dict:
        """Every file ``bundle_extras`` writes, as a function ``verify`` calls again (``export/mcu/derive.py``)."""
        from c3ae_edge.export.mcu.derive import derived_files

        return derived_files(man)

    def rederive_sections(self, src) -> dict:
        """The "engine" or "mcu" section recomputed from the artifact (``export/mcu/derive.py``)."""
        from c3ae_edge.export.mcu.derive import sections

        return sections(src)

    def _extras(self, folder: Path, man: dict, log, faces) -> dict:
        if (man["target"].get("engine") or "tflm") != "c99":
            from c3ae_edge.export.mcu import write_sources

            return {"mcu": write_sources(folder, man, log)}
        from c3ae_edge.export.engine.bundle import finish_bundle, write_engine

        if faces is None:
            raise UsageError("engine c99: the export's verification faces are needed to verify the engine")
        sec = write_engine(folder, man, faces, log)
        sec["tflm_arena_bytes"] = smallest_arena((folder / sec["generated_from"]).read_bytes())
        finish_bundle(folder, man, sec, log)
        return {"engine": sec}


def _missing() -> str | None:
    return module_missing("tflite_micro", "tflite-micro", "mcu")


RUNTIMES = (
    Runtime(
        "tflite-micro/reference",
        "tflite-micro",
        "reference",
        lambda p, t: TFLMRunner(p),
        _missing,
        "TFLite Micro's Python interpreter on this host: TFLM's "
        "reference kernels (CMSIS-NN on a board must match them)",
    ),
)
BACKEND = TFLMBackend()
