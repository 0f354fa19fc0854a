"""Coarse face finding with OpenCV's frontal Haar cascade: the same cascade and box convention as ``HaarDetector``
(c3ae_edge/data/detect.py), at about a tenth of the cost on a camera frame.

The grey frame is shrunk so that the smallest face searched for (``min_face_frac`` of the shorter side, at least
``min_face_px``) becomes the cascade's 24-pixel window, then searched with scale step 1.1 up to the whole frame: the
search costs about the same at any frame size. Optionally (``refine_px`` > 0) each box is searched again at finer
scale steps in a small region around it; measured on FG-NET it did not improve boxes or MAE, so it is off.

Standalone on purpose (numpy + OpenCV only): the on-board runner imports this file as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 24  # haarcascade_frontalface_default.xml's window
CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class CoarseFineParams:
    min_face_frac: float = 0.2  # smallest face: 20% of the frame's shorter side (96 px at 640x480, 144 at 1280x720)
    min_face_px: int = 40
    coarse_step: float = 1.1
    coarse_neighbours: int = 3
    refine_px: int = (
        0  # > 0: refine each box with the face brought to at most this many pixels (off: no gain, measured)
    )
    refine_step: float = 1.05
    refine_neighbours: int = 2
    margin: float = 0.3  # refine region: the coarse box grown by this fraction of its side on each edge


def load_cascade(cv2=None):
    if cv2 is None:
        import cv2
    c = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if c.empty():
        raise RuntimeError(f"OpenCV's {CASCADE} is missing (opencv-python-headless>=4.8,<5 ships it)")
    return c


def _shrink(cv2, gray: np.ndarray, s: float) -> np.ndarray:
    if s >= 1:
        return gray
    h, w = gray.shape
    return cv2.resize(gray, (max(WINDOW, round(w * s)), max(WINDOW, round(h * s))), interpolation=cv2.INTER_AREA)


def coarse_fine(
    cascade, rgb: np.ndarray, p: CoarseFineParams = CoarseFineParams()
) -> list[tuple[tuple[float, float, float], int]]:
    """HxWx3 RGB (or HxW grey) uint8 -> [(face box (cx, cy, side) in source pixels, coarse neighbour count)], largest
    first."""
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    h, w = gray.shape
    min_face = max(p.min_face_px, p.min_face_frac * min(h, w))
    s = min(1.0, WINDOW / min_face)
    small = cv2.equalizeHist(_shrink(cv2, gray, s))
    top = min(small.shape)
    rects, counts = cascade.detectMultiScale2(
        small, p.coarse_step, p.coarse_neighbours, minSize=(WINDOW, WINDOW), maxSize=(top, top)
    )
    found = [
        (
            _refine(cv2, cascade, gray, ((x + bw / 2) / s, (y + bh / 2) / s, bw / s), p)
            if p.refine_px
            else ((x + bw / 2) / s, (y + bh / 2) / s, bw / s),
            int(n),
        )
        for (x, y, bw, bh), n in zip(rects, np.ravel(counts) if len(rects) else [])
    ]
    return sorted(_suppress(found), key=lambda f: -f[0][2])


def _suppress(found: list) -> list:
    """One box per face: the coarse step can report one face at two scales; keep the one with more neighbours."""
    keep: list = []
    for box, n in sorted(found, key=lambda f: -f[1]):
        if all(_overlap(box, k) < 0.3 for k, _ in keep):
            keep.append((box, n))
    return keep


def _overlap(a, b) -> float:
    """IoU of two square boxes (cx, cy, side)."""
    iw = max(0.0, min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2))
    ih = max(0.0, min(a[1] + a[2] / 2, b[1] + b[2] / 2) - max(a[1] - a[2] / 2, b[1] - b[2] / 2))
    return iw * ih / (a[2] ** 2 + b[2] ** 2 - iw * ih)


def _refine(
    cv2, cascade, gray: np.ndarray, box: tuple[float, float, float], p: CoarseFineParams
) -> tuple[float, float, float]:
    """The cascade's box near a coarse one (fine scale step, narrow size range); the coarse box if none is found."""
    cx, cy, side = box
    h, w = gray.shape
    half = side / 2 + p.margin * side * 1.3
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
    s = min(1.0, p.refine_px / side)
    roi = cv2.equalizeHist(_shrink(cv2, gray[y0:y1, x0:x1], s))
    sx, sy = roi.shape[1] / (x1 - x0), roi.shape[0] / (y1 - y0)
    lo = max(WINDOW, int(side * s / 1.3))
    hi = max(lo, min(min(roi.shape), int(np.ceil(side * s * 1.3))))
    rects = cascade.detectMultiScale(roi, p.refine_step, p.refine_neighbours, minSize=(lo, lo), maxSize=(hi, hi))
    if not len(rects):
        return box
    x, y, bw, bh = min(
        rects, key=lambda r: abs(x0 + (r[0] + r[2] / 2) / sx - cx) + abs(y0 + (r[1] + r[3] / 2) / sy - cy)
    )
    return (x0 + (x + bw / 2) / sx, y0 + (y + bh / 2) / sy, bw / sx)
