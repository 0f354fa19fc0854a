"""Photo to age, end to end, through the pipeline ``c3ae-edge predict`` runs (c3ae_edge/pipeline.py: its ``decode``,
``detect``, ``crops`` and ``ages`` calls, each stage timed), on real photos (FG-NET's full frames) and on 640x480 /
1280x720 camera-sized frames made from them.

Used by ``c3ae-edge bench`` (end-to-end rows) and ``bench/scripts/photo_to_age.py`` (detectors and runtimes side by
side: stage times, face-found rate on FG-NET, FG-NET MAE with detector boxes)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c3ae_edge.board import stats

FRAMES = ((640, 480), (1280, 720))
STAGES = ("decode", "detect", "crop", "age")


@dataclass
class InputSet:
    """Encoded images of one kind, with the FG-NET landmark box (our convention) of each face in image pixels."""

    name: str
    frame: tuple[int, int] | None
    encoded: list[bytes]
    truth: list[tuple[float, float, float]]
    ages: list[float]
    files: list[str] = field(default_factory=list)


def fgnet_samples(data: str | None, n: int | None, seed: int = 0):
    """``n`` FG-NET photos (seeded pick; all 1,002 when ``n`` is None), in file order."""
    from c3ae_edge.data import read_fgnet
    from c3ae_edge.errors import DataError
    from c3ae_edge.export.calibration import data_root

    root = data_root(data) / "fgnet"
    if not (root / "labels.csv").is_file():
        raise DataError(
            f"{root}: no FG-NET data (labels.csv); pass --data DIR (the folder holding fgnet/) or set C3AE_DATA"
        )
    fg = read_fgnet(root)
    if n is None or n >= len(fg):
        return fg
    idx = np.sort(np.random.default_rng(seed).choice(len(fg), n, replace=False))
    return [fg[i] for i in idx]


def make_frame(rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[int, int]]:
    """A camera-sized frame from a photo: scaled to fit (aspect kept), centred, edges replicated outwards (no second
    face) -> (frame, scale, (left, top))."""
    import cv2

    W, H = size
    h, w = rgb.shape[:2]
    s = min(W / w, H / h)
    nw, nh = int(round(w * s)), int(round(h * s))
    r = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    left, top = (W - nw) // 2, (H - nh) // 2
    return cv2.copyMakeBorder(r, top, H - nh - top, left, W - nw - left, cv2.BORDER_REPLICATE), s, (left, top)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8, as the pipeline decodes them (c3ae_edge/data/imageio.py ``decode_bytes``)."""
    from c3ae_edge.data.imageio import decode_bytes

    return decode_bytes(data)


