"""Ages from a video file or a camera (OpenCV capture): the face detector every N frames, or at once when a track
was lost; tracks matched by IoU (c3ae_edge/tracking.py); each track's age measured when it is detected and averaged
over its measurements; one result per frame and a summary (frames, faces, frames per second)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from c3ae_edge.errors import DataError, UsageError
from c3ae_edge.tracking import IoUTracker, TrackerConfig

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".mjpeg"}


@dataclass(frozen=True)
class VideoConfig:
    detect_every: int = 5  # frames between scheduled detections (1: every frame)
    cut: float = 30.0  # mean |difference| of 32x24 grey thumbnails of consecutive frames above which a new scene starts
    max_frames: int | None = None
    tracker: TrackerConfig = TrackerConfig()

    def check(self) -> VideoConfig:
        if self.detect_every < 1:
            raise UsageError(f"--detect-every {self.detect_every}: must be >= 1")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"--max-frames {self.max_frames}: must be >= 1")
        if self.tracker.smooth < 1:
            raise UsageError(f"--smooth {self.tracker.smooth}: must be >= 1")
        return self


@dataclass
class FrameResult:
    index: int
    time_s: float  # the frame's time in the stream (video) or since capture started (camera)
    detected: bool  # the detector ran on this frame
    faces: list[dict]

    def to_dict(self) -> dict:
        return {"frame": self.index, "time_s": round(self.time_s, 3), "detected": self.detected, "faces": self.faces}


@dataclass
class Summary:
    source: str
    frames: int
    faces: int  # faces shown, summed over frames
    tracks: int
    detections: int  # frames the detector ran on
    seconds: float  # capture and decode included
    cpu_seconds: float = 0.0  # this process's CPU time over the same loop (what a shared machine's waits leave out)

    def to_dict(self) -> dict:
        fps = self.frames / self.seconds if self.seconds > 0 else None
        return {
            "source": self.source,
            "frames": self.frames,
            "faces": self.faces,
            "tracks": self.tracks,
            "detections": self.detections,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(fps, 1) if fps else None,
            "ms_per_frame": round(1e3 * self.seconds / self.frames, 3) if self.frames else None,
            "cpu_ms_per_frame": round(1e3 * self.cpu_seconds / self.frames, 3) if self.frames else None,
        }

    def line(self) -> str:
        d = self.to_dict()
        return (
            f"{self.source}: {self.frames} frames, {self.faces} faces in {self.tracks} tracks, {self.detections} "
            f"detections, {d['frames_per_s']} frames/s ({d['ms_per_frame']} ms per frame, {d['cpu_ms_per_frame']} ms "
            "of CPU)"
        )


def open_capture(path: str | None = None, camera: int | None = None):
    """An opened cv2.VideoCapture, or one DataError naming the file or camera."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our one line says why it cannot open
    if camera is not None:
        cap = cv2.VideoCapture(camera)
        if not cap.isOpened():
            raise DataError(f"camera {camera}: cannot be opened (no such device, busy, or no permission)")
        return cap
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise DataError(f"{p}: cannot be read as a video (OpenCV found no decodable stream)")
    return cap


def frames(cap, max_frames: int | None, camera: bool) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, RGB frame) until the stream ends or ``max_frames``."""
    import cv2

    t0, n = time.perf_counter(), 0
    while max_frames is None or n < max_frames:
        ok, bgr = cap.read()
        if not ok or bgr is None:
            return
        t = time.perf_counter() - t0 if camera else cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3
        n += 1
        yield t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run(pipeline, source, name: str, cfg: VideoConfig, emit: Callable[[FrameResult], None], camera=False) -> Summary:
    """Every frame of ``source`` (an opened capture) through ``pipeline`` with tracking; ``emit`` gets each frame."""
    tracker, cuts = IoUTracker(cfg.tracker), SceneCuts(cfg.cut)
    summ = Summary(name, 0, 0, 0, 0, 0.0)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        for i, (t, rgb) in enumerate(frames(source, cfg.max_frames, camera)):
            detect = i % cfg.detect_every == 0 or tracker.wants_detection
            if cuts.new_scene(rgb) and i:
                tracker.reset()
                detect = True
            measured = {}
            if detect:
                summ.detections += 1
                found = tracker.update([d.box for d in pipeline.detect(rgb)], i)
                ages = pipeline.ages(pipeline.crops(rgb, [tr.box for tr in found]))
                for tr, a in zip(found, ages):
                    tr.add_age(a, cfg.tracker.smooth)
                    measured[tr.id] = float(a)
            faces = [_face(tr, i, measured) for tr in tracker.live()]
            summ.frames, summ.faces = i + 1, summ.faces + len(faces)
            emit(FrameResult(i, t, detect, faces))
    finally:
        source.release()
        summ.seconds, summ.cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        summ.tracks = tracker.created
    return summ


class SceneCuts:
    """A cut between two frames (another shot, another face in the same place): the mean absolute difference of
    their 32x24 grey thumbnails above ``threshold`` (0-255 levels). About 0.1 ms per 640x480 frame."""

    def __init__(self, threshold: float):
        self.threshold, self.prev = threshold, None

    def new_scene(self, rgb: np.ndarray) -> bool:
        import cv2

        th = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 24), interpolation=cv2.INTER_AREA)
        cut = self.prev is not None and float(np.abs(th.astype(np.int16) - self.prev).mean()) > self.threshold
        self.prev = th.astype(np.int16)
        return cut


def _face(tr, frame: int, measured: dict) -> dict:
    d = {"track": tr.id, "box": [round(float(v), 1) for v in tr.at(frame)], "age": round(tr.age, 2)}
    if tr.id in measured:
        d["age_measured"] = round(measured[tr.id], 2)
    return d
