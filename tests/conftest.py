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
