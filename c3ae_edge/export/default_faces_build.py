"""Rebuild the embedded default faces (``calibration/``) from the data set: a maintainer's step, run when the shipped
weights (and so their split) change. It sits above both ``calibration`` (which picks the faces) and ``default_faces``
(which reads the embedded copy at export time), so neither imports the other's way back."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from c3ae_edge.export import calibration as calib
from c3ae_edge.export import default_faces
from c3ae_edge.weights import load_model, sha256_file


def build(out: Path, data: str | None = None, seed: int = 0, log=print) -> Path:
    """Copy the default export's faces out of the data set into ``out`` (the package's ``faces`` folder)."""
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
    for role, faces in zip(default_faces.ROLES, (cal, ver)):
        for s in faces.samples:
            shutil.copyfile(s.path, out / "images" / Path(s.path).name)
            rows.append({"file": f"images/{Path(s.path).name}", "age": f"{s.age:g}", "role": role})
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["file", "age", "role"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    meta = {
        "source": "UTKFace aligned chips (200x200 JPEG), copied unchanged",
        "terms": default_faces.TERMS,
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
