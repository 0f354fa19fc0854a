"""Readers for UTKFace-style folders, FG-NET, a generic CSV and IMDB-WIKI ``.mat`` metadata."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c3ae_edge.data.crops import FaceBox, aligned_box, landmark_box, rect_box
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
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            missing = [c for c in required if c not in cols]
            if missing:
                raise DataError(
                    f"{csv_path}: missing column(s) {', '.join(missing)} (has: {', '.join(cols) or 'none'})"
                )
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise DataError(f"{csv_path}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{csv_path}: not a readable CSV ({e})") from None
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    seen: dict[str, int] = {}
    for i, r in enumerate(rows):
        for c in required:
            if r.get(c) is None:
                raise DataError(f"{csv_path} line {i + 2}: no value for column {c!r}")
        for c in ("file", "points"):
            if c in required:
                inside(r[c], f"{csv_path} line {i + 2}")
        key = Path(r["file"]).name
        if key in seen:
            raise DataError(
                f"{csv_path} line {i + 2}: duplicate file {key!r} (also on line {seen[key]}); each face once"
            )
        seen[key] = i + 2
    return rows


def inside(name: str, where: str) -> str:
    """A file name from a CSV: relative to the CSV's folder and staying in it (no absolute path, no '..')."""
    p = Path(name)
    if not name or p.is_absolute() or ".." in p.parts or "\x00" in name:
        raise DataError(f"{where}: file {name!r} must be a path inside the data folder (relative, no '..')")
    return name


def read_utkface(root: str | Path) -> list[Sample]:
    """Any folder laid out like UTKFace: ``labels.csv`` (file,age,...) with files relative to the folder."""
    root = Path(root)
    rows = _rows(root / "labels.csv", ("file", "age"))
    return [
        Sample(str(root / r["file"]), _check_age(r["age"], f"{root / 'labels.csv'} line {i + 2}"))
        for i, r in enumerate(rows)
    ]


def read_fgnet(root: str | Path) -> list[Sample]:
    """FG-NET: ``labels.csv`` (file,age,subject,...,points) and 68-point ``.pts`` landmark files."""
    root = Path(root)
    rows = _rows(root / "labels.csv", ("file", "age", "subject", "points"))
    return [
        Sample(
            str(root / r["file"]),
            _check_age(r["age"], f"{root / 'labels.csv'} line {i + 2}"),
            "landmarks",
            points=str(root / r["points"]),
            subject=str(r["subject"]),
        )
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
            if not all(math.isfinite(v) for v in rect):
                raise DataError(f"{where}: face box {rect} is not finite")
            if rect[2] <= rect[0] or rect[3] <= rect[1]:
                raise DataError(f"{where}: empty face box {rect}")
        out.append(
            Sample(str(csv_path.parent / r["file"]), _check_age(r["age"], where), "rect" if rect else "aligned", rect)
        )
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


def face_box_for(sample: Sample, img: np.ndarray, scale: float = 1.0) -> FaceBox:
    """The sample's face box in the pixels of ``img`` (``scale``: decoded size / source size, see
    imageio.load_scaled)."""
    if sample.kind == "aligned":
        return aligned_box(img.shape[1], img.shape[0])
    box = landmark_box(load_pts(sample.points)) if sample.kind == "landmarks" else rect_box(*sample.rect)
    box = (box[0] * scale, box[1] * scale, box[2] * scale)
    check_box(box, img, sample.points if sample.kind == "landmarks" else sample.path)
    return box


def check_box(box: FaceBox, img: np.ndarray, where) -> None:
    """A face box must be finite and near the image: its centre inside, its side at most twice the longer image side
    (the crops are cut at up to 1.2x the side: a far-off or huge box would only cost memory and give padding)."""
    h, w = img.shape[:2]
    cx, cy, side = box
    if not all(math.isfinite(v) for v in box) or not (0 <= cx <= w and 0 <= cy <= h and 0 < side <= 2 * max(w, h)):
        raise DataError(f"{where}: face box (cx {cx:.0f}, cy {cy:.0f}, side {side:.0f}) lies outside the {w}x{h} image")


def load_pts(path: str | Path) -> np.ndarray:
    """68 (x, y) landmarks from an ibug ``.pts`` file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        pts = np.asarray(text.split("{", 1)[-1].split("}", 1)[0].split(), dtype=np.float64).reshape(-1, 2)
    except FileNotFoundError:
        raise DataError(f"{path}: no such landmark file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: not a .pts landmark file ({type(e).__name__})") from None
    if len(pts) < 5 or not np.isfinite(pts).all():
        raise DataError(f"{path}: too few or non-finite landmarks")
    return pts


_READERS = {
    "utkface": read_utkface,
    "fgnet": read_fgnet,
    "csv": read_csv,
    "imdb": read_imdb_wiki,
    "wiki": read_imdb_wiki,
}


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
