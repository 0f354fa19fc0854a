"""The main job as a pip user does it: the wheel installed with its dependencies (`[all]`, constraints.txt) into a
fresh venv, tflite-runtime prepared by that install, then `export --target rpi` and `verify` from an empty folder with
no data anywhere, verified under every runtime the target names. Nothing of this checkout or its venv is visible
there (no .pth, no PYTHONPATH, no C3AE_DATA, a fresh runtimes folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow  # installs the package and its converters (about 2 GB unpacked) and runs a full export


def run(*cmd, cwd: Path, env: dict, timeout: int = 1200) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (cmd[:3], r.stderr[-3000:])
    return r


def test_installed_wheel_prepares_exports_and_verifies_from_an_empty_folder(tmp_path: Path):
    from c3ae_edge.export.targets import load_target

    env = {k: v for k, v in os.environ.items() if k not in ("C3AE_DATA", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["C3AE_RUNTIMES"] = str(tmp_path / "runtimes")
    wheels, venv, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "anywhere" / "empty"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        wheels,
        ROOT,
        cwd=tmp_path,
        env=env,
    )
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    whl = next(wheels.glob("c3ae_edge-*.whl"))
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "-c", ROOT / "constraints.txt"]
    run(*pip, f"{whl}[all]", cwd=tmp_path, env=env)  # the registry or pip's own cache: as a user's machine would
    c3ae = venv / "bin" / "c3ae-edge"
    run(c3ae, "runtimes", "prepare", "tflite-runtime", cwd=tmp_path, env=env)
    empty.mkdir(parents=True)
    r = run(c3ae, "export", "--target", "rpi", cwd=empty, env=env)
    assert "not verified" not in r.stderr and "warning" not in r.stderr, r.stderr[-3000:]
    bundle = empty / "exports" / "c3ae_full-0.1.0-rpi4"
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["calibration"]["count"] == 300 and "default faces" in m["calibration"]["source"]
    assert m["verification"]["faces"] == 500 and "default faces" in m["verification"]["source"]
    names = load_target("rpi4").runtimes
    for art in m["artifacts"]:
        assert {rid: row["status"] for rid, row in art["runtimes"].items()} == {rid: "verified" for rid in names}, art
    v = run(c3ae, "verify", bundle, cwd=empty, env=env).stdout.splitlines()
    assert v[0].endswith("checksums OK") and len(v) == 1 + 2 * len(names), v
    for rid in names:  # both artifacts re-run under each runtime, golden outputs bit-exact (recorded right here)
        assert sum(f"under {rid}:" in ln and "golden outputs bit-exact" in ln for ln in v) == 2, v
    where = run(venv / "bin" / "python", "-c", "import c3ae_edge; print(c3ae_edge.__file__)", cwd=empty, env=env)
    assert "site-packages/c3ae_edge" in where.stdout and str(ROOT) not in where.stdout
