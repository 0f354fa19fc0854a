"""Decoded faces in memory and the batches built from them: the CropSpec, plus training augmentation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from c3ae_edge.data.crops import CropSpec, FaceBox
from c3ae_edge.data.datasets import Sample, face_box_for
from c3ae_edge.data.imageio import load_scaled


class FaceData:
    """Images decoded once (threads: PIL releases the GIL) with their face boxes."""

    def __init__(self, samples: list[Sample], spec: CropSpec, threads: int = 4):
        self.samples = samples
        self.spec = spec
        with ThreadPoolExecutor(threads) as ex:
            decoded = list(ex.map(lambda s: load_scaled(s.path), samples))
        self.images = [im for im, _ in decoded]
        self.boxes: list[FaceBox] = [face_box_for(s, im, k) for s, (im, k) in zip(samples, decoded)]
        self.ages = np.array([s.age for s in samples], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.samples)

    def crops(self, i: int, box: FaceBox | None = None) -> np.ndarray:
        return self.spec.crop(self.images[i], box or self.boxes[i])

    def batch(
        self, idx, aug: Augment | None = None, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_crops, 3, 64, 64) or (B, 3, 64, 64) float tensor and the ages."""
        out = []
        for i in idx:
            box = aug.jitter(self.boxes[i], rng) if aug else self.boxes[i]
            c = self.crops(i, box)
            out.append(aug.pixels(c, rng) if aug else c)
        x = self.spec.normalize(np.stack(out))
        if aug:
            x = aug.erase(x, rng)
        if len(self.spec.scales) == 1:
            x = x[:, 0]
        return torch.from_numpy(x), torch.from_numpy(self.ages[np.asarray(idx)])


class Augment:
    """Box jitter, horizontal flip, colour/grey jitter and random erasing of blocks (the paper's augmentation)."""

    def __init__(self, jitter: float = 0.05, erase_p: float = 0.5, color: float = 0.2, gray_p: float = 0.1):
        self.j, self.erase_p, self.color, self.gray_p = jitter, erase_p, color, gray_p

    def jitter(self, box: FaceBox, rng: np.random.Generator) -> FaceBox:
        cx, cy, side = box
        dx, dy = rng.uniform(-self.j, self.j, 2) * side
        return (cx + dx, cy + dy, side * (1 + rng.uniform(-1.5 * self.j, 1.5 * self.j)))

    def pixels(self, crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = crops.astype(np.float32)
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        if rng.random() < self.gray_p:
            x = np.repeat(x @ np.float32([0.299, 0.587, 0.114])[:, None], 3, axis=-1)
        c = 1 + rng.uniform(-self.color, self.color)
        b = rng.uniform(-self.color, self.color) * 64
        return np.clip((x - 128) * c + 128 + b, 0, 255).astype(np.uint8)

    def erase(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x: (B, n, 3, H, W) normalised; one random block per crop with probability erase_p."""
        b, n, _, h, w = x.shape
        for i in range(b):
            for k in range(n):
                if rng.random() >= self.erase_p:
                    continue
                area = rng.uniform(0.02, 0.2) * h * w
                ratio = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
                eh, ew = min(h, int(np.sqrt(area * ratio))), min(w, int(np.sqrt(area / ratio)))
                y0, x0 = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
                x[i, k, :, y0 : y0 + eh, x0 : x0 + ew] = rng.normal(0, 1, (3, eh, ew)).astype(np.float32)
        return x
