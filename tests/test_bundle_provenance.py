"""The rpi bundle's detector and scripts (issue 24, class 1): a replaced detector model or an edited blazeface.py or
stats.py, re-pinned everywhere without the key, fails verify naming it; the on-board runner refuses to run an edited
script."""

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


def _stats_code(b: Path) -> None:
    with open(b / "stats.py", "a") as f:
        f.write("\nimport os\nos.system('touch PWNED')\n")


@pytest.mark.parametrize(
    "edit, name",
    [(_other_detector, "provenance.json"), (_blazeface_code, "blazeface.py"), (_stats_code, "stats.py")],
    ids=["detector-replaced", "blazeface-edited", "stats-edited"],
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


@pytest.mark.parametrize("unpin", [False, True], ids=["edited", "edited-and-unpinned"])
def test_onboard_refuses_an_edited_stats(rpi_bundle, tmp_path, unpin, cli):
    """The bundle's stats.py times its rows: edited (its pin left, or its pin removed from bundle_files), the runner
    written by write-runner refuses the bundle before importing it (no PWNED file); so does --self-test."""
    b = shutil.copytree(rpi_bundle, tmp_path / "b")
    _stats_code(b)
    if unpin:
        m = json.loads((b / "manifest.json").read_text())
        m["bundle_files"] = [f for f in m["bundle_files"] if f["file"] != "stats.py"]
        (b / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    assert cli("bench", "write-runner", tmp_path / "run").code == 0
    r = subprocess.run(
        [sys.executable, str(tmp_path / "run" / "onboard.py"), str(b), "--runs", "2", "--warmup", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    words = (
        "not pinned in manifest.json bundle_files"
        if unpin
        else "differs from its sha256 in manifest.json (edited after export)"
    )
    assert r.returncode == 2 and r.stderr.strip() == f"onboard: error: stats.py: {words}; refusing to run it", r.stderr
    if not unpin:
        r = subprocess.run(
            [sys.executable, str(b / "reference_infer.py"), "--self-test"], capture_output=True, text=True, cwd=tmp_path
        )
        assert r.returncode == 2 and "stats.py: differs from its sha256 in manifest.json" in r.stderr, r.stderr
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


def test_onboard_runs_the_checked_stats_source_and_leaves_no_bytecode(rpi_bundle, tmp_path, cli):
    """A __pycache__ planted beside the bundle's stats.py (a .pyc stamped with the real file's size and mtime) never
    runs instead of the checked source, and a run writes no bytecode into the bundle (verify would refuse it)."""
    import os
    import py_compile

    b = shutil.copytree(rpi_bundle, tmp_path / "b")
    shutil.rmtree(b / "__pycache__", ignore_errors=True)  # not in a fresh export
    real = b / "stats.py"
    evil = tmp_path / "evil" / "stats.py"
    evil.parent.mkdir()
    body = "import os\nos.system('touch PWNED')\n"
    evil.write_text(body + "#" * (real.stat().st_size - len(body) - 1) + "\n")
    assert evil.stat().st_size == real.stat().st_size
    os.utime(evil, ns=(real.stat().st_atime_ns, real.stat().st_mtime_ns))
    planted = b / "__pycache__" / f"stats.{sys.implementation.cache_tag}.pyc"
    py_compile.compile(str(evil), cfile=str(planted), dfile=str(real), doraise=True)
    assert cli("bench", "write-runner", tmp_path / "run").code == 0
    r = subprocess.run(
        [sys.executable, str(tmp_path / "run" / "onboard.py"), str(b), "--runs", "2", "--warmup", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(tmp_path.rglob("PWNED")), "the planted bytecode ran instead of the pinned stats.py"
    assert [p.name for p in (b / "__pycache__").iterdir()] == [planted.name]  # nothing written beside it
    shutil.rmtree(b / "__pycache__")
    r = subprocess.run(
        [sys.executable, str(tmp_path / "run" / "onboard.py"), str(b), "--runs", "2", "--warmup", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    assert r.returncode == 0 and not (b / "__pycache__").exists(), r.stderr[-2000:]
    assert cli("verify", str(b)).code == 0
