"""Runtimes that cannot live beside our stack, each in its own small virtual environment, prepared once, explicitly.

tflite-runtime 2.14 (what `pip install tflite-runtime` gives a Raspberry Pi OS Bookworm user) needs numpy<2, while
the converters need numpy 2. ``c3ae-edge runtimes prepare`` builds the venv; export and verify then use it and never
download anything themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from c3ae_edge.errors import UsageError


@dataclass(frozen=True)
class VenvRuntime:
    name: str  # folder name under the runtimes root
    requirements: tuple[str, ...]
    probe: str  # Python code that must run in the venv


VENVS = {
    "tflite-runtime": VenvRuntime(
        "tflite-runtime-2.14",
        ("numpy<2", "tflite-runtime==2.14.0"),
        "import tflite_runtime, tflite_runtime.interpreter; assert tflite_runtime.__version__ == '2.14.0'",
    ),
}


def root() -> Path:
    """$C3AE_RUNTIMES, else ~/.cache/c3ae-edge/runtimes."""
    return Path(os.environ.get("C3AE_RUNTIMES") or Path.home() / ".cache" / "c3ae-edge" / "runtimes")


def python(key: str) -> Path | None:
    """The venv's interpreter when the venv is prepared, else None."""
    exe = root() / VENVS[key].name / "bin" / "python"
    return exe if exe.is_file() else None


def missing(key: str) -> str | None:
    """None when ready, else the one line that says how to prepare it."""
    if python(key) is None:
        return f"{key} is not prepared (run `c3ae-edge runtimes prepare {key}`, once, online)"
    return None


def prepare(key: str, log=print) -> Path:
    """Create (or repair) the venv and install its pinned requirements; -> its interpreter."""
    if key not in VENVS:
        raise UsageError(f"unknown runtime {key!r}; known: {', '.join(VENVS)}")
    v = VENVS[key]
    folder = root() / v.name
    exe = folder / "bin" / "python"
    if exe.is_file() and subprocess.run([str(exe), "-c", v.probe], capture_output=True).returncode == 0:
        log(f"{key}: ready at {folder}")
        return exe
    log(f"{key}: creating {folder}")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(folder)],
        [str(exe), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *v.requirements],
        [str(exe), "-c", v.probe],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise UsageError(f"{key}: preparing {folder} failed at `{' '.join(cmd[:3])}`: {last}")
    log(f"{key}: ready at {folder}")
    return exe
