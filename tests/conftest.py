from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("C3AE_DATA", ROOT.parent / "shared" / "data"))
UTK = DATA / "utkface"
FGNET = DATA / "fgnet"


@pytest.fixture(scope="session")
def utk_dir() -> Path:
    assert (UTK / "labels.csv").is_file(), f"UTKFace not found at {UTK}"
    return UTK


@pytest.fixture(scope="session")
def fgnet_dir() -> Path:
    assert (FGNET / "labels.csv").is_file(), f"FG-NET not found at {FGNET}"
    return FGNET


def pytest_collection_modifyitems(config, items):
    """The aarch64 tests need a root built once by tools/aarch64/build_root.sh (~25 min) and minutes of emulation:
    they run only when asked for (C3AE_ARM64_ROOT set, or -m aarch64), never by default, so CI stays fast."""
    if os.environ.get("C3AE_ARM64_ROOT") or "aarch64" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="opt-in: set C3AE_ARM64_ROOT or run -m aarch64 (tools/aarch64/README.md)")
    for item in items:
        if item.get_closest_marker("aarch64"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_rpi_bundle(tmp_path_factory) -> Path:
    """One small rpi4 bundle (32 calibration, 16 verification faces) shared by the board-runtime and runner tests."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("small-rpi")
    r = subprocess.run([sys.executable, "-m", "c3ae_edge.cli", "export", "--target", "rpi4", "--out", str(out), "--calibration-count", "32",
                        "--verify-count", "16", "--allow-degraded"], capture_output=True, text=True, timeout=900, cwd=ROOT,
                       env={**os.environ, "C3AE_DATA": str(DATA)})
    assert r.returncode == 0, r.stderr[-2000:]
    return next(p for p in out.iterdir() if (p / "manifest.json").is_file())
