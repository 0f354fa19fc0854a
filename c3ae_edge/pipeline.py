"""Photo to age, the one pipeline: decode, detect, crop (the artifact set's CropSpec), and every face of the image
through the age network in one call. ``c3ae-edge predict`` runs it on photos and video frames, and the bench's
photo-to-age rows and bench/scripts/photo_to_age.py time this same object stage by stage. Torch-free unless the
``torch`` runtime is asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c3ae_edge.data.crops import CropSpec, FaceBox, aligned_box
from c3ae_edge.errors import C3AEError, DataError, UsageError

STAGES = ("decode", "detect", "crop", "age")


@dataclass
class FaceAge:
    box: FaceBox  # (cx, cy, side) in source pixels: the face-box convention of every document and manifest
    age: float
    score: float | None = None

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "age": round(self.age, 2),
            **({"score": round(self.score, 3)} if self.score is not None else {}),
        }


@dataclass
class ImageResult:
    file: str
    faces: list[FaceAge] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "faces": [f.to_dict() for f in self.faces]}


@dataclass(frozen=True)
class PipelineConfig:
    """What ``predict`` was asked for. ``threads`` None leaves every runtime at its own default (the old torch path,
    kept for side-by-side runs); ``weights``/``model`` other than the shipped artifacts run in PyTorch."""

    bundle: str | None = None
    runtime: str = "auto"
    precision: str | None = None
    threads: int | None = 1
    detector: str = "auto"
    weights: str | None = None
    model: str | None = None


class AgePipeline:
    """Stages as methods (``decode``, ``detect``, ``crops``, ``ages``), so that a bench times exactly these calls."""

    def __init__(self, engine, spec: CropSpec, make_detector, threads: int | None, aset=None):
        self.engine, self.spec, self.threads, self.artifacts = engine, spec, threads, aset
        self._make_detector, self._detector = make_detector, None

    @classmethod
    def build(cls, cfg: PipelineConfig = PipelineConfig()) -> AgePipeline:
        from c3ae_edge.age_engine import open_engine, torch_engine

        if cfg.threads is not None:
            if cfg.threads < 1:
                raise UsageError(f"--threads {cfg.threads}: must be >= 1")
            import cv2

            cv2.setNumThreads(cfg.threads)
        aset, runtime = _artifacts_for(cfg)
        if aset is None:
            engine = torch_engine(cfg.weights, None, cfg.threads, cfg.model)
        else:
            engine = open_engine(aset, runtime, cfg.precision, cfg.threads or 1, cfg.weights)
        spec = engine.spec or aset.spec

        def detector():
            from c3ae_edge.data.detect import detector_for, get_detector

            if aset is None:
                return get_detector(cfg.detector, cfg.threads or 1)
            return detector_for(aset.detector, aset.detector_model(), cfg.detector, cfg.threads or 1)

        return cls(engine, spec, detector, cfg.threads, aset)

    @property
    def detector(self):
        if self._detector is None:
            self._detector = self._make_detector()
        return self._detector

    def decode(self, path: str | Path) -> tuple[np.ndarray, float]:
        from c3ae_edge.data.imageio import load_scaled

        return load_scaled(path, fast_jpeg=True)

    def detect(self, img: np.ndarray) -> list:
        return self.detector.detect(img)

    def crops(self, img: np.ndarray, boxes) -> np.ndarray:
        """(faces, crops, 3, size, size) float32 (crops axis dropped for a one-crop model), ready for ``ages``."""
        if not boxes:
            return np.zeros((0, *_shape(self.spec)), np.float32)
        return np.stack([self.spec.model_input(img, b) for b in boxes])

    def ages(self, x: np.ndarray) -> np.ndarray:
        return self.engine.ages(x)

    def faces(self, img: np.ndarray, boxes=None, scores=None) -> list[FaceAge]:
        """Ages of the faces in ``img`` (detected unless ``boxes`` are given), largest first."""
        if boxes is None:
            dets = self.detect(img)
            boxes, scores = [d.box for d in dets], [d.score for d in dets]
        ages = self.ages(self.crops(img, boxes))
        scores = scores or [None] * len(ages)
        return [FaceAge(tuple(map(float, b)), float(a), s) for b, a, s in zip(boxes, ages, scores)]

    def predict_file(self, path: str | Path, aligned: bool = False) -> ImageResult:
        """One image file -> its faces, or its error (the error names the file once)."""
        res = ImageResult(str(path))
        try:
            img, k = self.decode(path)
            boxes = [aligned_box(img.shape[1], img.shape[0])] if aligned else None
            faces = self.faces(img, boxes, [None] if aligned else None)
            if not faces:
                raise DataError(f"{path}: no face found (use --aligned for face crops)")
            bad = [f.age for f in faces if not np.isfinite(f.age)]
            if bad:
                raise DataError(f"{path}: the model's age is not finite ({bad[0]}): the weights overflow")
            res.faces = [FaceAge(tuple(v / k for v in f.box), f.age, f.score) for f in faces]
        except C3AEError as e:
            res.error = str(e)
        return res

    def describe(self) -> dict:
        """What runs: runtime, artifact, precision, threads, detector, and where the artifacts come from."""
        src = self.artifacts.where if self.artifacts is not None and self.engine.info.artifact else None
        return {**self.engine.info.to_dict(), "artifacts": src, "detector": type(self.detector).__name__}


def _shape(spec: CropSpec) -> tuple[int, ...]:
    n = len(spec.scales)
    return (3, spec.size, spec.size) if n == 1 else (n, 3, spec.size, spec.size)


def _artifacts_for(cfg: PipelineConfig):
    """(artifact set or None for weights-only, runtime): a bundle, else the shipped artifacts of the model; weights
    given, or a model without shipped artifacts, run in PyTorch."""
    from c3ae_edge import artifact_set

    own_weights = cfg.weights not in (None, "default")
    if cfg.bundle:
        if own_weights and cfg.runtime != "torch":
            raise UsageError("--weights runs in PyTorch: add --runtime torch (a bundle's artifacts are its own)")
        return artifact_set.bundle(cfg.bundle), cfg.runtime
    if own_weights:
        if cfg.runtime not in ("auto", "torch"):
            raise UsageError("--weights runs in PyTorch (--runtime torch); export a bundle to run them elsewhere")
        return None, "torch"
    try:
        return artifact_set.shipped(cfg.model or artifact_set.DEFAULT_MODEL), cfg.runtime
    except UsageError:
        if cfg.runtime not in ("auto", "torch"):
            raise
        return None, "torch"  # a registered model with shipped weights but no shipped artifacts
