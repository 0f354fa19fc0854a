"""Ages for images: detect faces (or take aligned crops), apply the model's CropSpec, run the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from c3ae_edge.data.crops import aligned_box
from c3ae_edge.data.imageio import SUPPORTED, load_scaled
from c3ae_edge.errors import C3AEError, DataError


@dataclass
class FaceAge:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    age: float
    score: float | None = None


@dataclass
class ImageResult:
    file: str
    faces: list[FaceAge] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error:
            return {"file": self.file, "error": self.error}
        return {
            "file": self.file,
            "faces": [
                {
                    "box": list(f.box),
                    "age": round(f.age, 2),
                    **({"score": round(f.score, 3)} if f.score is not None else {}),
                }
                for f in self.faces
            ],
        }


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
    """Python API mirroring ``c3ae-edge predict``."""

    def __init__(self, weights: str | None = None, model: str | None = None, detector: str = "auto"):
        from c3ae_edge.weights import load_model

        self.model, self.spec, self.checkpoint = load_model(weights, model)
        self._detector_name = detector
        self._detector = None

    @property
    def detector(self):
        if self._detector is None:
            from c3ae_edge.data.detect import get_detector

            self._detector = get_detector(self._detector_name)
        return self._detector

    def ages_for_boxes(self, img: np.ndarray, boxes) -> list[float]:
        if not boxes:
            return []
        x = np.stack([self.spec.model_input(img, b) for b in boxes])
        with torch.no_grad():
            return [float(a) for a in self.model(torch.from_numpy(x))]

    def predict_image(self, path: str | Path, aligned: bool = False) -> ImageResult:
        res = ImageResult(str(path))
        try:
            img, k = load_scaled(path)
            if aligned:
                boxes, scores = [aligned_box(img.shape[1], img.shape[0])], [None]
            else:
                dets = self.detector.detect(img)
                if not dets:
                    raise DataError(f"{path}: no face found (use --aligned for face crops)")
                boxes, scores = [d.box for d in dets], [d.score for d in dets]
            ages = self.ages_for_boxes(img, boxes)
            if not np.isfinite(ages).all():
                raise DataError(
                    f"{path}: the model's age is not finite ({ages[0]}): the weights {self.checkpoint.path} overflow"
                )
            for b, a, s in zip(boxes, ages, scores):
                cx, cy, side = (v / k for v in b)  # source pixels, whatever size the image was decoded at
                res.faces.append(
                    FaceAge(
                        (
                            int(round(cx - side / 2)),
                            int(round(cy - side / 2)),
                            int(round(cx + side / 2)),
                            int(round(cy + side / 2)),
                        ),
                        a,
                        s,
                    )
                )
        except C3AEError as e:
            res.error = str(e)
        return res

    def predict(self, inputs: list[str], aligned: bool = False) -> list[ImageResult]:
        return [self.predict_image(p, aligned) for p in expand_inputs(inputs)]