def decode_pillow(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8, as ``imageio.load_rgb`` decodes a file (EXIF rotation, any mode)."""
    from PIL import Image, ImageOps

    from c3ae_edge.data.imageio import to_rgb

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return to_rgb(ImageOps.exif_transpose(im), Path("<frame bytes>"))


def input_sets(samples, frames=FRAMES) -> list[InputSet]:
    """FG-NET photos as stored (their JPEG bytes), and each photo made into every frame size (JPEG, quality 90)."""
    from c3ae_edge.data.crops import landmark_box
    from c3ae_edge.data.datasets import load_pts

    photos = InputSet("FG-NET photos", None, [], [], [], [])
    sets = [photos] + [InputSet(f"{w}x{h} frames", (w, h), [], [], [], []) for w, h in frames]
    for s in samples:
        raw = Path(s.path).read_bytes()
        img = decode(raw)
        cx, cy, side = landmark_box(load_pts(s.points))
        photos.encoded.append(raw)
        photos.truth.append((cx, cy, side))
        for fs in sets[1:]:
            fr, k, (left, top) = make_frame(img, fs.frame)
            fs.encoded.append(encode_jpeg(fr))
            fs.truth.append((cx * k + left, cy * k + top, side * k))
        for fs in sets:
            fs.ages.append(float(s.age))
            fs.files.append(Path(s.path).name)
    return sets


def iou(a, b) -> float:
    """IoU of two square boxes (cx, cy, side)."""
    ax0, ay0, bx0, by0 = a[0] - a[2] / 2, a[1] - a[2] / 2, b[0] - b[2] / 2, b[1] - b[2] / 2
    iw = max(0.0, min(ax0 + a[2], bx0 + b[2]) - max(ax0, bx0))
    ih = max(0.0, min(ay0 + a[2], by0 + b[2]) - max(ay0, by0))
    inter = iw * ih
    return inter / (a[2] ** 2 + b[2] ** 2 - inter)


MATCH_IOU = 0.4  # a detection is the annotated face if its box overlaps the landmark box this much


@dataclass
class ImageTiming:
    ns: dict[str, int]
    faces: int
    matched: bool
    cpu_ns: dict[str, int] | None = None  # this thread's CPU time per stage: what a shared machine's waits leave out


def run_image(data: bytes, truth, pipe, decoder=None) -> ImageTiming:
    """One image through ``pipe`` (an AgePipeline), each stage timed (perf_counter_ns): every face found gets its
    age, all faces of the image in one ``ages`` call."""
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    c0, t0 = cpu(), clock()
    img = (decoder or decode)(data)
    t1, c1 = clock(), cpu()
    dets = pipe.detect(img)
    t2, c2 = clock(), cpu()
    x = pipe.crops(img, [d.box for d in dets])
    t3, c3 = clock(), cpu()
    pipe.ages(x)
    t4, c4 = clock(), cpu()
    matched = bool(dets) and iou(dets[0].box, truth) >= MATCH_IOU
    return ImageTiming(
        {"decode": t1 - t0, "detect": t2 - t1, "crop": t3 - t2, "age": t4 - t3},
        len(dets),
        matched,
        {"decode": c1 - c0, "detect": c2 - c1, "crop": c3 - c2, "age": c4 - c3},
    )


def bench_pipelines(units, model_name: str, detector_name: str, threads: int = 1) -> list[tuple[dict, object]]:
    """(row, AgePipeline) per (row, backend, precision, artifact path) unit: the pipeline predict builds, with the
    bench's artifact as its age network; one detector and crop spec shared by all (they do not depend on the
    backend)."""
    from c3ae_edge.age_engine import file_engine, torch_engine
    from c3ae_edge.data.detect import get_detector
    from c3ae_edge.pipeline import AgePipeline

    ref = torch_engine(None, None, threads, model_name)
    det = get_detector(detector_name, threads)
    out = []
    for row, backend, precision, path in units:
        engine = ref if backend == "torch" else file_engine(backend, path, precision, threads, ref.spec)
        out.append((row, AgePipeline(engine, ref.spec, lambda det=det: det, threads)))
    return out


def stage_block(times: list[ImageTiming]) -> dict:
    """Per-stage and total latency distributions over the images (schema latency blocks), images/s, faces found."""
    stages = {k: stats.latency_stats([t.ns[k] for t in times]) for k in STAGES}
    total = stats.latency_stats([sum(t.ns.values()) for t in times])
    out = {
        "stages": stages,
        "latency": total,
        "throughput": {"unit": "images/s", "value": 1.0 / total["mean"]},
        "images": len(times),
        "faces_found": sum(1 for t in times if t.faces),
        "annotated_face_found": sum(1 for t in times if t.matched),
    }
    if all(t.cpu_ns for t in times):
        out["thread_cpu_p50_s"] = {
            **{k: float(np.median([t.cpu_ns[k] for t in times])) / 1e9 for k in STAGES},
            "total": float(np.median([sum(t.cpu_ns.values()) for t in times])) / 1e9,
        }
    return out


def bench_rows(common: dict, pipes: list[tuple[dict, object]], sets: list[InputSet], detector_name: str) -> list[dict]:
    """End-to-end rows for ``c3ae-edge bench``: per input set and per pipeline (``pipes``: (row, AgePipeline)).
    Decode, detect and crop run once per image (the pipelines share them); each pipeline's ``ages`` call is timed
    right after on that image's faces, all pipelines image by image, so background load hits them alike."""
    rows = []
    for st in sets:
        shared, ages = _shared_stages(st, pipes)
        for (row, _), ns in zip(pipes, ages):
            times = [
                ImageTiming({**t.ns, "age": a}, t.faces, t.matched, {**t.cpu_ns, "age": c})
                for t, (a, c) in zip(shared, ns)
            ]
            rows.append(
                {
                    **common,
                    "backend": row["backend"],
                    "precision": row["precision"],
                    **({"variant": row["variant"]} if row.get("variant") else {}),
                    "threads": row["threads"],
                    "batch": 1,
                    "age_calls": "one per image, all its faces",
                    "device": "cpu",
                    "pipeline": "photo-to-age",
                    "runs_in": "c3ae_edge.pipeline.AgePipeline: predict's pipeline (decode, detect, crops, ages)",
                    "input": st.name,
                    "frame": list(st.frame) if st.frame else None,
                    "detector": detector_name,
                    "artifact": row.get("artifact"),
                    **stage_block(times),
                }
            )
    return rows


def _shared_stages(st: InputSet, pipes) -> tuple[list[ImageTiming], list[list[tuple[int, int]]]]:
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    first = pipes[0][1]
    shared: list[ImageTiming] = []
    ages: list[list[tuple[int, int]]] = [[] for _ in pipes]
    for data, truth in zip(st.encoded, st.truth):
        c0, t0 = cpu(), clock()
        img = decode(data)
        t1, c1 = clock(), cpu()
        dets = first.detect(img)
        t2, c2 = clock(), cpu()
        x = first.crops(img, [d.box for d in dets])
        t3, c3 = clock(), cpu()
        shared.append(
            ImageTiming(
                {"decode": t1 - t0, "detect": t2 - t1, "crop": t3 - t2, "age": 0},
                len(dets),
                bool(dets) and iou(dets[0].box, truth) >= MATCH_IOU,
                {"decode": c1 - c0, "detect": c2 - c1, "crop": c3 - c2, "age": 0},
            )
        )
        for i, (_, pipe) in enumerate(pipes):
            c0, t0 = cpu(), clock()
            pipe.ages(x)
            ages[i].append((clock() - t0, cpu() - c0))
    return shared, ages
