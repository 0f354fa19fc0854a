"""The embedded default faces: the calibration and verification chips of the default export, shipped inside the
package so that ``pip install c3ae-edge`` + ``c3ae-edge export --target rpi`` works from any folder, with no data.

They are exactly the faces the default export picks from UTKFace (seed 0, 300 calibration faces from the shipped
weights' train split, 500 verification faces from its test split), copied byte for byte: an export from the embedded
set calibrates and verifies on the same crops as one from the full data set.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from c3ae_edge import shipped
from c3ae_edge.errors import DataError

ROLES = ("calibration", "verification")
TERMS = (
    "UTKFace (https://susanqq.github.io/UTKFace/) is published for non-commercial research purposes only; the "
    "images were collected from the Internet and their copyright stays with the owners. These chips ship under "
    "the same terms as the weights trained on them."
)


def folder() -> Path:
    return shipped.folder("calibration")


def available() -> bool:
    return (folder() / "labels.csv").is_file()


def samples(role: str) -> list:
    """The embedded faces of one role, in the order the default export picked them."""
    from c3ae_edge.data.datasets import Sample

    root = folder()
    try:
        with open(root / "labels.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise DataError(f"{root}/labels.csv: embedded default faces unreadable ({e.strerror})") from None
    return [Sample(str(root / r["file"]), float(r["age"])) for r in rows if r["role"] == role]


def build(out: Path, data: str | None = None, seed: int = 0, log=print) -> Path:
    """Copy the default export's faces out of the data set into ``out`` (the package's ``faces`` folder)."""
    from c3ae_edge.export import calibration as calib
    from c3ae_edge.weights import load_model, sha256_file

    model, spec, ck = load_model()
    cal, ver = calib.select(
        spec,
        ck.path,
        data or str(calib.data_root(None)),
        None,
        calib.DEFAULT_CALIBRATION,
        calib.DEFAULT_VERIFY,
        seed,
        ck=ck,
    )
    out = Path(out)
    shutil.rmtree(out / "images", ignore_errors=True)
    (out / "images").mkdir(parents=True)
    rows = []
    for role, faces in zip(ROLES, (cal, ver)):
        for s in faces.samples:
            shutil.copyfile(s.path, out / "images" / Path(s.path).name)
            rows.append({"file": f"images/{Path(s.path).name}", "age": f"{s.age:g}", "role": role})
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["file", "age", "role"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    meta = {
        "source": "UTKFace aligned chips (200x200 JPEG), copied unchanged",
        "terms": TERMS,
        "seed": seed,
        "weights": Path(ck.path).name,
        "weights_sha256": sha256_file(ck.path),
        "split_file": ck.meta.split_file,
        "calibration": {"count": len(cal.files), "from": "the weights' train split", **cal.identity(seed)},
        "verification": {"count": len(ver.files), "from": "the weights' test split", **ver.identity(seed)},
        "disjoint": not set(cal.files) & set(ver.files),
    }
    (out / "faceset.json").write_text(json.dumps(meta, indent=1) + "\n")
    log(f"wrote {len(rows)} faces to {out}")
    return out
