"""The rpi bundle's detector and scripts (issue 24, class 1): a replaced detector model or an edited blazeface.py,
re-pinned everywhere without the key, fails verify naming it; the on-board runner refuses to run an edited script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, repin


def _other_detector(b: Path) -> None:
    from c3ae_edge.data.blazeface_detector import MODEL_DIR

    shutil.copyfile(MODEL_DIR / "face_detection_full_range_sparse.tflite", b / "face_detection_short_range.tflite")


def _blazeface_code(b: Path) -> None:
    with open(b / "blazeface.py", "a") as f:
        f.write("\nimport os\nos.system('touch PWNED')\n")


@pytest.mark.parametrize(
    "edit, name",
    [(_other_detector, "provenance.json"), (_blazeface_code, "blazeface.py")],
    ids=["detector-replaced", "blazeface-edited"],
)
def test_verify_refuses_a_repinned_detector_or_script(rpi_bundle, tmp_path, edit, name):
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.verify import verify_bundle

    b = shutil.copytree(rpi_bundle, tmp_path / "b")
    edit(b)
    repin(b)
    with pytest.raises(VerificationError, match=name):
        verify_bundle(b)


def test_onboard_refuses_an_edited_blazeface(rpi_bundle, tmp_path):
    """Not re-pinned: the runner's photo-to-age rows refuse the script before importing it (no PWNED file)."""
    from c3ae_edge.board import onboard

    b = shutil.copytree(rpi_bundle, tmp_path / "b")
    _blazeface_code(b)
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(next((ROOT / "calibration" / "images").glob("*.jpg")), photos / "a.jpg")
    r = subprocess.run(
        [sys.executable, onboard.__file__, str(b), "--runs", "2", "--warmup", "0", "--photos", str(photos)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "blazeface.py: differs from its sha256 in manifest.json" in r.stderr, r.stderr[-2000:]
    assert not list(tmp_path.rglob("PWNED"))


def test_self_test_and_runner_refuse_an_edited_reference_script(rpi_bundle, tmp_path):
    """reference_infer.py is pinned in bundle_files: an edit (not re-pinned) makes --self-test and the on-board
    runner refuse; re-pinned, verify names it (it differs from the package's own copy)."""
    from c3ae_edge.board import onboard
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.verify import verify_bundle

    man = json.loads((rpi_bundle / "manifest.json").read_text())
    assert "reference_infer.py" in [f["file"] for f in man["bundle_files"]]
    b = shutil.copytree(rpi_bundle, tmp_path / "b")
    with open(b / "reference_infer.py", "a") as f:
        f.write("\nimport os\nos.system('touch PWNED')\n")
    r = subprocess.run(
        [sys.executable, str(b / "reference_infer.py"), "--self-test"], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 2 and "reference_infer.py: differs from its sha256 in manifest.json" in r.stderr, r.stderr
    with pytest.raises(onboard.BundleError, match="differs from its sha256"):
        onboard.pinned(b, man, "reference_infer.py")
    repin(b)
    with pytest.raises(VerificationError, match="reference_infer.py differs from the package's own copy"):
        verify_bundle(b)
    assert not list(tmp_path.rglob("PWNED"))
