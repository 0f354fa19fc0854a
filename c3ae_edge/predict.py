"""Ages for images, the Python API of ``c3ae-edge predict``: the same pipeline (c3ae_edge/pipeline.py), by default on
the shipped default model's verified artifacts, one thread, no PyTorch."""

from __future__ import annotations

from pathlib import Path

from c3ae_edge.data.imageio import SUPPORTED
from c3ae_edge.errors import DataError
from c3ae_edge.pipeline import AgePipeline, FaceAge, ImageResult, PipelineConfig

__all__ = ["AgePredictor", "FaceAge", "ImageResult", "expand_each", "expand_inputs"]


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders expand to their images (sorted, not recursive)."""
    out: list[Path] = []
    for p, err in expand_each(inputs):
        if err:
            raise DataError(err)
        out.append(p)
    return out


def expand_each(inputs: list[str]) -> list[tuple[Path, str | None]]:
    """(path, None) per image, or (folder, error) for a folder that cannot be listed or holds no image."""
    out: list[tuple[Path, str | None]] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            try:
                found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in SUPPORTED)
            except OSError as e:
                out.append((p, f"{p}: cannot list folder ({e.strerror})"))
                continue
            out.extend((q, None) for q in found) if found else out.append((p, f"{p}: no images in folder"))
        else:
            out.append((p, None))
    return out


class AgePredictor:
    """``AgePredictor().predict_image("photo.jpg")``: boxes (cx, cy, side) and ages. ``runtime="torch"`` (or your
    own ``weights``) runs PyTorch; ``bundle`` runs a pulled bundle's artifact with its crop spec and detector."""

    def __init__(
        self,
        weights: str | None = None,
        model: str | None = None,
        detector: str = "auto",
        runtime: str = "auto",
        threads: int | None = 1,
        bundle: str | None = None,
        precision: str | None = None,
    ):
        cfg = PipelineConfig(bundle, runtime, precision, threads, detector, weights, model)
        self.pipeline = AgePipeline.build(cfg)
        self.spec = self.pipeline.spec

    @property
    def detector(self):
        return self.pipeline.detector

    def predict_image(self, path: str | Path, aligned: bool = False) -> ImageResult:
        return self.pipeline.predict_file(path, aligned)

    def predict(self, inputs: list[str], aligned: bool = False) -> list[ImageResult]:
        return [self.predict_image(p, aligned) for p in expand_inputs(inputs)]
