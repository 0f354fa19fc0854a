"""One preprocessing spec shared by training, prediction, calibration and every exported artifact.

A face box (centre x, centre y, side, in source pixels, the convention of OpenCV's frontal Haar cascade) becomes
``len(scales)`` nested square boxes around the same centre. Each is cut out with edge padding (clamp the source
coordinates), resized to ``size`` x ``size`` by area averaging, and normalised as (pixel/255 - mean) / std.
Written in plain numpy plus one resize so that a firmware team can port it to C.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# Face-box conventions, measured here against the Haar cascade (see docs/detectors.md):
# UTKFace aligned chips: the cascade's box has its centre at (0.495 W, 0.44 H) and its side at 0.84 W
# (median, 174 chips).
ALIGNED_BOX = (0.495, 0.44, 0.84)
# FG-NET 68-point landmarks: cascade side = 1.13 x the landmark box's longer side, centre 0.146 side above its centre.
LANDMARK_SIDE, LANDMARK_DY = 1.13, -0.146

FaceBox = tuple[float, float, float]


@dataclass(frozen=True)
class CropSpec:
    scales: tuple[float, ...] = (1.2, 0.9, 0.6)
    size: int = 64
    pad: str = "edge"
    color: str = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize: str = "area"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def boxes(self, box: FaceBox) -> list[tuple[int, int, int]]:
        """(x0, y0, side) in integer source pixels for every scale."""
        cx, cy, side = box
        out = []
        for s in self.scales:
            n = max(2, int(round(side * s)))
            out.append((int(round(cx - n / 2)), int(round(cy - n / 2)), n))
        return out

    def crop(self, img: np.ndarray, box: FaceBox) -> np.ndarray:
        """HxWx3 uint8 image -> (n_scales, size, size, 3) uint8 crops."""
        import cv2

        h, w = img.shape[:2]
        crops = []
        for x0, y0, n in self.boxes(box):
            patch = _cut(img, x0, y0, n)
            interp = cv2.INTER_AREA if n >= self.size else cv2.INTER_LINEAR
            crops.append(cv2.resize(patch, (self.size, self.size), interpolation=interp))
        return np.stack(crops)

    def normalize(self, crops: np.ndarray) -> np.ndarray:
        """(..., size, size, 3) uint8 -> (..., 3, size, size) float32."""
        x = crops.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(np.moveaxis(x, -1, -3))

    def model_input(self, img: np.ndarray, box: FaceBox) -> np.ndarray:
        """One face -> the model's input without batch: (3, 64, 64) for one scale, (n, 3, 64, 64) for several."""
        x = self.normalize(self.crop(img, box))
        return x[0] if len(self.scales) == 1 else x


def _span(a0: int, n: int, size: int) -> tuple[slice, tuple[int, int]]:
    """The in-image slice of [a0, a0+n) and how many clamped copies of its edges pad it on each side."""
    lo, hi = max(a0, 0), min(a0 + n, size)
    if hi > lo:
        before = lo - a0
        return slice(lo, hi), (before, n - (hi - lo) - before)
    edge = 0 if a0 + n <= 0 else size - 1
    return slice(edge, edge + 1), (n - 1, 0)


def _cut(img: np.ndarray, x0: int, y0: int, n: int) -> np.ndarray:
    """img[y0:y0+n, x0:x0+n] with every coordinate clamped into the image (edge padding)."""
    ys, ypad = _span(y0, n, img.shape[0])
    xs, xpad = _span(x0, n, img.shape[1])
    patch = img[ys, xs]
    if any(ypad) or any(xpad):
        patch = np.pad(patch, (ypad, xpad, (0, 0)), mode="edge")
    return patch


def aligned_box(width: int, height: int) -> FaceBox:
    """Face box of an aligned face chip (UTKFace convention: the face centred with a margin)."""
    fx, fy, fs = ALIGNED_BOX
    return (fx * width, fy * height, fs * min(width, height))


def landmark_box(points: np.ndarray) -> FaceBox:
    """Face box from 68-point landmarks (eyebrows to chin), mapped onto the detector's convention."""
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    side = LANDMARK_SIDE * max(x1 - x0, y1 - y0)
    return (float((x0 + x1) / 2), float((y0 + y1) / 2 + LANDMARK_DY * side), float(side))


def rect_box(x0: float, y0: float, x1: float, y1: float) -> FaceBox:
    """A detector rectangle -> square face box around its centre."""
    return ((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0))


def spec_for(n_crops: int) -> CropSpec:
    """The default spec of a model taking ``n_crops`` crops: three context scales, or the face box itself."""
    return CropSpec() if n_crops == 3 else CropSpec(scales=(1.0,))


def checked_spec(d: object, where: str) -> CropSpec:
    """A CropSpec from checkpoint or manifest text, every field checked (one DataError naming ``where``)."""

    def nums(v, n=None):
        return (
            isinstance(v, (list, tuple))
            and (n is None or len(v) == n)
            and 0 < len(v) <= 8
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        )

    ok = isinstance(d, dict) and set(d) <= set(CropSpec.__dataclass_fields__)
    ok = ok and nums(d.get("scales", [1.0])) and all(0 < s <= 4 for s in d.get("scales", [1.0]))
    ok = ok and isinstance(d.get("size", 64), int) and 8 <= d.get("size", 64) <= 512
    ok = (
        ok
        and nums(d.get("mean", [0.5] * 3), 3)
        and nums(d.get("std", [0.5] * 3), 3)
        and all(s > 0 for s in d.get("std", [0.5] * 3))
    )
    ok = ok and d.get("pad", "edge") == "edge" and d.get("color", "RGB") == "RGB" and d.get("resize", "area") == "area"
    if not ok:
        from c3ae_edge.errors import DataError

        raise DataError(f"{where}: not a valid crop spec ({str(d)[:120]})")
    return CropSpec.from_dict(d)
