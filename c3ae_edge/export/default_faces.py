"""The embedded default faces: the calibration and verification chips of the default export, shipped inside the
package so that ``pip install c3ae-edge`` + ``c3ae-edge export --target rpi`` works from any folder, with no data.

They are exactly the faces the default export picks from UTKFace (seed 0, 300 calibration faces from the shipped
weights' train split, 500 verification faces from its test split), copied byte for byte: an export from the embedded
set calibrates and verifies on the same crops as one from the full data set.
"""

from __future__ import annotations

import csv
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
