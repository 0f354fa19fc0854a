"""Readers for UTKFace-style folders, FG-NET, a generic CSV and IMDB-WIKI ``.mat`` metadata."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c3ae_edge.crops import FaceBox, aligned_box, landmark_box, rect_box
from c3ae_edge.errors import DataError

MAX_AGE = 120


@dataclass(frozen=True)
class Sample:
    """One face: the image file, its age, and how to find the face box (aligned chip, landmarks or a rectangle)."""

    path: str
    age: float
    kind: str = "aligned"  # "aligned" | "landmarks" | "rect"
    rect: tuple[float, float, float, float] | None = None
    points: str | None = None  # landmark file (FG-NET .pts)
    subject: str | None = None

    @property
    def key(self) -> str:
        return Path(self.path).name


def _check_age(raw: str, where: str) -> float:
    try:
        age = float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{where}: age {raw!r} is not a number") from None
    if not math.isfinite(age) or age < 0 or age > MAX_AGE:
        raise DataError(f"{where}: age {raw!r} is out of range 0..{MAX_AGE}")
    return age


def _rows(csv_path: Path, required: tuple[str, ...]) -> list[dict]:
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such file")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in required if c not in cols]
        if missing:
            raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)} (has: {', '.join(cols) or 'none'})")
        rows = list(reader)
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    return rows


def read_utkface(root: str | Path) -> list[Sample]:
    """Any folder laid out like UTKFace: ``labels.csv`` (file,age,...) with files relative to the folder."""
    root = Path(root)
    rows = _rows(root / "labels.csv", ("file", "age"))
    return [Sample(str(root / r["file"]), _check_age(r["age"], f"{root/'labels.csv'} line {i + 2}")) for i, r in enumerate(rows)]


def read_fgnet(root: str | Path) -> list[Sample]:
    """FG-NET: ``labels.csv`` (file,age,subject,...,points) and 68-point ``.pts`` landmark files."""
    root = Path(root)
    rows = _rows(root / "labels.csv", ("file", "age", "subject", "points"))
    return [
        Sample(str(root / r["file"]), _check_age(r["age"], f"{root/'labels.csv'} line {i + 2}"), "landmarks",
               points=str(root / r["points"]), subject=str(r["subject"]))
        for i, r in enumerate(rows)
    ]


def read_csv(csv_path: str | Path) -> list[Sample]:
    """Generic ``file,age[,x0,y0,x1,y1]``; files relative to the CSV; without a box the image is an aligned crop."""
    csv_path = Path(csv_path)
    rows = _rows(csv_path, ("file", "age"))
    out = []
    for i, r in enumerate(rows):
        where = f"{csv_path} line {i + 2}"
        rect = None
        if all(r.get(k) not in (None, "") for k in ("x0", "y0", "x1", "y1")):
            try:
                rect = tuple(float(r[k]) for k in ("x0", "y0", "x1", "y1"))
            except ValueError:
                raise DataError(f"{where}: face box is not numeric") from None
            if rect[2] <= rect[0] or rect[3] <= rect[1]:
                raise DataError(f"{where}: empty face box {rect}")
        out.append(Sample(str(csv_path.parent / r["file"]), _check_age(r["age"], where), "rect" if rect else "aligned", rect))
    return out


def read_imdb_wiki(mat_path: str | Path, root: str | Path | None = None, min_score: float = 1.0) -> list[Sample]:
    """IMDB-WIKI metadata (``imdb.mat``/``wiki.mat``): age = year taken - birth year; one clear face only."""
    from scipy.io import loadmat

    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise DataError(f"{mat_path}: no such file")
    try:
        meta = loadmat(mat_path)
    except Exception as e:  # scipy raises several types for a bad file
        raise DataError(f"{mat_path}: not a readable .mat file ({e})") from None
    key = next((k for k in ("imdb", "wiki") if k in meta), None)
    if key is None:
        raise DataError(f"{mat_path}: no 'imdb' or 'wiki' struct")
    m = meta[key][0, 0]
    root = Path(root) if root else mat_path.parent
    dob = m["dob"][0]
    taken = m["photo_taken"][0]
    paths = m["full_path"][0]
    score = m["face_score"][0]
    second = m["second_face_score"][0]
    locs = m["face_location"][0]
    out = []
    for i in range(len(dob)):
        if not np.isfinite(score[i]) or score[i] < min_score or np.isfinite(second[i]):
            continue
        birth_year = _matlab_datenum_year(float(dob[i]))
        age = float(taken[i]) - birth_year
        if not 0 <= age <= 100:
            continue
        x0, y0, x1, y1 = (float(v) for v in np.asarray(_unwrap(locs[i]), np.float64).ravel()[:4])
        out.append(Sample(str(root / str(_unwrap(paths[i]))), age, "rect", (x0, y0, x1, y1)))
    if not out:
        raise DataError(f"{mat_path}: no usable faces")
    return out


def _unwrap(v):
    """MATLAB cells arrive as nested object arrays: dig down to the numeric array or the string."""
    while isinstance(v, np.ndarray) and (v.dtype == object or (v.dtype.kind in "US" and v.size == 1)):
        v = v.ravel()[0]
    return v


def _matlab_datenum_year(datenum: float) -> int:
    from datetime import date, timedelta

    return (date.fromordinal(max(1, int(datenum))) - timedelta(days=366)).year


def face_box_for(sample: Sample, img: np.ndarray) -> FaceBox:
    if sample.kind == "landmarks":
        return landmark_box(load_pts(sample.points))
    if sample.kind == "rect":
        return rect_box(*sample.rect)
    return aligned_box(img.shape[1], img.shape[0])


def load_pts(path: str | Path) -> np.ndarray:
    """68 (x, y) landmarks from an ibug ``.pts`` file."""
    lines = Path(path).read_text().split("{", 1)[-1].split("}", 1)[0].split()
    pts = np.asarray(lines, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 5:
        raise DataError(f"{path}: too few landmarks")
    return pts


_READERS = {"utkface": read_utkface, "fgnet": read_fgnet, "csv": read_csv, "imdb": read_imdb_wiki, "wiki": read_imdb_wiki}


def load_dataset(spec: str) -> list[Sample]:
    """``KIND:PATH`` (utkface, fgnet, csv, imdb/wiki) -> samples; a bare folder with labels.csv is utkface."""
    kind, _, path = spec.partition(":")
    if not path:
        kind, path = ("utkface", spec) if Path(spec).is_dir() else ("csv", spec)
    if kind not in _READERS:
        raise DataError(f"unknown dataset kind {kind!r} in {spec!r}; use one of {', '.join(_READERS)} as KIND:PATH")
    if not Path(path).exists():
        raise DataError(f"{path}: no such file or folder")
    return _READERS[kind](path)
