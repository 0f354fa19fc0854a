"""Faces followed across video frames: a small IoU tracker (greedy matching of square boxes, constant-velocity
prediction between detections) with each track's age averaged over its measurements.

Ours rather than a package's: on PyPI, norfair 2.3.0 pins numpy<2 and pulls scipy and filterpy; trackers 2.6.1 needs
numpy>=2 (which rules out the numpy<2 path of Pi OS Bookworm), supervision, scipy, requests and the non-headless
opencv-python. A face track here needs neither a Kalman filter nor re-identification: this file is numpy-free."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

Box = tuple[float, float, float]  # (cx, cy, side)


def iou(a: Box, b: Box) -> float:
    """IoU of two square boxes (cx, cy, side)."""
    iw = max(0.0, min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2))
    ih = max(0.0, min(a[1] + a[2] / 2, b[1] + b[2] / 2) - max(a[1] - a[2] / 2, b[1] - b[2] / 2))
    inter = iw * ih
    union = a[2] ** 2 + b[2] ** 2 - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class TrackerConfig:
    match_iou: float = 0.3  # a detection continues a track when their boxes overlap this much
    max_missed: int = 2  # detections in a row a track may miss before it is dropped
    smooth: int = 10  # ages averaged per track: its last ``smooth`` measurements


@dataclass
class Track:
    id: int
    box: Box
    frame: int  # frame of the last detection
    velocity: Box = (0.0, 0.0, 0.0)  # per frame, from the last two detections
    missed: int = 0
    ages: deque = field(default_factory=deque)

    def at(self, frame: int) -> Box:
        """The box predicted for ``frame`` (constant velocity since the last detection)."""
        dt = frame - self.frame
        return tuple(b + v * dt for b, v in zip(self.box, self.velocity))

    def add_age(self, age: float, keep: int) -> None:
        self.ages.append(float(age))
        while len(self.ages) > keep:
            self.ages.popleft()

    @property
    def age(self) -> float | None:
        return sum(self.ages) / len(self.ages) if self.ages else None


class IoUTracker:
    """``update(boxes, frame)`` on detection frames; ``live(frame)`` on every frame. A track that missed its last
    detection asks for the next frame to be detected (``wants_detection``) rather than waiting for the schedule."""

    def __init__(self, cfg: TrackerConfig = TrackerConfig()):
        self.cfg, self.tracks, self._next = cfg, [], 1

    def reset(self) -> None:
        """A scene cut: every track ends (ids keep counting)."""
        self.tracks = []

    @property
    def created(self) -> int:
        """Tracks started so far."""
        return self._next - 1

    @property
    def wants_detection(self) -> bool:
        return any(t.missed for t in self.tracks)

    def update(self, boxes: list[Box], frame: int) -> list[Track]:
        """Match detections to tracks (highest IoU first); -> the tracks detected in this frame, new ones included,
        in the order of ``boxes``."""
        pairs = sorted(
            ((iou(t.at(frame), b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        taken_t, owner = set(), {}
        for score, ti, bi in pairs:
            if score < self.cfg.match_iou:
                break
            if ti not in taken_t and bi not in owner:
                taken_t.add(ti)
                owner[bi] = self.tracks[ti]
        for ti, t in enumerate(self.tracks):
            if ti not in taken_t:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.cfg.max_missed]
        out = []
        for bi, b in enumerate(boxes):
            t = owner.get(bi)
            if t is None:
                t = Track(self._next, tuple(b), frame)
                self._next += 1
                self.tracks.append(t)
            else:
                dt = max(1, frame - t.frame)
                t.velocity = tuple((n - o) / dt for n, o in zip(b, t.box))
                t.box, t.frame, t.missed = tuple(b), frame, 0
            out.append(t)
        return out

    def live(self) -> list[Track]:
        """Tracks found by their last detection (a track that missed it is not shown until it is found again)."""
        return [t for t in self.tracks if not t.missed]
