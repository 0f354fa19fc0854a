"""The embedded default faces: the same faces the data set gives the default export (an installed wheel exporting
from an empty folder with no data at all: tests/test_real_install.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA

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
