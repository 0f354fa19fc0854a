"""BlazeFace face detection (MediaPipe's short- and full-range .tflite models) in numpy + a TFLite interpreter.

Standalone on purpose: this file imports numpy only, and ai_edge_litert's or tflite_runtime's interpreter when a
detector is built, so a bundle and the on-board runner can carry it as it is. Our own implementation of the SSD
anchor grid, box/keypoint decoding and weighted non-maximum suppression that MediaPipe's face-detection graph
describes (anchors: fixed size, offset 0.5; outputs: x, y, w, h and 6 keypoints per anchor, relative to the anchor
centre in input pixels; scores: sigmoid of logits clipped to +-100; weighted NMS at IoU 0.3). The input is the frame
letterboxed (aspect kept, centred) to the model's square size, RGB scaled to [-1, 1].

``HaarMapping`` maps a BlazeFace box onto the face-box convention the crop spec expects (OpenCV's frontal cascade's
box): measured on FG-NET by bench/scripts/measure_blazeface_boxes.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")  # preference order
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")  # the subject's right/left


@dataclass(frozen=True)
class ModelSpec:
    """One BlazeFace model: its file, square input size, anchor layout and score threshold
    (MediaPipe's graph options)."""

    name: str
    file: str
    size: int
    strides: tuple[int, ...]
    interpolated_anchor: (
        bool  # one extra anchor per cell (interpolated_scale_aspect_ratio 1.0) besides aspect ratio 1.0
    )
    min_score: float
    nms_iou: float = 0.3


MODELS = {
    "short": ModelSpec("short", "face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.5),
    "full": ModelSpec("full", "face_detection_full_range_sparse.tflite", 192, (4,), False, 0.6),
}


@dataclass
class Face:
    score: float
    box: tuple[float, float, float, float]  # (cx, cy, w, h) in source pixels
    keypoints: np.ndarray  # (6, 2) x, y in source pixels, in KEYPOINTS order


@dataclass(frozen=True)
class HaarMapping:
    """A BlazeFace detection -> the Haar-convention square (cx, cy, side). ``basis`` "eyes": unit = the distance
    between the eye keypoints, origin = their midpoint; "box": unit = (w + h) / 2 of the box, origin = its centre.
    side = scale x unit, centre = origin + (dx, dy) x unit."""

    basis: str = "eyes"
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def apply(self, face: Face) -> tuple[float, float, float]:
        if self.basis == "eyes":
            (x0, y0), (x1, y1) = face.keypoints[0], face.keypoints[1]
            ox, oy, unit = (x0 + x1) / 2, (y0 + y1) / 2, float(np.hypot(x1 - x0, y1 - y0))
        else:
            ox, oy, w, h = face.box
            unit = (w + h) / 2
        return (float(ox + self.dx * unit), float(oy + self.dy * unit), float(self.scale * unit))


# Measured on FG-NET against OpenCV's full-resolution frontal cascade (bench/scripts/measure_blazeface_boxes.py,
# bench/results/blazeface_boxes.json): median side ratio and centre offset, in units of the basis, over the 961 (short)
# and 910 (full) photos both found. IoU with the cascade's box after mapping, fitted on half, scored on the other half:
# short, eyes: median 0.906, 10th percentile 0.803 (box basis: 0.848, 0.720); full, eyes: 0.877, 0.735.
MAPPINGS = {"short": HaarMapping("eyes", 2.4261, 0.0047, 0.2839), "full": HaarMapping("eyes", 2.4596, 0.0010, 0.2797)}


def anchor_centres(spec: ModelSpec) -> np.ndarray:
    """(N, 2) anchor centres (x, y) in [0, 1]; consecutive layers with the same stride share one grid."""
    out, i = [], 0
    while i < len(spec.strides):
        stride, per_cell = spec.strides[i], 0
        while i < len(spec.strides) and spec.strides[i] == stride:
            per_cell += 1 + spec.interpolated_anchor  # aspect ratio 1.0 (+ the interpolated one) per layer
            i += 1
        n = -(-spec.size // stride)
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def resize_bilinear(img: np.ndarray, ow: int, oh: int) -> np.ndarray:
    """HxWxC uint8 -> oh x ow x C float32, bilinear with half-pixel centres (numpy only; 2-D ``take`` gathers)."""
    h, w, c = img.shape

    def taps(n_out, n_in):
        x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(np.intp)
        return i0, np.minimum(i0 + 1, n_in - 1), (x - i0).astype(np.float32)

    y0, y1, fy = taps(oh, h)
    x0, x1, fx = taps(ow, w)
    flat = np.ascontiguousarray(img).reshape(h, w * c)
    cols = [(xi[:, None] * c + np.arange(c)).ravel() for xi in (x0, x1)]
    fx = np.repeat(fx, c)
    top, bottom = np.take(flat, y0, axis=0), np.take(flat, y1, axis=0)
    rows = [np.take(r, ci, axis=1).astype(np.float32) for r in (top, bottom) for ci in cols]
    t = rows[0] + (rows[1] - rows[0]) * fx
    b = rows[2] + (rows[3] - rows[2]) * fx
    return (t + (b - t) * fy[:, None]).reshape(oh, ow, c)


def letterbox(
    rgb: np.ndarray, size: int, resize=None, out: np.ndarray | None = None
) -> tuple[np.ndarray, float, float, float]:
    """Frame -> (1, size, size, 3) float32 in [-1, 1], aspect kept and centred, zero (mid-grey) borders;
    plus (scale, pad_x, pad_y) to map tensor pixels back: source = (tensor - pad) / scale.
    ``resize(img, w, h)`` may replace the numpy bilinear resize (e.g. OpenCV's); ``out``: write there (the
    interpreter's own input buffer) instead of a new array."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    h, w = rgb.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = (resize or resize_bilinear)(rgb, nw, nh)
    px, py = (size - nw) // 2, (size - nh) // 2
    x = np.zeros((1, size, size, 3), np.float32) if out is None else out
    if out is not None and (nw < size or nh < size):
        x.fill(0)
    np.multiply(small, np.float32(2 / 255), out=x[0, py : py + nh, px : px + nw], casting="unsafe")
    x[0, py : py + nh, px : px + nw] -= 1
    return x, s, float(px), float(py)


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs (N, 16), (N,) logits -> (scores (M,), coords (M, 16)) above the score threshold, in [0, 1] input
    coordinates: cx, cy, w, h, then 6 keypoints (x, y)."""
    keep = np.flatnonzero(raw_scores >= np.log(spec.min_score / (1 - spec.min_score)))  # sigmoid(logit) >= min_score
    scores = 1 / (1 + np.exp(-np.clip(raw_scores[keep].astype(np.float64), -100, 100)))
    r, a = raw_boxes[keep] / spec.size, anchors[keep]
    r[:, 0::2] += a[:, :1]  # x offsets of the centre and keypoints (indices 2, 3 are w, h: put back below)
    r[:, 1::2] += a[:, 1:]
    r[:, 2:4] -= a
    return scores, r


def weighted_nms(scores: np.ndarray, coords: np.ndarray, iou: float) -> list[tuple[float, np.ndarray]]:
    """Blend each cluster of overlapping detections (IoU > ``iou`` with the best remaining) into one,
    weighted by score."""
    order = np.argsort(-scores, kind="stable")
    scores, coords = scores[order], coords[order]
    x0, y0 = coords[:, 0] - coords[:, 2] / 2, coords[:, 1] - coords[:, 3] / 2
    x1, y1 = coords[:, 0] + coords[:, 2] / 2, coords[:, 1] + coords[:, 3] / 2
    area = coords[:, 2] * coords[:, 3]
    left = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not left[i]:
            continue
        iw = np.maximum(np.minimum(x1[i], x1) - np.maximum(x0[i], x0), 0)
        ih = np.maximum(np.minimum(y1[i], y1) - np.maximum(y0[i], y0), 0)
        inter = iw * ih
        member = left & (inter / np.maximum(area[i] + area - inter, 1e-12) > iou)
        member[i] = True
        wts = scores[member]
        out.append((float(scores[i]), (coords[member] * wts[:, None]).sum(0) / wts.sum()))
        left &= ~member
    return out


def quiet_build(build):
    """``build()`` with fd 2 captured: the TFLite runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line is
    dropped, anything else it wrote comes back on stderr."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            return build()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            rest = [ln for ln in sink.read().decode("utf-8", "replace").splitlines() if not ln.startswith("INFO: ")]
            if rest:
                sys.stderr.write("\n".join(rest) + "\n")


def load_interpreter(model_path: str, threads: int = 1, interpreter=None):
    """A TFLite interpreter for ``model_path``: ``interpreter`` (an Interpreter class, e.g. the one that runs the age
    model), else from the first runtime that imports (RUNTIMES)."""
    import importlib

    cls = interpreter
    for mod in RUNTIMES if cls is None else ():
        try:
            cls = importlib.import_module(mod).Interpreter
            break
        except ImportError:
            continue
    if cls is None:
        raise ImportError("BlazeFace needs a TFLite runtime: pip install ai-edge-litert (or tflite-runtime on a board)")
    it = cls(model_path=str(model_path), num_threads=threads)
    quiet_build(it.allocate_tensors)
    return it


class BlazeFace:
    """``detect(rgb) -> [Face]``, largest first, for an HxWx3 RGB (or HxW grey) uint8 frame."""

    def __init__(self, model_path: str, spec: ModelSpec, threads: int = 1, resize=None, interpreter=None):
        self.spec, self.resize = spec, resize
        self.it = load_interpreter(model_path, threads, interpreter)
        self.anchors = anchor_centres(spec)
        inp = self.it.get_input_details()[0]
        outs = self.it.get_output_details()
        if tuple(inp["shape"]) != (1, spec.size, spec.size, 3) or sorted(int(o["shape"][-1]) for o in outs) != [1, 16]:
            raise ValueError(f"{model_path}: not a BlazeFace {spec.name}-range model (input {inp['shape']})")
        self.input_index = inp["index"]
        self.box_index = next(o["index"] for o in outs if o["shape"][-1] == 16)
        self.score_index = next(o["index"] for o in outs if o["shape"][-1] == 1)
        if sum(int(o["shape"][1]) for o in outs) != 2 * len(self.anchors):
            raise ValueError(f"{model_path}: {outs[0]['shape'][1]} boxes, the anchor grid has {len(self.anchors)}")

    def detect(self, rgb: np.ndarray) -> list[Face]:
        s, px, py = letterbox(rgb, self.spec.size, self.resize, self.it.tensor(self.input_index)())[
            1:
        ]  # in place; no view kept
        self.it.invoke()
        scores, coords = decode(
            self.it.get_tensor(self.box_index)[0],
            self.it.get_tensor(self.score_index)[0, :, 0],
            self.anchors,
            self.spec,
        )
        faces = []
        for score, c in weighted_nms(scores, coords, self.spec.nms_iou):
            c = c * self.spec.size
            c[0::2] -= px
            c[1::2] -= py
            c[2:4] += (px, py)  # w, h are sizes, not positions
            c /= s
            faces.append(Face(score, (float(c[0]), float(c[1]), float(c[2]), float(c[3])), c[4:].reshape(6, 2)))
        return sorted(faces, key=lambda f: -(f.box[2] + f.box[3]))
