"""The face detector a bundle ships for its on-board runner: BlazeFace short range where the target runs a TFLite
interpreter (ai-edge-litert or tflite-runtime: the same one runs the age model and the detector), else the OpenCV
cascade (haar-fast, c3ae_edge/board/facefind.py, which ``c3ae-edge bench write-runner`` copies beside the runner)."""

from __future__ import annotations

import shutil
from pathlib import Path

from c3ae_edge.board import board_script
from c3ae_edge.data.detect import BUNDLE_DETECTOR, detector_record
from c3ae_edge.errors import DataError

TFLITE_RUNTIMES = ("ai-edge-litert", "tflite-runtime")  # Python interpreters that run blazeface.py's .tflite
BLAZEFACE = "blazeface"


def detector_for(target) -> str:
    """``blazeface`` for a target whose runtimes include a TFLite interpreter (rpi4, rpi5), else ``haar-fast``."""
    if any(rt.split("/")[0] in TFLITE_RUNTIMES for rt in target.runtimes):
        return BLAZEFACE
    return BUNDLE_DETECTOR


def write_detector(tmp: Path, target) -> tuple[dict, list[dict]]:
    """Copy the detector's files into the bundle folder ``tmp`` (none for haar-fast);
    -> (face_box.detector record, the manifest's ``bundle_files`` entries pinning each copied file)."""
    from c3ae_edge.data import blazeface_detector as bd
    from c3ae_edge.export.bundle_check import sha256

    name = detector_for(target)
    record = bundle_record(name)
    if name != BLAZEFACE:
        return record, []
    model = bd.model_path("short")
    lic = bd.MODEL_DIR / "LICENSE-mediapipe.txt"
    roles = {
        model: f"face detector model: BlazeFace short range ({record['model']['license']}, unmodified)",
        board_script("blazeface.py"): "face detector code: anchors, decoding, NMS, Haar mapping (numpy + TFLite)",
        lic: "licence of the face detector model (MediaPipe, Apache-2.0)",
    }
    entries = []
    for src, role in roles.items():
        shutil.copyfile(src, tmp / src.name)
        entries.append(
            {"file": src.name, "sha256": sha256(tmp / src.name), "bytes": (tmp / src.name).stat().st_size, "role": role}
        )
    if entries[0]["sha256"] != record["model"]["sha256"]:  # the package data is not what provenance.json pins
        raise DataError(f"{model}: sha256 differs from provenance.json; reinstall c3ae-edge")
    return record, entries


def bundle_record(name: str) -> dict:
    """The manifest's ``face_box.detector`` for a bundle shipping detector ``name`` (``verify`` re-derives it)."""
    from c3ae_edge.data import blazeface_detector as bd

    record = detector_record(name)
    if name != BLAZEFACE:
        return record
    return {
        **record,
        "files": {"model": bd.model_path("short").name, "code": "blazeface.py", "license": "LICENSE-mediapipe.txt"},
        "runtime": "the TFLite interpreter that runs the age model (ai-edge-litert or tflite-runtime)",
    }
