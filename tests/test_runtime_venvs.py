"""The runtime venvs export verifies in (tflite-runtime 2.14, numpy<2): `runtimes prepare` installs what the bundle
README tells a Pi user and stamps it; a venv that is missing, unstamped, stale or missing a stamped package is
reported in one line with the command that fixes it and is never used; `export --sign` refuses a target runtime that
cannot verify here unless told."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_subprocess

from c3ae_edge.export import runtime_env

KEY = "tflite-runtime"
FIX = f"(run `c3ae-edge runtimes prepare {KEY}`)"


def fake_venv(root: Path, stamp: dict | None, dists: dict[str, str]) -> Path:
    """A venv folder as `runtimes prepare` leaves it (interpreter, site-packages with dist-info folders, the stamp),
    without installing anything: the states are read from these files alone."""
    v = root / runtime_env.VENVS[KEY].name
    (v / "bin").mkdir(parents=True)
    (v / "bin" / "python").symlink_to(sys.executable)
    site = v / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    for name, ver in dists.items():
        (site / f"{name.replace('-', '_')}-{ver}.dist-info").mkdir()
    if stamp is not None:
        (v / runtime_env.STAMP).write_text(json.dumps(stamp))
    return v


def listed(root: Path, capsys_cli) -> str:
    """The tflite-runtime row of `c3ae-edge runtimes` with C3AE_RUNTIMES=root."""
    r = capsys_cli("runtimes")
    assert r.code == 0, r.err
    return next(ln for ln in r.out.splitlines() if ln.startswith("tflite-runtime/builtin"))


INSTALLED = {"numpy": "1.26.4", "pillow": "13.0.0", "tflite-runtime": "2.14.0"}
GOOD = {"runtime": KEY, "requirements": list(runtime_env.VENVS[KEY].requirements), "installed": INSTALLED}


@pytest.mark.parametrize(
    "case, stamp, dists, words",
    [
        ("missing", None, None, "tflite-runtime is not prepared (run `c3ae-edge runtimes prepare tflite-runtime`"),
        ("unstamped", None, INSTALLED, "is incomplete: no c3ae-runtime.json"),
        (
            "stale",
            {**GOOD, "requirements": ["numpy<2", "tflite-runtime==2.14.0"]},
            INSTALLED,
            "is stale: prepared for numpy<2 tflite-runtime==2.14.0, this c3ae-edge needs numpy<2 Pillow",
        ),
        ("package gone", GOOD, {k: v for k, v in INSTALLED.items() if k != "pillow"}, "pillow 13.0.0 no longer"),
        ("ready", GOOD, INSTALLED, None),
    ],
)
def test_each_venv_state_is_one_line_with_its_fix(case, stamp, dists, words, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("C3AE_RUNTIMES", str(tmp_path))
    if dists is not None:
        fake_venv(tmp_path, stamp, dists)
    st = runtime_env.state(KEY)
    row = listed(tmp_path, cli)
    if words is None:
        assert st.ready and st.line() is None and runtime_env.python(KEY) is not None and "ready" in row
        return
    assert not st.ready and runtime_env.python(KEY) is None  # never used as it is
    line = st.line()
    assert "\n" not in line and words in line and line.endswith(FIX if case != "missing" else "once, online)"), line
    assert f"NOT READY: {line}" in row, row  # `c3ae-edge runtimes` says the same, on one line


def test_sign_refuses_a_runtime_that_cannot_verify_here(tmp_path, monkeypatch, cli):
    """`export --target rpi --sign` without the tflite-runtime venv: one line naming the runtime and the way out, before
    any conversion, nothing written."""
    monkeypatch.setenv("C3AE_RUNTIMES", str(tmp_path / "none"))
    assert cli("keygen", str(tmp_path / "k"), "--unencrypted").code == 0
    out = tmp_path / "out"
    r = cli("export", "--target", "rpi", "--sign", str(tmp_path / "k.key"), "--out", str(out))
    assert r.code == 2 and len(r.lines) == 1, r.err
    assert "tflite-runtime/builtin" in r.lines[0] and "--allow-unverified-runtime" in r.lines[0], r.lines
    assert "not prepared" in r.lines[0] and not out.exists()


@pytest.mark.slow  # pip installs the set (from the local pip cache on a warm machine: about 10 s)
def test_prepare_installs_the_readme_set_stamps_it_and_repairs(tmp_path):
    """The real `runtimes prepare`: the bundle README's pip line (firmware.pi_install) is the set it installs; the
    stamp names each package's version; the venv runs the bundle scripts' imports; a package removed afterwards makes
    the venv 'incomplete' (one line, the fix), and `prepare` again makes it ready."""
    from c3ae_edge.export.firmware import pi_install

    env = {**os.environ, "C3AE_RUNTIMES": str(tmp_path)}
    r = cli_subprocess("runtimes", "prepare", KEY, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    v = tmp_path / runtime_env.VENVS[KEY].name
    stamp = json.loads((v / runtime_env.STAMP).read_text())
    assert pi_install(KEY) == 'pip install "numpy<2" Pillow tflite-runtime==2.14.0'
    assert stamp["requirements"] == list(runtime_env.VENVS[KEY].requirements)
    assert stamp["installed"]["tflite-runtime"] == "2.14.0" and stamp["installed"]["numpy"].startswith("1.")
    assert {"pillow", "numpy", "tflite-runtime"} <= {k.lower() for k in stamp["installed"]}
    py = v / "bin" / "python"
    probe = "import numpy, PIL, tflite_runtime.interpreter; print(numpy.__version__)"
    assert subprocess.run([py, "-c", probe], capture_output=True, text=True).stdout.startswith("1.")
    subprocess.run([py, "-m", "pip", "uninstall", "-y", "-q", "pillow"], check=True, capture_output=True)
    r = cli_subprocess("runtimes", env=env)
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("tflite-runtime/builtin"))
    assert "is incomplete: pillow" in row and row.endswith(FIX), row
    r = cli_subprocess("runtimes", "prepare", KEY, env=env, timeout=900)
    assert r.returncode == 0 and "repairing (incomplete" in r.stderr, r.stderr[-2000:]
    assert "ready" in next(
        ln for ln in cli_subprocess("runtimes", env=env).stdout.splitlines() if "tflite-runtime/" in ln
    )
    shutil.rmtree(v)
