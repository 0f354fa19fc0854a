#!/usr/bin/env python3
"""Reference inference for a c3ae-edge bundle: numpy, Pillow, ai-edge-litert (or tflite_runtime) and manifest.json.

Knows nothing of the c3ae-edge package: every constant comes from manifest.json. Port these steps to firmware.

    python reference_infer.py [--artifact FILE] [--box CX,CY,SIDE] IMAGE...   ->  one JSON line per image
Without --box the image is taken as an aligned face chip (the manifest's ``face_box.aligned_chip`` convention).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent


def load_rgb(path: str) -> np.ndarray:
    """Decode, apply the EXIF rotation, RGB uint8 (H, W, 3)."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def cut(img: np.ndarray, x0: int, y0: int, n: int) -> np.ndarray:
    """img[y0:y0+n, x0:x0+n] with every source coordinate clamped into the image (edge padding)."""
    ys = np.clip(np.arange(y0, y0 + n), 0, img.shape[0] - 1)
    xs = np.clip(np.arange(x0, x0 + n), 0, img.shape[1] - 1)
    return img[ys][:, xs]


def area_weights(n: int, size: int) -> np.ndarray:
    """(size, n) matrix: output pixel i averages source span [i*n/size, (i+1)*n/size) weighted by overlap."""
    scale = n / size
    w = np.zeros((size, n), np.float64)
    for i in range(size):
        a, b = i * scale, (i + 1) * scale
        for j in range(int(np.floor(a)), min(n, int(np.ceil(b)))):
            w[i, j] = (min(b, j + 1) - max(a, j)) / scale
    return w


def linear_taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps, half-pixel centres, borders clamped: source index j, and 11-bit fixed-point weights of j, j+1."""
    scale = n / size
    j = np.zeros(size, np.int64)
    c = np.zeros((size, 2), np.int64)
    for i in range(size):
        f = np.float32((i + 0.5) * scale - 0.5)
        k = int(np.floor(f))
        t = float(f) - k
        if k < 0:
            k, t = 0, 0.0
        if k >= n - 1:
            k, t = n - 1, 0.0
        j[i] = k
        c[i] = (int(np.round((1 - t) * 2048)), int(np.round(t * 2048)))
    return j, np.minimum(j + 1, n - 1), c


def enlarge(patch: np.ndarray, size: int) -> np.ndarray:
    """Bilinear enlargement in integers: rows, then columns, then (a + b + 2) >> 2 after 16-bit high products."""
    n = patch.shape[0]
    j0, j1, c = linear_taps(n, size)
    p = patch.astype(np.int64)
    h = p[:, j0] * c[None, :, 0, None] + p[:, j1] * c[None, :, 1, None]  # (n, size, 3), 2048-scaled
    h = h >> 4
    v = ((h[j0] * c[:, 0, None, None]) >> 16) + ((h[j1] * c[:, 1, None, None]) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


def resize(patch: np.ndarray, size: int) -> np.ndarray:
    """n x n x 3 uint8 -> size x size x 3 uint8: area average when shrinking, bilinear when enlarging."""
    n = patch.shape[0]
    if n < size:
        return enlarge(patch, size)
    w = area_weights(n, size)
    rows = np.tensordot(w, patch.astype(np.float64), axes=(1, 0))  # (size, n, 3): two matrix products, not one n^2 x size^2 loop
    out = np.einsum("ikc,lk->ilc", rows, w)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def aligned_box(width: int, height: int, conv: dict) -> tuple[float, float, float]:
    return conv["cx"] * width, conv["cy"] * height, conv["side"] * min(width, height)


def preprocess(img: np.ndarray, box, crop: dict) -> np.ndarray:
    """Face box (cx, cy, side) -> (crops, size, size, 3) float32 normalised, channels last."""
    cx, cy, side = box
    out = []
    for s in crop["scales"]:
        n = max(2, int(round(side * s)))
        x0, y0 = int(round(cx - n / 2)), int(round(cy - n / 2))
        out.append(resize(cut(img, x0, y0, n), crop["size"]))
    x = np.stack(out).astype(np.float32) / 255.0
    return (x - np.float32(crop["mean"])) / np.float32(crop["std"])


def interpreter(path: Path, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    return it


def infer(it, x: np.ndarray, manifest: dict) -> dict:
    """One face (crops, H, W, C) float -> {"age", "bins"} following the manifest's input and output sections."""
    inp = it.get_input_details()[0]
    shape = list(inp["shape"])
    if manifest["input"]["layout"].endswith("CHW"):
        x = np.moveaxis(x, -1, -3)
    x = x.reshape(shape)
    if inp["dtype"] != np.float32:  # int8 input: q = round(x / scale) + zero_point
        scale, zp = inp["quantization"]
        x = np.clip(np.round(x / scale) + zp, -128, 127)
    it.set_tensor(inp["index"], x.astype(inp["dtype"]))
    it.invoke()
    outs = {}
    for d in it.get_output_details():  # find outputs by name, never by position
        v = it.get_tensor(d["index"]).astype(np.float32)
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            v = (v - zp) * scale
        outs[d["name"]] = v.reshape(-1)
    if "bins" not in outs and "logits" in outs:  # full-integer file ending at W1: softmax in float
        z = np.exp(outs["logits"] - outs["logits"].max())
        outs["bins"] = z / z.sum()
    if "age" not in outs:  # age = sum(bins[i] * w2[i]) + b2, in float
        dec = manifest["output"]["decode"]
        outs["age"] = np.array([outs["bins"] @ np.float32(dec["w2"]) + np.float32(dec["b2"])])
    return {"age": float(outs["age"][0]), "bins": [round(float(b), 6) for b in outs.get("bins", [])]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--manifest", default=str(HERE / "manifest.json"))
    ap.add_argument("--artifact", help="model file in the bundle (default: the manifest's primary .tflite)")
    ap.add_argument("--box", help="face box CX,CY,SIDE in pixels (default: aligned face chip)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    manifest = json.loads(Path(a.manifest).read_text())
    arts = [r for r in manifest["artifacts"] if r["file"].endswith(".tflite")]
    if not arts:
        print("no .tflite artifact in this bundle", file=sys.stderr)
        return 2
    art = next((r for r in arts if r["file"] == a.artifact), None) if a.artifact else arts[0]
    if art is None:
        print(f"{a.artifact}: not a .tflite artifact of this bundle", file=sys.stderr)
        return 2
    here = Path(a.manifest).resolve().parent
    path = (here / art["file"]).resolve()
    if path.parent != here:  # the manifest names files in its own folder, nothing else
        print(f"{art['file']}: not a file of this bundle", file=sys.stderr)
        return 2
    it = interpreter(path, a.threads)
    man = dict(manifest, input=art["input"], output=dict(manifest["output"], **art.get("output", {})))
    for path in a.images:
        img = load_rgb(path)
        box = tuple(float(v) for v in a.box.split(",")) if a.box else aligned_box(img.shape[1], img.shape[0], manifest["face_box"]["aligned_chip"])
        res = infer(it, preprocess(img, box, manifest["crop"]), man)
        print(json.dumps({"image": path, "artifact": art["file"], **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
