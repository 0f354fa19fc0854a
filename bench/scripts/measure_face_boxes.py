"""Re-measure the face-box conventions in c3ae_edge/data/crops.py against the Haar cascade (the detector's box).

    python bench/scripts/measure_face_boxes.py [--data ../shared/data] [--detector haar|haar-fast]
Prints the median cascade box on UTKFace chips (ALIGNED_BOX) and its relation to FG-NET landmark boxes
(LANDMARK_SIDE, LANDMARK_DY), with how many faces each median is over.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from c3ae_edge.data import read_fgnet, read_utkface  # noqa: E402
from c3ae_edge.data.datasets import load_pts  # noqa: E402
from c3ae_edge.data.detect import HaarDetector, get_detector  # noqa: E402
from c3ae_edge.data.imageio import load_rgb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument(
        "--detector", default="haar", help="haar (the full search the conventions were measured with) or haar-fast"
    )
    a = ap.parse_args()
    det = HaarDetector(min_face_frac=0.2) if a.detector == "haar" else get_detector(a.detector)
    rng = np.random.default_rng(0)
    utk = read_utkface(Path(a.data) / "utkface")
    rows = []
    for i in rng.choice(len(utk), a.n, replace=False):
        img = load_rgb(utk[i].path)
        d = det.detect(img)
        if d:
            cx, cy, s = d[0].box
            rows.append((cx / img.shape[1], cy / img.shape[0], s / img.shape[1]))
    print(f"ALIGNED_BOX (cx/W, cy/H, side/W) median over {len(rows)} chips: {np.round(np.median(rows, 0), 3).tolist()}")
    fg = read_fgnet(Path(a.data) / "fgnet")
    rel = []
    for s in fg[: a.n]:
        img = load_rgb(s.path)
        d = det.detect(img)
        if d:
            pts = load_pts(s.points)
            (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
            cx, cy, side = d[0].box
            rel.append((side / max(x1 - x0, y1 - y0), (cy - (y0 + y1) / 2) / side))
    side, dy = np.median(rel, 0)
    print(f"LANDMARK_SIDE {side:.3f}, LANDMARK_DY {dy:.3f} (median over {len(rel)} FG-NET photos)")


if __name__ == "__main__":
    main()
