"""Offline face detection. Default (``auto``): BlazeFace short range (c3ae_edge/data/blazeface_detector.py) where a
TFLite runtime imports, else OpenCV's frontal Haar cascade on a shrunk frame (``haar-fast``), which ships inside the
opencv wheel.

Replaceable: any class with ``detect(img) -> list[Detection]`` can be named as ``module:Class``. Our face-box
convention *is* this cascade's box, so a replacement detector should map its boxes onto it (see crops.py).
"""

from __future__ import annotations

import importlib

import numpy as np

from c3ae_edge.data.detection import Detection, FaceDetector
from c3ae_edge.errors import UsageError


class HaarDetector:
    """Viola-Jones frontal-face cascade; images are searched at most ``max_side`` pixels wide for speed."""

    def __init__(self, min_face_frac: float = 0.08, neighbours: int = 5, max_side: int = 1024):
        import cv2

        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self.cascade.empty():
            raise UsageError("OpenCV's Haar cascade file is missing (opencv-python-headless>=4.8,<5 ships it)")
        self.min_face_frac, self.neighbours, self.max_side = min_face_frac, neighbours, max_side

    def detect(self, img: np.ndarray) -> list[Detection]:
        import cv2

        h, w = img.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if scale < 1:
            gray = cv2.resize(gray, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        min_side = max(20, int(self.min_face_frac * min(gray.shape)))
        rects, _, weights = self.cascade.detectMultiScale3(
            gray, 1.1, self.neighbours, minSize=(min_side, min_side), outputRejectLevels=True
        )
        dets = [
            Detection(((x + bw / 2) / scale, (y + bh / 2) / scale, max(bw, bh) / scale), float(s))
            for (x, y, bw, bh), s in zip(rects, np.ravel(weights) if len(rects) else [])
        ]
        return sorted(dets, key=lambda d: -d.box[2])


class CoarseFineHaarDetector:
    """The same cascade searched on a shrunk frame (c3ae_edge/board/facefind.py): faces from 20% of the shorter side up,
    ~8x cheaper than ``HaarDetector`` on a 640x480 frame; its boxes are the cascade's boxes (median IoU 0.96 with
    ``HaarDetector``'s on FG-NET, side ratio 0.995: bench/scripts/photo_to_age.py,
    bench/scripts/measure_face_boxes.py)."""

    def __init__(self, params=None):
        from c3ae_edge.board import facefind

        try:
            self.cascade = facefind.load_cascade()
        except RuntimeError as e:
            raise UsageError(str(e)) from None
        self.params = params or facefind.CoarseFineParams()

    def detect(self, img: np.ndarray) -> list[Detection]:
        from c3ae_edge.board.facefind import coarse_fine

        return [Detection(box, float(n)) for box, n in coarse_fine(self.cascade, img, self.params)]


def _blazeface(model: str):
    def make():
        from c3ae_edge.data.blazeface_detector import BlazeFaceDetector

        return BlazeFaceDetector(model)

    return make


def resolve_detector(name: str) -> str:
    """``auto`` -> ``blazeface`` where a TFLite runtime imports, else ``haar-fast``; other names unchanged."""
    if name != "auto":
        return name
    from c3ae_edge.data.blazeface_detector import runtime_available

    return "blazeface" if runtime_available() else "haar-fast"


DETECTORS = {
    "haar-fast": CoarseFineHaarDetector,
    "haar": HaarDetector,
    "blazeface": _blazeface("short"),
    "blazeface-full": _blazeface("full"),
    "auto": lambda: DETECTORS[resolve_detector("auto")](),
}
DEFAULT_DETECTOR = "auto"
BUNDLE_DETECTOR = "haar-fast"  # what a bundle's on-board runner detects with (facefind.py), so what its manifest names


def detector_record(name: str = BUNDLE_DETECTOR) -> dict:
    """What a bundle's manifest says about the detector its boxes come from (face_box.detector)."""
    from dataclasses import asdict

    from c3ae_edge.board import facefind

    name = resolve_detector(name)
    if name.startswith("blazeface"):
        from c3ae_edge.data.blazeface_detector import record

        return record(name)
    cascade = f"OpenCV {facefind.CASCADE} (ships in opencv-python-headless 4.x)"
    if name == "haar-fast":
        return {
            "name": name,
            "convention": "haar",
            "cascade": cascade,
            "implementation": "c3ae_edge/board/facefind.py coarse_fine (numpy + OpenCV)",
            "params": asdict(facefind.CoarseFineParams()),
            "box": "square (cx, cy, side) = the cascade's rectangle centre and width, in source pixels",
            "alternatives": {
                "haar": "HaarDetector: the same cascade at full resolution, scale step 1.1, 5 neighbours, "
                "faces from 8% of the shorter side"
            },
        }
    return {
        "name": name,
        "convention": "haar" if name == "haar" else "user detector, mapped onto the haar convention",
        "cascade": cascade,
    }


def get_detector(name: str = DEFAULT_DETECTOR, threads: int = 1) -> FaceDetector:
    """``auto`` (default: ``blazeface`` where a TFLite runtime imports, else ``haar-fast``), ``blazeface``,
    ``blazeface-full``, ``haar-fast``, ``haar`` (the full-resolution search) or ``package.module:Class`` (constructed
    with no arguments). ``threads``: the BlazeFace interpreter's (OpenCV's are set by the caller)."""
    resolved = resolve_detector(name) if name == "auto" else name
    if resolved.startswith("blazeface") and resolved in DETECTORS:
        from c3ae_edge.data.blazeface_detector import NAMES, BlazeFaceDetector

        return BlazeFaceDetector(NAMES[resolved], threads)
    if name in DETECTORS:
        return DETECTORS[name]()
    mod, _, cls = name.partition(":")
    if not cls:
        raise UsageError(f"unknown detector {name!r}; use one of {', '.join(DETECTORS)} or module:Class")
    try:
        return getattr(importlib.import_module(mod), cls)()
    except (ImportError, AttributeError) as e:
        raise UsageError(f"cannot load detector {name!r}: {e}") from None


def detector_for(record: dict, model_file, name: str = "auto", threads: int = 1) -> FaceDetector:
    """``name``, or for ``auto`` the detector a manifest's face_box.detector record names, built with the record's
    own parameters (``model_file``: a bundle's copy of its model, None for the package's own)."""
    if name != "auto":
        return get_detector(name, threads)
    kind = record.get("name")
    if kind == "blazeface" and "model" in record:
        from c3ae_edge.data.blazeface_detector import from_record

        return from_record(record, model_file, threads)
    if kind == "haar-fast":
        from c3ae_edge.board import facefind

        known = facefind.CoarseFineParams.__dataclass_fields__
        return CoarseFineHaarDetector(
            facefind.CoarseFineParams(**{k: v for k, v in record.get("params", {}).items() if k in known})
        )
    return get_detector("haar" if kind == "haar" else "auto", threads)
