"""Adverse labels, datasets and split files given to ``evaluate``: one line naming the file (and line), exit 2."""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import FGNET, Case, face_chip, run_case


def _csv(text: str | bytes, name: str = "labels.csv", kind: str = "csv", extra: tuple = ()):
    """A dataset folder holding one real face chip (img.jpg) and the given labels file."""

    def setup(tmp, env):
        shutil.copyfile(face_chip(), tmp / "img.jpg")
        (tmp / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["evaluate", "--data", f"{kind}:{tmp / name}" if kind == "csv" else f"{kind}:{tmp}", *extra]

    return setup


def _fgnet(pts: str | bytes | None, points_col: str = "p.pts"):
    def setup(tmp, env):
        src = next((FGNET / "images").iterdir())
        shutil.copyfile(src, tmp / "a.jpg")
        (tmp / "labels.csv").write_text(f"file,age,subject,points\na.jpg,20,1,{points_col}\n")
        if pts is not None:
            (tmp / "p.pts").write_bytes(pts if isinstance(pts, bytes) else pts.encode())
        return ["evaluate", "--data", f"fgnet:{tmp}"]

    return setup


def _split(doc: str | None, split: str = "test"):
    def setup(tmp, env):
        shutil.copyfile(face_chip(), tmp / "img.jpg")
        (tmp / "labels.csv").write_text("file,age\nimg.jpg,30\n")
        if doc is not None:
            (tmp / "split.json").write_text(doc)
        return ["evaluate", "--data", f"utkface:{tmp}", "--split", split, "--split-file", str(tmp / "split.json")]

    return setup


_PTS = "version: 1\nn_points: 68\n{\n" + "".join(f"{100 + i} {120 + i}\n" for i in range(68)) + "}\n"

CASES = [
    Case("csv-missing", lambda tmp, env: ["evaluate", "--data", f"csv:{tmp / 'no.csv'}"], 2, ("no.csv",)),
    Case("csv-not-utf8", _csv(b"file,age\nimg.jpg,3\xff0\n"), 2, ("labels.csv", "utf-8")),
    Case("csv-latin1-name", _csv("file,age\nimgé.jpg,30\n".encode("latin-1")), 2, ("labels.csv", "utf-8")),
    Case("csv-nul-byte", _csv(b"file,age\nimg.jpg,30\x00\n"), 2, ("labels.csv",)),
    Case("csv-no-age-column", _csv("file,years\nimg.jpg,30\n"), 2, ("labels.csv", "missing column")),
    Case("csv-header-only", _csv("file,age\n"), 2, ("labels.csv", "no rows")),
    Case("csv-empty-file", _csv(""), 2, ("labels.csv",)),
    Case("csv-short-row", _csv("file,age\nimg.jpg\n"), 2, ("labels.csv", "line 2")),
    Case("age-not-number", _csv("file,age\nimg.jpg,thirty\n"), 2, ("line 2", "not a number")),
    Case("age-negative", _csv("file,age\nimg.jpg,-3\n"), 2, ("line 2", "out of range")),
    Case("age-200", _csv("file,age\nimg.jpg,200\n"), 2, ("line 2", "out of range")),
    Case("age-nan", _csv("file,age\nimg.jpg,nan\n"), 2, ("line 2", "out of range")),
    Case("duplicate-rows", _csv("file,age\nimg.jpg,30\nimg.jpg,31\n"), 2, ("line 3", "duplicate", "img.jpg")),
    Case("duplicate-basename", _csv("file,age\nimg.jpg,30\nsub/img.jpg,31\n"), 2, ("line 3", "duplicate")),
    Case("file-absolute", _csv("file,age\n/etc/passwd,30\n"), 2, ("line 2", "/etc/passwd")),
    Case("file-dotdot", _csv("file,age\n../../img.jpg,30\n"), 2, ("line 2", "../../img.jpg")),
    Case("image-missing", _csv("file,age\nnothere.jpg,30\n"), 2, ("nothere.jpg", "no such file")),
    Case("box-not-numeric", _csv("file,age,x0,y0,x1,y1\nimg.jpg,30,a,b,c,d\n"), 2, ("line 2", "not numeric")),
    Case("box-nan", _csv("file,age,x0,y0,x1,y1\nimg.jpg,30,nan,10,100,100\n"), 2, ("line 2", "not finite")),
    Case("box-inf", _csv("file,age,x0,y0,x1,y1\nimg.jpg,30,0,0,inf,100\n"), 2, ("line 2", "not finite")),
    Case("box-empty", _csv("file,age,x0,y0,x1,y1\nimg.jpg,30,50,50,40,60\n"), 2, ("line 2", "empty face box")),
    Case("box-20000px", _csv("file,age,x0,y0,x1,y1\nimg.jpg,30,0,0,20000,20000\n"), 2, ("img.jpg", "outside")),
    Case("box-1e9", _csv("file,age,x0,y0,x1,y1\nimg.jpg,30,0,0,1e9,1e9\n"), 2, ("img.jpg", "outside")),
    Case("box-far-away", _csv("file,age,x0,y0,x1,y1\nimg.jpg,30,5000,5000,5100,5100\n"), 2, ("img.jpg", "outside")),
    Case("kind-unknown", lambda tmp, env: ["evaluate", "--data", f"mystery:{tmp}"], 2, ("mystery",)),
    Case("data-folder-missing", lambda tmp, env: ["evaluate", "--data", f"utkface:{tmp / 'gone'}"], 2, ("gone",)),
    Case("utkface-no-labels", lambda tmp, env: ["evaluate", "--data", f"utkface:{tmp}"], 2, ("labels.csv",)),
    Case("fgnet-pts-garbage", _fgnet("{ 1 2 three 4 }"), 2, ("p.pts",)),
    Case("fgnet-pts-odd-count", _fgnet("{ 1 2 3 }"), 2, ("p.pts",)),
    Case("fgnet-pts-too-few", _fgnet("{ 1 2 3 4 }"), 2, ("p.pts", "too few")),
    Case("fgnet-pts-not-utf8", _fgnet(b"{ \xff\xfe 1 2 }"), 2, ("p.pts",)),
    Case("fgnet-pts-missing", _fgnet(None), 2, ("p.pts", "no such")),
    Case("fgnet-pts-nan", _fgnet("{ " + "nan nan " * 68 + "}"), 2, ("p.pts",)),
    Case("fgnet-pts-far-outside", _fgnet(_PTS.replace("1", "9" * 6, 40)), 2, ("p.pts", "outside")),
    Case("fgnet-points-dotdot", _fgnet(_PTS, points_col="../../p.pts"), 2, ("line 2", "../../p.pts")),
    Case("split-file-missing", _split(None), 2, ("split.json", "no such")),
    Case("split-not-json", _split("{not json"), 2, ("split.json", "not a split")),
    Case(
        "split-not-utf8",
        lambda tmp, env: (_split("")(tmp, env), (tmp / "split.json").write_bytes(b"\xff\xfe{"))[0],
        2,
        ("split.json",),
    ),
    Case("split-no-splits-key", _split(json.dumps({"seed": 0})), 2, ("split.json", "not a split file")),
    Case("split-wrong-types", _split(json.dumps({"splits": {"test": [1, 2]}})), 2, ("split.json", "not a split file")),
    Case(
        "split-face-in-two",
        _split(json.dumps({"splits": {"train": ["img.jpg"], "test": ["img.jpg"]}})),
        2,
        ("split.json", "both"),
    ),
    Case("split-name-absent", _split(json.dumps({"splits": {"train": ["img.jpg"]}})), 2, ("--split test",)),
    Case("split-none-in-data", _split(json.dumps({"splits": {"test": ["other.jpg"]}})), 2, ("--split test", "none")),
]


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.id.startswith("fgnet") else []) for c in CASES]
)  # the FG-NET cases spoil a copy of a real FG-NET photo
def test_bad_labels(case, tmp_path, capsys, env):
    run_case(case, tmp_path, capsys, env)
