"""The main job as a pip user does it (tests/conftest.py ``installed``): the wheel installed with its dependencies
(`[all]`, constraints.txt) into a fresh venv, tflite-runtime prepared by that install, then `export --target rpi` (the
session's shared bundle, ``fresh_rpi_export``) and `verify` from an empty folder with no data anywhere, verified under
every runtime the target names. Nothing of this checkout or its venv is visible there (no .pth, no PYTHONPATH, no
C3AE_DATA, a fresh runtimes folder)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow  # installs the package and its converters (about 2 GB unpacked)


def test_installed_wheel_prepares_exports_and_verifies_from_an_empty_folder(installed, fresh_rpi_export, tmp_path):
    from c3ae_edge.export.targets import load_target

    r = fresh_rpi_export.run
    assert "not verified" not in r.stderr and "warning" not in r.stderr, r.stderr[-3000:]
    m = json.loads((fresh_rpi_export.bundle / "manifest.json").read_text())
    assert m["calibration"]["count"] == 300 and "default faces" in m["calibration"]["source"]
    assert m["verification"]["faces"] == 500 and "default faces" in m["verification"]["source"]
    names = load_target("rpi4").runtimes
    for art in m["artifacts"]:
        assert {rid: row["status"] for rid, row in art["runtimes"].items()} == {rid: "verified" for rid in names}, art
    v = subprocess.run(
        [str(installed.c3ae), "verify", str(fresh_rpi_export.bundle)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=installed.env,
        timeout=1200,
    )
    assert v.returncode == 0, v.stderr[-3000:]
    lines = v.stdout.splitlines()
    reruns = [ln for ln in lines if "max |age - PyTorch|" in ln]
    assert lines[0].endswith("checksums OK") and len(reruns) == 2 * len(names), lines
    assert not [ln for ln in lines if "NOT re-run" in ln], lines
    for rid in names:  # both artifacts re-run under each runtime, golden outputs bit-exact (recorded right here)
        assert sum(f"under {rid}:" in ln and "golden outputs bit-exact" in ln for ln in lines) == 2, lines
    where = subprocess.run(
        [str(installed.python), "-c", "import c3ae_edge, numpy; print(c3ae_edge.__file__, numpy.__version__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=installed.env,
    ).stdout
    assert "site-packages/c3ae_edge" in where and str(ROOT) not in where, where
    assert m["toolchain"]["c3ae-edge"] == m["model"]["version"]  # the installed distribution wrote it
