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
    """The aarch64 tests need a root built once by bench/aarch64/build_root.sh (~25 min) and minutes of emulation:
    they run only when asked for (C3AE_ARM64_ROOT set, or -m aarch64), never by default, so CI stays fast."""
    if os.environ.get("C3AE_ARM64_ROOT") or "aarch64" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="opt-in: set C3AE_ARM64_ROOT or run -m aarch64 (bench/aarch64/README.md)")
    for item in items:
        if item.get_closest_marker("aarch64"):
            item.add_marker(skip)
