"""Calibration and verification faces: real crops, age-stratified and seeded, never overlapping."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c3ae_edge.errors import DataError

MIN_CALIBRATION = 32  # fewer faces than this give int8 ranges we would not trust
DEFAULT_CALIBRATION = 300
DEFAULT_VERIFY = 500
EMBEDDED = "c3ae-edge default faces"  # the source name of the embedded faces (calibration/)


@dataclass
class FaceSet:
    """Preprocessed faces (float32, the model's input layout), their ages and where they came from."""

    x: np.ndarray
    ages: np.ndarray
    files: list[str]
    source: str
    samples: list = field(default_factory=list, repr=False)

    def identity(self, seed: int | None) -> dict:
        from c3ae_edge.data.splits import files_hash

        return {"source": self.source, "count": len(self.files), "sha256": files_hash(self.files), "seed": seed}


def data_root(data: str | None = None) -> Path:
    """--data, else $C3AE_DATA, else ../shared/data relative to the working directory."""
    return Path(data or os.environ.get("C3AE_DATA") or Path.cwd().parent / "shared" / "data")


def embedded_stand_in(data: str | None, utkface: Path) -> bool:
    """No data set at ``utkface`` and none asked for (no --data, no $C3AE_DATA): the embedded faces stand in."""
    from c3ae_edge.export import default_faces

    return (
        not (utkface / "labels.csv").is_file()
        and data is None
        and not os.environ.get("C3AE_DATA")
        and default_faces.available()
    )


def utkface_root(data: str | None, hint: str) -> Path | None:
    """The UTKFace folder under the data root, or None where the embedded faces stand in; without either, DataError
    naming the folder (``hint``: the rest of that line)."""
    root = data_root(data) / "utkface"
    if (root / "labels.csv").is_file():
        return root
    if embedded_stand_in(data, root):
        return None
    raise DataError(f"{root}: no face data (labels.csv){hint}")


def stratified_pick(ages: np.ndarray, n: int, seed: int, bin_width: int = 10) -> np.ndarray:
    """``n`` positions spread over age bins in proportion to their size (at least one per bin), seeded, sorted."""
    rng = np.random.default_rng(seed)
    n = min(n, len(ages))
    bins = (np.asarray(ages) // bin_width).astype(int)
    groups = [np.flatnonzero(bins == b) for b in np.unique(bins)]
    quota = [max(1, int(round(n * len(g) / len(ages)))) for g in groups]
    while sum(quota) > n:
        quota[int(np.argmax(quota))] -= 1
    while sum(quota) < n:
        spare = [len(g) - q for g, q in zip(groups, quota)]
        quota[int(np.argmax(spare))] += 1
    picked = [rng.choice(g, min(q, len(g)), replace=False) for g, q in zip(groups, quota)]
    return np.sort(np.concatenate(picked))


def split_for(weights_path: str | Path, samples: list, ck=None) -> dict[str, list[int]] | None:
    """The split recorded with the weights (see ``weights.split_file_for``; ``ck``: the weights, already read),
    when it has train and test faces."""
    from c3ae_edge.data import load_split
    from c3ae_edge.weights import split_file_for

    f = split_file_for(weights_path, ck)
    split = load_split(f, samples) if f else {}
    return split if split.get("train") and split.get("test") else None


def _user_samples(path: Path) -> list:
    """A CSV (file,age[,...]), a folder with labels.csv, or a folder of face chips (ages unknown)."""
    from c3ae_edge.data import load_dataset
    from c3ae_edge.data.datasets import Sample
    from c3ae_edge.data.imageio import SUPPORTED

    if path.is_file():
        return load_dataset(f"csv:{path}")
    if (path / "labels.csv").is_file():
        return load_dataset(f"utkface:{path}")
    if path.is_dir():
        return [Sample(str(p), 0.0) for p in sorted(path.rglob("*")) if p.suffix.lower() in SUPPORTED]
    raise DataError(f"{path}: no such calibration file or folder")


def face_set(samples: list, spec, source: str) -> FaceSet:
    """The samples' crops, preprocessed (float32, the model's input layout), with their ages."""
    from c3ae_edge.data.facedata import FaceData

    fd = FaceData(samples, spec, threads=2)
    x, ages = fd.batch(range(len(samples)))
    return FaceSet(x.numpy(), ages.numpy(), [s.key for s in samples], source, samples)


def select(
    spec,
    weights_path: str | Path,
    data: str | None = None,
    calibration: str | None = None,
    n_cal: int = DEFAULT_CALIBRATION,
    n_verify: int = DEFAULT_VERIFY,
    seed: int = 0,
    ck=None,
) -> tuple[FaceSet, FaceSet]:
    """(calibration faces, verification faces). Calibration: the weights' train split (or the user's set);
    verification: the test split; a seeded stratified split of the data when the weights carry none."""
    from c3ae_edge.data import load_dataset
    from c3ae_edge.data.splits import stratified_split

    if n_cal < MIN_CALIBRATION:
        raise DataError(f"calibration needs at least {MIN_CALIBRATION} faces (asked for {n_cal})")
    root = utkface_root(data, " for calibration and verification; pass --data or set C3AE_DATA")
    if root is None:
        return _embedded(spec, calibration, n_cal, n_verify, seed)
    samples = load_dataset(f"utkface:{root}")
    split = split_for(weights_path, samples, ck) or stratified_split(
        samples, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=seed
    )
    test = [samples[i] for i in split["test"]]
    ver = [test[i] for i in stratified_pick(np.array([s.age for s in test]), n_verify, seed)]
    held_out = {s.key for s in ver} | {samples[i].key for i in split["test"]}
    if calibration:
        pool, source = _user_samples(Path(calibration)), str(calibration)
    else:
        pool, source = [samples[i] for i in split["train"]], f"utkface:{root.name} train split"
    pool = [s for s in pool if s.key not in held_out]  # never judge int8 on a face it was calibrated on
    if len(pool) < MIN_CALIBRATION:
        raise DataError(f"calibration set {source}: {len(pool)} usable face(s), need at least {MIN_CALIBRATION}")
    cal = [pool[i] for i in stratified_pick(np.array([s.age for s in pool]), n_cal, seed)]
    return face_set(cal, spec, source), face_set(ver, spec, f"utkface:{root.name} test split")


def _embedded(spec, calibration: str | None, n_cal: int, n_verify: int, seed: int) -> tuple[FaceSet, FaceSet]:
    """The package's default faces (see ``default_faces``); the same picks as the data set gives the default export."""
    from c3ae_edge.export import default_faces

    test = default_faces.samples("verification")
    ver = [test[i] for i in stratified_pick(np.array([s.age for s in test]), n_verify, seed)]
    if calibration:
        pool, source = _user_samples(Path(calibration)), str(calibration)
    else:
        pool, source = default_faces.samples("calibration"), f"{EMBEDDED} (UTKFace train split)"
    held_out = {s.key for s in test}
    pool = [s for s in pool if s.key not in held_out]
    if len(pool) < MIN_CALIBRATION:
        raise DataError(f"calibration set {source}: {len(pool)} usable face(s), need at least {MIN_CALIBRATION}")
    cal = [pool[i] for i in stratified_pick(np.array([s.age for s in pool]), n_cal, seed)]
    return face_set(cal, spec, source), face_set(ver, spec, f"{EMBEDDED} (UTKFace test split)")


def write_list(path: Path, faces: FaceSet) -> None:
    """The calibration list as recorded in a bundle: one file name a line, sorted."""
    path.write_text("".join(f"{f}\n" for f in sorted(faces.files)))


def summary(faces: FaceSet) -> str:
    return json.dumps({"count": len(faces.files), "mean_age": round(float(faces.ages.mean()), 2)})
