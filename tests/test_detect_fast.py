"""The OpenCV face detector (haar-fast: the frontal cascade on a shrunk frame; the default without a TFLite runtime)
against the face-box convention the crop spec expects: the full-resolution cascade's boxes, FG-NET landmark boxes,
UTKFace aligned chips, and camera-sized frames made from real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from c3ae_edge.bench import e2e
from c3ae_edge.data import read_fgnet, read_utkface
from c3ae_edge.data.crops import aligned_box, landmark_box
from c3ae_edge.data.datasets import load_pts
from c3ae_edge.data.detect import CoarseFineHaarDetector, HaarDetector, detector_record, get_detector
from c3ae_edge.data.imageio import load_rgb
from c3ae_edge.errors import UsageError


@pytest.fixture(scope="module")
def fgnet_photos(fgnet_dir):
    fg = read_fgnet(fgnet_dir)
    return [(load_rgb(s.path), landmark_box(load_pts(s.points))) for s in fg[::42]]  # 24 photos, 24 people


def test_haar_fast_and_haar_stay_selectable():
    assert isinstance(get_detector("haar-fast"), CoarseFineHaarDetector) and isinstance(
        get_detector("haar"), HaarDetector
    )
    with pytest.raises(UsageError, match="unknown detector"):
        get_detector("yolo")
    rec = json.loads(json.dumps(detector_record()))
    assert rec["name"] == "haar-fast" and rec["convention"] == "haar" and rec["params"]["min_face_frac"] == 0.2


def test_boxes_are_the_cascade_convention_on_fgnet(fgnet_photos):
    """Same faces as the full-resolution cascade, same boxes (IoU, side, centre), same relation to the landmark
    boxes."""
    fast, full = get_detector("haar-fast"), HaarDetector()
    pairs, fast_hits, full_hits = [], 0, 0
    for img, lm in fgnet_photos:
        a, b = fast.detect(img), full.detect(img)
        fast_hits += bool(a) and e2e.iou(a[0].box, lm) >= e2e.MATCH_IOU
        full_hits += bool(b) and e2e.iou(b[0].box, lm) >= e2e.MATCH_IOU
        if a and b:
            pairs.append((a[0].box, b[0].box, lm))
    assert fast_hits >= full_hits - 1 and fast_hits >= 20  # face-found rate within one photo of the full search
    ious = [e2e.iou(a, b) for a, b, _ in pairs]
    assert np.median(ious) > 0.9 and np.mean(np.array(ious) > 0.6) >= 0.9
    assert abs(np.median([a[2] / b[2] for a, b, _ in pairs]) - 1) < 0.03
    assert abs(np.median([(a[1] - b[1]) / b[2] for a, b, _ in pairs])) < 0.03
    assert (
        np.median([e2e.iou(a, lm) for a, _, lm in pairs]) > 0.8
    )  # the landmark mapping (crops.LANDMARK_*) still holds


def test_boxes_match_the_aligned_chip_convention_on_utkface(utk_dir):
    """UTKFace chips are cut tight, no use case for a detector (``predict --aligned`` takes them; the full cascade finds
    20 of these 30, haar-fast 17, measured): where a face is found, the aligned-chip box convention holds."""
    fast = get_detector("haar-fast")
    ious = []
    for s in read_utkface(utk_dir)[:600:20]:
        img = load_rgb(s.path)
        d = fast.detect(img)
        if d:
            ious.append(e2e.iou(d[0].box, aligned_box(img.shape[1], img.shape[0])))
    assert len(ious) >= 15 and np.median(ious) > 0.75


def test_faces_found_in_camera_frames_made_from_photos(fgnet_dir):
    """640x480 and 1280x720 frames: the face is found where the photo's landmarks put it, as often as the full search
    finds it (640x480) and as often as in the photo itself (1280x720)."""
    sets = e2e.input_sets(e2e.fgnet_samples(str(fgnet_dir.parent), 8, seed=2))
    fast, full = get_detector("haar-fast"), HaarDetector()
    hits = {}
    for st in sets:
        for det_name, det in (("fast", fast), ("full", full)) if st.frame != (1280, 720) else (("fast", fast),):
            n = 0
            for data, truth in zip(st.encoded, st.truth):
                img = e2e.decode(data)
                assert st.frame is None or img.shape[:2] == st.frame[::-1]
                d = det.detect(img)
                n += bool(d) and e2e.iou(d[0].box, truth) >= e2e.MATCH_IOU
            hits[st.name, det_name] = n
    assert hits["FG-NET photos", "fast"] >= max(5, hits["FG-NET photos", "full"] - 1), hits
    assert hits["640x480 frames", "fast"] >= hits["640x480 frames", "full"] - 1, hits
    assert hits["1280x720 frames", "fast"] >= hits["FG-NET photos", "fast"] - 1, hits
