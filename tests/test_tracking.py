"""The IoU tracker on its own: matching, new and lost tracks, the early re-detection a lost track asks for, smoothing,
and the video loop's scene cuts and schedule on synthetic frames with a stand-in pipeline (the real detector and age
network are in tests/test_predict_pipeline.py)."""

from __future__ import annotations

import numpy as np

from c3ae_edge.tracking import IoUTracker, TrackerConfig, iou
from c3ae_edge.video import SceneCuts, VideoConfig, run


def test_iou_of_square_boxes():
    assert iou((10, 10, 4), (10, 10, 4)) == 1.0
    assert iou((0, 0, 2), (10, 10, 2)) == 0.0
    assert abs(iou((0, 0, 2), (1, 0, 2)) - 1 / 3) < 1e-9  # half overlap: 2 / (4 + 4 - 2)


def test_tracks_follow_boxes_start_and_end():
    t = IoUTracker(TrackerConfig(match_iou=0.3, max_missed=1, smooth=3))
    a = t.update([(100, 100, 50), (300, 100, 50)], 0)
    assert [x.id for x in a] == [1, 2]
    b = t.update([(305, 100, 50), (108, 100, 50)], 5)  # both moved; given in the other order
    assert [x.id for x in b] == [2, 1] and t.tracks[0].velocity == (8 / 5, 0.0, 0.0)
    assert t.tracks[0].at(10) == (116.0, 100.0, 50.0)  # constant velocity between detections
    c = t.update([(116, 100, 50)], 10)  # the second face is gone
    assert [x.id for x in c] == [1] and t.wants_detection and [x.id for x in t.live()] == [1]
    t.update([(124, 100, 50)], 11)
    assert not t.wants_detection and [x.id for x in t.tracks] == [1]  # missed twice > max_missed: dropped
    d = t.update([(124, 100, 50), (600, 400, 80)], 12)
    assert [x.id for x in d] == [1, 3] and t.created == 3


def test_ages_are_averaged_over_the_last_measurements():
    t = IoUTracker(TrackerConfig(smooth=3))
    tr = t.update([(0, 0, 10)], 0)[0]
    for a in (10, 20, 30, 40):
        tr.add_age(a, 3)
    assert tr.age == 30.0 and list(tr.ages) == [20.0, 30.0, 40.0]


class _Stub:
    """A pipeline stand-in: one face where the frame is bright, its age the frame's brightness."""

    def __init__(self):
        self.detected = []

    def detect(self, rgb):
        from c3ae_edge.data.detection import Detection

        self.detected.append(int(rgb[0, 0, 0]))
        return [Detection((320.0, 240.0, 100.0), 1.0)] if rgb.mean() > 20 else []

    def crops(self, rgb, boxes):
        return np.full((len(boxes), 1), rgb.mean())

    def ages(self, x):
        return x[:, 0]


class _Frames:
    """A capture stand-in: the frames given, then the end of the stream."""

    def __init__(self, frames):
        self.frames, self.i = frames, 0

    def read(self):
        if self.i >= len(self.frames):
            return False, None
        self.i += 1
        return True, self.frames[self.i - 1][:, :, ::-1].copy()

    def get(self, prop):
        return self.i * 40.0

    def release(self):
        pass


def test_video_loop_schedule_cut_and_summary():
    dark = [np.full((480, 640, 3), 10, np.uint8)] * 2
    a = [np.full((480, 640, 3), 100 + i, np.uint8) for i in range(7)]
    b = [np.full((480, 640, 3), 200, np.uint8)] * 3  # a cut: the next shot
    pipe, out = _Stub(), []
    s = run(pipe, _Frames(dark + a + b), "synthetic", VideoConfig(detect_every=4), out.append)
    assert s.frames == 12 and [f.index for f in out] == list(range(12))
    # frame 0 scheduled; 1 none; 2 (cut from dark to bright); 4 scheduled; 8 scheduled; 9 (cut)
    assert [f.index for f in out if f.detected] == [0, 2, 4, 8, 9] == [i for i in range(12) if out[i].detected]
    assert [f.faces[0]["track"] for f in out[2:9]] == [1] * 7 and {f.faces[0]["track"] for f in out[9:]} == {2}
    assert out[8].faces[0]["age"] == round(np.mean([100, 102, 106]), 2)  # the mean of its measurements (2, 4, 8)
    assert s.tracks == 2 and s.faces == 10 and s.detections == 5 and "12 frames" in s.line()


def test_scene_cuts_are_big_changes_only():
    c = SceneCuts(30.0)
    f = np.full((48, 64, 3), 100, np.uint8)
    assert not c.new_scene(f) and not c.new_scene(np.roll(f, 2, axis=1)) and not c.new_scene(f + 20)
    assert c.new_scene(f + 100)
