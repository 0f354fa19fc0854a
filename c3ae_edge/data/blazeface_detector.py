"""The BlazeFace detectors (``blazeface``: short range, 128x128; ``blazeface-full``: full range, 192x192) behind
``get_detector``: MediaPipe's .tflite models shipped in c3ae_edge/data/detectors (Apache-2.0, provenance.json),
run by c3ae_edge/board/blazeface.py (numpy + a TFLite runtime), boxes mapped onto the Haar convention."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from c3ae_edge.errors import DataError, MissingExtraError, UsageError

MODEL_DIR = Path(__file__).with_name("detectors")
NAMES = {"blazeface": "short", "blazeface-full": "full"}


def provenance() -> dict:
    return json.loads((MODEL_DIR / "provenance.json").read_text())


def model_path(model: str) -> Path:
    from c3ae_edge.board import blazeface as bf

    return MODEL_DIR / bf.MODELS[model].file


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runtime_available() -> bool:
    """Whether a TFLite interpreter imports (ai-edge-litert, or tflite_runtime on a board)."""
    import importlib

    from c3ae_edge.board import blazeface as bf

    for mod in bf.RUNTIMES:
        try:
            importlib.import_module(mod)
            return True
        except ImportError:
            continue
    return False


def _cv2_resize():
    """OpenCV's bilinear resize (~20x faster than the numpy one; boxes agree to IoU 0.99, measured)."""
    import cv2

    return lambda img, w, h: cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


class BlazeFaceDetector:
    """``detect(img) -> [Detection]`` (Haar-convention boxes, largest first);
    ``faces(img)`` gives the raw detections."""

    def __init__(self, model: str = "short", threads: int = 1, path: Path | None = None, spec=None, mapping=None):
        """``path``, ``spec``, ``mapping``: a bundle's own model file, model spec and Haar mapping (its manifest's)."""
        from c3ae_edge.board import blazeface as bf
        from c3ae_edge.native_quiet import drop_runtime_info

        if model not in bf.MODELS:
            raise UsageError(f"unknown BlazeFace model {model!r}; use one of {', '.join(bf.MODELS)}")
        try:
            with drop_runtime_info():
                self.net = bf.BlazeFace(
                    str(path or model_path(model)), spec or bf.MODELS[model], threads, _cv2_resize()
                )
        except ImportError:
            raise MissingExtraError("tflite", "ai_edge_litert") from None
        self.model, self.mapping = model, mapping or bf.MAPPINGS[model]

    def faces(self, img: np.ndarray):
        return self.net.detect(img)

    def detect(self, img: np.ndarray):
        from c3ae_edge.data.detection import Detection

        return [Detection(self.mapping.apply(f), f.score) for f in self.net.detect(img)]


def record(name: str) -> dict:
    """What a bundle's manifest says about a BlazeFace detector (face_box.detector)."""
    from dataclasses import asdict

    from c3ae_edge.board import blazeface as bf

    model = NAMES[name]
    spec, prov = bf.MODELS[model], provenance()
    return {
        "name": name,
        "convention": "haar",
        "model": {
            **asdict(spec),
            "sha256": prov["files"][spec.file]["sha256"],
            "source": f"{prov['wheel']} : {prov['files'][spec.file]['path_in_wheel']}",
            "license": prov["license"],
        },
        "implementation": "c3ae_edge/board/blazeface.py (numpy + ai-edge-litert or tflite_runtime): "
        "anchors, decoding, weighted NMS",
        "input": f"frame letterboxed to {spec.size}x{spec.size} (aspect kept, centred, mid-grey borders), "
        "RGB scaled to [-1, 1], bilinear resize",
        "mapping": {
            **asdict(bf.MAPPINGS[model]),
            "measured_by": "bench/scripts/measure_blazeface_boxes.py (bench/results/blazeface_boxes.json)",
            "formula": "unit = eye-keypoint distance (basis eyes) or mean box size (basis box); side = scale * unit; "
            "centre = origin + (dx, dy) * unit",
        },
        "box": "square (cx, cy, side) = the mapped BlazeFace detection, in source pixels, "
        "on the Haar cascade's convention",
    }


def from_record(det: dict, path: Path | None, threads: int = 1) -> BlazeFaceDetector:
    """The BlazeFace a manifest names (face_box.detector): ``path`` (a bundle's copy of the model; None: the
    package's own), checked against the record's sha256, with the record's model spec and Haar mapping."""
    from c3ae_edge.board import blazeface as bf

    m = det["model"]
    fields = ("name", "file", "size", "strides", "interpolated_anchor", "min_score", "nms_iou")
    spec = bf.ModelSpec(**{k: tuple(m[k]) if k == "strides" else m[k] for k in fields if k in m})
    mapping = bf.HaarMapping(**{k: det["mapping"][k] for k in ("basis", "scale", "dx", "dy")})
    path = path or model_path(spec.name)
    if not path.is_file() or sha256(path) != m.get("sha256"):
        raise DataError(f"{path}: the face detector model does not match its sha256 in the manifest")
    return BlazeFaceDetector(spec.name, threads, path, spec, mapping)
