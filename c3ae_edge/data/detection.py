"""What a face detector returns, and what it is: the leaf both the detectors and their callers import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from c3ae_edge.data.crops import FaceBox


@dataclass(frozen=True)
class Detection:
    box: FaceBox  # (cx, cy, side) in source pixels
    score: float

    @property
    def rect(self) -> tuple[int, int, int, int]:
        cx, cy, s = self.box
        return (int(round(cx - s / 2)), int(round(cy - s / 2)), int(round(cx + s / 2)), int(round(cy + s / 2)))


class FaceDetector(Protocol):
    def detect(self, img: np.ndarray) -> list[Detection]: ...
