"""The face detector a bundle ships (#15): rpi bundles carry BlazeFace short range, its decoder and licence, pinned in
the manifest and SHA256SUMS; ``verify`` and the on-board runner refuse a swapped detector file; other targets keep the
OpenCV cascade."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DETECTOR_FILES = ("face_detection_short_range.tflite", "blazeface.py", "LICENSE-mediapipe.txt")


def _resum(bundle: Path) -> None:
    """SHA256SUMS regenerated, as an attacker would after editing a bundle."""
    from c3ae_edge.export.bundle_check import sha256

    names = sorted(p.name for p in bundle.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    (bundle / "SHA256SUMS").write_text("".join(f"{sha256(bundle / n)}  {n}\n" for n in names))


@pytest.mark.parametrize(
    "target, want",
    [("rpi4", "blazeface"), ("rpi5", "blazeface"), ("x86", "haar-fast"), ("generic", "haar-fast")]
    + [("gpu", "haar-fast"), ("cortex-m", "haar-fast"), ("esp32s3", "haar-fast")],
)
def test_only_targets_with_a_tflite_interpreter_ship_blazeface(target, want):
    from c3ae_edge.export.bundle_detector import detector_for
    from c3ae_edge.export.targets import load_target

    assert detector_for(load_target(target)) == want


def test_rpi_bundle_carries_its_detector(rpi_bundle, cli):
    from c3ae_edge.board import board_script
    from c3ae_edge.data.blazeface_detector import MODEL_DIR
    from c3ae_edge.data.detect import detector_record
    from c3ae_edge.export.bundle_check import sha256
    from c3ae_edge.export.manifest import Manifest

    b = rpi_bundle
    for name in DETECTOR_FILES:
        src = board_script(name) if name.endswith(".py") else MODEL_DIR / name
        assert (b / name).read_bytes() == src.read_bytes(), name  # byte-identical copies
    man = Manifest.read(b)
    det = man.face_box["detector"]
    assert {k: v for k, v in det.items() if k not in ("files", "runtime")} == json.loads(
        json.dumps(detector_record("blazeface"))
    )
    assert det["files"] == dict(zip(("model", "code", "license"), DETECTOR_FILES))
    assert det["model"]["sha256"] == sha256(b / det["model"]["file"]) and det["mapping"]["basis"] == "eyes"
    pinned = {f["file"]: f["sha256"] for f in man.bundle_files}
    sums = {ln.split("  ")[1]: ln.split("  ")[0] for ln in (b / "SHA256SUMS").read_text().splitlines()}
    scripts = (*DETECTOR_FILES, "reference_infer.py", "stats.py")  # every file the board runs is pinned (issue 24)
    assert pinned == {n: sha256(b / n) for n in scripts} and all(sums[n] == pinned[n] for n in scripts)
    readme = (b / "README.md").read_text()
    assert "## Face detector" in readme and "BlazeFace short range" in readme and "--photos" in readme
    r = cli("verify", str(b))
    assert r.code == 0 and "checksums OK" in r.out, r.err


def _spoiled(src: Path, dst: Path, how: str) -> Path:
    b = Path(shutil.copytree(src, dst))
    model = b / "face_detection_short_range.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    if how in ("sums", "pinned"):
        if how == "pinned":  # the attacker also updates bundle_files, not face_box.detector.model
            from c3ae_edge.export.bundle_check import sha256

            m = json.loads((b / "manifest.json").read_text())
            m["bundle_files"][0]["sha256"] = sha256(model)
            (b / "manifest.json").write_text(json.dumps(m))
        _resum(b)
    return b


@pytest.mark.parametrize(
    "how, message",
    [
        ("flipped", "checksum mismatch for face_detection_short_range.tflite"),
        ("sums", "face_detection_short_range.tflite does not match its sha256 in manifest.json"),
        ("pinned", "'face_detection_short_range.tflite' is not pinned in bundle_files"),
    ],
)
def test_verify_catches_a_tampered_detector(rpi_bundle, tmp_path, cli, how, message):
    b = _spoiled(rpi_bundle, tmp_path / "b", how)
    r = cli("verify", str(b))
    assert r.code == 3 and message in r.err and "Traceback" not in r.err, r.err


def test_runner_refuses_a_swapped_detector_model(rpi_bundle, fgnet_dir, tmp_path, cli):
    b = _spoiled(rpi_bundle, tmp_path / "b", "sums")
    assert cli("bench", "write-runner", tmp_path / "run").code == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(sorted((fgnet_dir / "images").iterdir())[0], photos)
    r = subprocess.run(
        [sys.executable, str(tmp_path / "run" / "onboard.py"), str(b), "--runs", "2", "--warmup", "0"]
        + ["--photos", str(photos), "--json", str(tmp_path / "o.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "does not match its sha256" in r.stderr.splitlines()[-1], r.stderr[-2000:]
    assert not (tmp_path / "o.json").exists()
