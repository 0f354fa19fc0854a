"""Measure the mapping from BlazeFace detections onto the Haar face-box convention the crop spec expects.

    python bench/scripts/measure_blazeface_boxes.py [--data ../shared/data] [--json bench/results/blazeface_boxes.json]

On every FG-NET photo, runs OpenCV's full-resolution frontal cascade (``haar``, the convention) and both BlazeFace
models (raw boxes and keypoints). For each model and each basis (eye keypoints, box) it fits the median side ratio
and centre offset on the photos both found, and reports the IoU after mapping: fitted on even-numbered photos and
scored on odd-numbered ones (held out), and fitted on all (the constants to put in c3ae_edge/board/blazeface.py's
MAPPINGS), with the IoU of the mapped box against the FG-NET landmark box beside haar's own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from c3ae_edge.bench import e2e  # noqa: E402
from c3ae_edge.board import blazeface as bf  # noqa: E402
from c3ae_edge.data.blazeface_detector import BlazeFaceDetector  # noqa: E402
from c3ae_edge.data.crops import landmark_box  # noqa: E402
from c3ae_edge.data.datasets import load_pts  # noqa: E402
from c3ae_edge.data.detect import HaarDetector  # noqa: E402
from c3ae_edge.data.imageio import load_rgb  # noqa: E402


def basis(face: bf.Face, kind: str) -> tuple[float, float, float]:
    """(origin x, origin y, unit) of a detection, as HaarMapping reads it."""
    return bf.HaarMapping(kind, 1.0, 0.0, 0.0).apply(face)


def fit(origins: np.ndarray, refs: np.ndarray) -> dict:
    unit = origins[:, 2]
    return {
        "scale": float(np.median(refs[:, 2] / unit)),
        "dx": float(np.median((refs[:, 0] - origins[:, 0]) / unit)),
        "dy": float(np.median((refs[:, 1] - origins[:, 1]) / unit)),
    }


def mapped(origins: np.ndarray, p: dict) -> np.ndarray:
    u = origins[:, 2]
    return np.stack([origins[:, 0] + p["dx"] * u, origins[:, 1] + p["dy"] * u, p["scale"] * u], 1)


def ious(a: np.ndarray, b: np.ndarray) -> dict:
    v = np.array([e2e.iou(x, y) for x, y in zip(a, b)])
    return {
        "median": float(np.median(v)),
        "p10": float(np.percentile(v, 10)),
        "mean": float(v.mean()),
        "below_0.5": int((v < 0.5).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    samples = e2e.fgnet_samples(a.data, None)
    haar = HaarDetector()
    models = {k: BlazeFaceDetector(k) for k in bf.MODELS}
    rows = []
    for s in samples:
        img = load_rgb(s.path)
        h = haar.detect(img)
        rows.append(
            (
                h[0].box if h else None,
                landmark_box(load_pts(s.points)),
                {k: (d.faces(img) or [None])[0] for k, d in models.items()},
            )
        )
    out = {
        "photos": len(samples),
        "reference": "haar (OpenCV frontal cascade, full resolution, c3ae_edge/data/detect.py HaarDetector)",
        "haar_found": sum(r[0] is not None for r in rows),
        "models": {},
    }
    for k in models:
        both = [i for i, r in enumerate(rows) if r[0] is not None and r[2][k] is not None]
        ref, lm = np.array([rows[i][0] for i in both]), np.array([rows[i][1] for i in both])
        res = {
            "found": sum(r[2][k] is not None for r in rows),
            "both_found": len(both),
            "haar_vs_landmark_iou": ious(ref, lm),
            "bases": {},
        }
        for kind in ("eyes", "box"):
            org = np.array([basis(rows[i][2][k], kind) for i in both])
            even, odd = np.arange(len(both)) % 2 == 0, np.arange(len(both)) % 2 == 1
            held = fit(org[even], ref[even])
            p = fit(org, ref)
            res["bases"][kind] = {
                "fit_all": p,
                "iou_vs_haar_all": ious(mapped(org, p), ref),
                "fit_even": held,
                "iou_vs_haar_odd_held_out": ious(mapped(org[odd], held), ref[odd]),
                "iou_vs_landmark_all": ious(mapped(org, p), lm),
            }
        out["models"][k] = res
    text = json.dumps(out, indent=1) + "\n"
    if a.json:
        a.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
