"""The age network behind one call: every face of an image in, one age per face out, on a verified artifact under
the fastest usable runtime (or the one asked for), with its thread count set here, never left to a default.

Runtimes, fastest first for each artifact format (bench/results; docs/predict.md): TFLite under ai-edge-litert's
XNNPACK delegate, then tflite-runtime's kernels (a board that has only that); ONNX under onnxruntime; OpenVINO IR
under OpenVINO. ``torch`` runs the weights in PyTorch eager (the ``train`` extra): the reference the artifacts are
verified against, and the old ``predict`` path kept for side-by-side runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from c3ae_edge.artifact_set import ArtifactSet
from c3ae_edge.data.crops import CropSpec
from c3ae_edge.errors import MissingExtraError, UsageError

# what --runtime accepts -> runtime id (the ids `c3ae-edge runtimes` lists)
ALIASES = {
    "litert": "ai-edge-litert/xnnpack",
    "ai-edge-litert": "ai-edge-litert/xnnpack",
    "tflite-runtime": "tflite-runtime/builtin",
    "onnxruntime": "onnxruntime/cpu",
    "openvino": "openvino/cpu",
    "torch": "torch/eager",
}
AUTO_ORDER = {  # per artifact format, the order ``auto`` tries: the fastest usable first
    "tflite": ("ai-edge-litert/xnnpack", "tflite-runtime/builtin"),
    "onnx": ("onnxruntime/cpu",),
    "openvino": ("openvino/cpu",),
}
RUNTIME_CHOICES = ("auto", *ALIASES, "ai-edge-litert/builtin")


@dataclass(frozen=True)
class EngineInfo:
    runtime: str  # runtime id, e.g. "ai-edge-litert/xnnpack", "torch/eager"
    version: str | None
    artifact: str | None  # the artifact's file (None: the weights in PyTorch)
    precision: str
    threads: int | None  # None: the runtime's own default (the old torch path only)
    tolerance_years: float | None  # the artifact's verified per-face bound against PyTorch
    batched: bool  # True: one runtime call per image; False: the graph is batch 1, one invoke per face

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class AgeEngine:
    info: EngineInfo
    run: Callable[[np.ndarray], np.ndarray]  # (faces, crops, 3, H, W) float32 -> (faces,) ages
    spec: CropSpec | None = None  # the crops these weights take, when not the artifact set's (torch, --weights)

    def ages(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros(0)
        return np.asarray(self.run(np.ascontiguousarray(x, np.float32)), np.float64).reshape(-1)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _tflite_runtime_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("tflite_runtime") is None:
        return "tflite-runtime is not installed"
    if int(np.__version__.split(".")[0]) >= 2:
        return f'tflite-runtime needs numpy<2 (numpy {np.__version__} is installed: pip install "numpy<2")'
    return None


def _litert_missing() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("ai_edge_litert") else "ai-edge-litert is not installed"


def _tflite_opener(rid: str):
    """(open(path, threads) -> runner, missing() -> reason | None) for an in-process TFLite interpreter."""
    from c3ae_edge.export.backends.tflite_backend import TFLiteRunner

    if rid == "tflite-runtime/builtin":  # tflite-runtime's default resolver: its XNNPACK skips int8, built-ins run
        return (lambda p, t: TFLiteRunner(p, t, "tflite-runtime", "default")), _tflite_runtime_missing
    if rid not in ("ai-edge-litert/xnnpack", "ai-edge-litert/builtin"):
        raise UsageError(f"--runtime {rid}: does not run tflite artifacts (litert, tflite-runtime or torch do)")
    delegate = rid.split("/")[1]
    return (lambda p, t: TFLiteRunner(p, t, "ai-edge-litert", delegate)), _litert_missing


def _opener(backend: str, rid: str):
    if backend == "tflite":
        return _tflite_opener(rid)
    from c3ae_edge.export.registry import get_backend

    rt = next((r for r in get_backend(backend).runtimes if r.id == rid), None)
    if rt is None:
        raise UsageError(f"--runtime {rid}: does not run {backend} artifacts")
    return rt.open, rt.missing


def resolve(aset: ArtifactSet, runtime: str) -> str:
    """``runtime`` (alias or id) -> the runtime id to open: ``auto`` picks the first usable of AUTO_ORDER."""
    if runtime == "auto":
        order = AUTO_ORDER.get(aset.backend, ())
        for rid in order:
            if _opener(aset.backend, rid)[1]() is None:
                return rid
        why = "; ".join(filter(None, (_opener(aset.backend, r)[1]() for r in order))) or "none known"
        raise UsageError(f"no runtime here runs {aset.where}'s {aset.backend} artifacts ({why})")
    rid = ALIASES.get(runtime, runtime)
    if rid not in (*ALIASES.values(), "ai-edge-litert/builtin"):
        raise UsageError(f"--runtime {runtime}: use one of {', '.join(RUNTIME_CHOICES)}")
    return rid


def open_engine(
    aset: ArtifactSet, runtime: str = "auto", precision: str | None = None, threads: int = 1, weights: str | None = None
) -> AgeEngine:
    """The age network of ``aset`` (its primary artifact unless ``precision``) under ``runtime``; ``torch`` runs
    ``weights`` (default: the shipped weights of the set's model, which must be the weights it was exported from)."""
    rid = resolve(aset, runtime)
    if rid == "torch/eager":
        return torch_engine(weights, aset, threads)
    art = aset.artifact(precision)
    return _open(aset.backend, rid, aset.path(art), art["precision"], threads, aset.spec, float(art["tolerance_years"]))


def file_engine(backend: str, path, precision: str, threads: int, spec: CropSpec, runtime: str | None = None):
    """An artifact file outside any manifest (the bench's own exports) under its format's first runtime."""
    rid = ALIASES.get(runtime, runtime) if runtime else AUTO_ORDER[backend][0]
    return _open(backend, rid, path, precision, threads, spec, None)


def _open(backend: str, rid: str, path, precision: str, threads: int, spec: CropSpec, tolerance: float | None):
    opener, missing = _opener(backend, rid)
    why = missing()
    if why:
        raise UsageError(f"--runtime {rid}: cannot run here ({why})")
    from c3ae_edge.native_quiet import drop_runtime_info

    with drop_runtime_info():
        runner = opener(path, threads)
        runner.run(np.zeros((1, *_input_shape(spec)), np.float32))  # first call outside the timed path
    version = _version(rid.split("/")[0])
    info = EngineInfo(rid, version, Path(path).name, precision, threads, tolerance, backend != "tflite")
    return AgeEngine(info, lambda x: runner.run(x)["age"])


def _input_shape(s: CropSpec) -> tuple[int, ...]:
    return (3, s.size, s.size) if len(s.scales) == 1 else (len(s.scales), 3, s.size, s.size)


def torch_engine(weights: str | None, aset: ArtifactSet | None, threads: int | None, model: str | None = None):
    """The weights in PyTorch eager, ``threads`` intra-op threads (None: PyTorch's default, the old path)."""
    try:
        import torch
    except ImportError:
        raise MissingExtraError("train", "torch") from None
    from c3ae_edge.weights import load_model, sha256_file

    default = weights in (None, "default")
    net, spec, ck = load_model(weights, model or (aset.model if aset and default else None))
    if aset is not None and default:
        want = aset.manifest.model.get("weights_sha256")
        if want and sha256_file(ck.path) != want:
            raise UsageError(f"{aset.where} was exported from other weights; pass --weights FILE with --runtime torch")
    if threads:
        torch.set_num_threads(threads)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    info = EngineInfo("torch/eager", torch.__version__, None, "fp32", threads, 0.0, True)
    return AgeEngine(info, run, spec)
