"""The embedded default faces: the same faces the data set gives the default export, and an installed wheel
exports from an empty folder with no data at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, ROOT

pytestmark = pytest.mark.slow  # full bundles, training or the data set: outside the fast tier


def test_embedded_faces_are_the_default_exports_faces(monkeypatch, tmp_path: Path):
    from c3ae_edge.export import calibration as calib
    from c3ae_edge.export import default_faces
    from c3ae_edge.weights import load_model

    meta = json.loads((default_faces.folder() / "faceset.json").read_text())
    model, spec, ck = load_model()
    monkeypatch.chdir(tmp_path)  # no ../shared/data here
    monkeypatch.delenv("C3AE_DATA", raising=False)
    cal, ver = calib.select(spec, ck.path, None, None, 300, 500, 0, ck=ck)
    assert "default faces" in cal.source and "default faces" in ver.source
    assert (
        cal.identity(0)["sha256"] == meta["calibration"]["sha256"]
        and ver.identity(0)["sha256"] == meta["verification"]["sha256"]
    )
    assert not set(cal.files) & set(ver.files)
    full_cal, full_ver = calib.select(spec, ck.path, str(DATA), None, 300, 500, 0, ck=ck)
    assert full_cal.files == cal.files and full_ver.files == ver.files
    assert (full_ver.x[:8] == ver.x[:8]).all()  # the same bytes, the same crops
    size = sum(p.stat().st_size for p in default_faces.folder().rglob("*") if p.is_file())
    assert size <= 10 * 2**20, size


@pytest.mark.slow
def test_installed_wheel_exports_from_an_empty_folder(tmp_path: Path):
    """Build the wheel, install it (no deps: they come from this venv's site-packages through a .pth, as a user's
    would from PyPI) into a fresh venv, and run the README's main job from an empty folder with no data anywhere."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(venv.glob("lib/python*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "torch").is_dir())
    (site / "deps.pth").write_text(f"{deps}\n")
    whl = next(wheels.glob("c3ae_edge-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q", str(whl)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    empty = tmp_path / "anywhere" / "empty"
    empty.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "C3AE_DATA"}
    r = subprocess.run(
        [str(venv / "bin" / "c3ae-edge"), "export", "--target", "rpi"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((empty / "exports" / "c3ae_full-0.1.0-rpi4" / "manifest.json").read_text())
    assert m["calibration"]["count"] == 300 and "default faces" in m["calibration"]["source"]
    assert m["verification"]["faces"] == 500 and "default faces" in m["verification"]["source"]
    assert (
        str(ROOT / "c3ae_edge") not in r.stderr
        and "site-packages/c3ae_edge"
        in subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import c3ae_edge; print(c3ae_edge.__file__)"],
            capture_output=True,
            text=True,
            cwd=empty,
        ).stdout
    )
