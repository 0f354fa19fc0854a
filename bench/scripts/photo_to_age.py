"""Photo to age, detectors and age networks side by side, measured in one run through the pipeline object
``c3ae-edge predict`` runs (c3ae_edge/pipeline.py), by the bench's own code (c3ae_edge/bench/e2e.py):

    python bench/scripts/photo_to_age.py [--detectors haar,haar-fast] [--timing 60] [--quality all|N]
        [--artifact FILE ...] [--json out.json] [--markdown out.md]

- per-stage times (decode, detect, crop, age network) over ``--timing`` FG-NET photos and the same photos made into
  640x480 and 1280x720 frames, 1 thread, every (detector, age network) pipeline interleaved image by image
  (background load hits all alike); the age networks: predict's default (the shipped int8 artifact), its fp32
  artifact, PyTorch eager (``--runtime torch``) and any ``--artifact``;
- face-found rate on the FG-NET photos (any face; the annotated face: IoU >= 0.4 with its landmark box);
- FG-NET MAE of the shipped model with the detector's largest box (no fine-tuning), with landmark boxes for reference,
  and the box mapping between detectors (median side ratio, centre offset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from c3ae_edge.bench import e2e  # noqa: E402
from c3ae_edge.board import onboard  # noqa: E402


def quality(detectors: dict, samples, model, spec) -> dict:
    """Face-found rates, MAE with detector boxes and landmark boxes, and each detector's box against the first's."""
    boxes, truth, ages, imgs = detect_all(detectors, samples)
    lm_pred = predict_ages(model, spec, [(img, lm) for img, lm in zip(imgs, truth)])
    out = {"photos": len(samples), "mae_landmark_boxes": float(np.abs(lm_pred - ages).mean()), "detectors": {}}
    both = [i for i in range(len(samples)) if all(boxes[k][i] is not None for k in detectors)]
    for k in detectors:
        out["detectors"][k] = detector_quality(boxes[k], truth, ages, imgs, lm_pred, both, model, spec)
    ref = next(iter(detectors))
    for k in list(detectors)[1:]:
        out["detectors"][k]["vs_" + ref] = box_mapping([(boxes[ref][i], boxes[k][i]) for i in both])
    return out


def detect_all(detectors: dict, samples) -> tuple[dict, list, np.ndarray, list]:
    """Each detector's largest box per photo (None: no face), the landmark boxes, the true ages and the images."""
    from c3ae_edge.data.crops import landmark_box
    from c3ae_edge.data.datasets import load_pts
    from c3ae_edge.data.imageio import load_rgb

    boxes = {k: [] for k in detectors}
    ages, truth, imgs = [], [], []
    for s in samples:
        img = load_rgb(s.path)
        truth.append(landmark_box(load_pts(s.points)))
        ages.append(s.age)
        for k, d in detectors.items():
            dets = d.detect(img)
            boxes[k].append(dets[0].box if dets else None)
        imgs.append(img)
    return boxes, truth, np.asarray(ages), imgs


def predict_ages(model, spec, pairs) -> np.ndarray:
    """The model's ages for (image, box) pairs, in chunks of 256."""
    import torch

    if not pairs:
        return np.zeros(0)
    x = np.stack([spec.model_input(img, b) for img, b in pairs])
    with torch.inference_mode():
        return np.concatenate(
            [model(torch.from_numpy(x[i : i + 256])).numpy().reshape(-1) for i in range(0, len(x), 256)]
        )


def detector_quality(boxes: list, truth: list, ages: np.ndarray, imgs: list, lm_pred, both, model, spec) -> dict:
    """One detector: faces found, the annotated face found, MAE with its boxes (all found, and on the photos every
    detector found) against MAE with landmark boxes on the same photos, and its boxes' IoU with the landmark boxes."""
    found = [i for i, b in enumerate(boxes) if b is not None]
    matched = [i for i in found if e2e.iou(boxes[i], truth[i]) >= e2e.MATCH_IOU]
    pred = predict_ages(model, spec, [(imgs[i], boxes[i]) for i in found])
    err = np.abs(pred - ages[found])
    on_both = np.isin(found, both)
    n = len(imgs)
    return {
        "face_found": len(found),
        "face_found_rate": len(found) / n,
        "annotated_face_found": len(matched),
        "annotated_face_rate": len(matched) / n,
        "mae_detector_boxes": float(err.mean()) if len(err) else None,
        "mae_on_photos_all_detectors_found": float(err[on_both].mean()) if on_both.any() else None,
        "mae_landmark_boxes_same_photos": float(np.abs(lm_pred[found] - ages[found]).mean()) if found else None,
        "median_iou_vs_landmark_box": float(np.median([e2e.iou(boxes[i], truth[i]) for i in found])) if found else None,
    }


def box_mapping(pairs: list) -> dict:
    """How a detector's boxes map onto the reference detector's, over (reference box, box) pairs."""
    return {
        "photos": len(pairs),
        "median_iou": float(np.median([e2e.iou(a, b) for a, b in pairs])),
        "min_iou": float(np.min([e2e.iou(a, b) for a, b in pairs])),
        "median_side_ratio": float(np.median([b[2] / a[2] for a, b in pairs])),
        "median_dx_per_side": float(np.median([(b[0] - a[0]) / a[2] for a, b in pairs])),
        "median_dy_per_side": float(np.median([(b[1] - a[1]) / a[2] for a, b in pairs])),
    }


DECODERS = {"opencv": e2e.decode, "pillow": e2e.decode_pillow}


def timing(pipes: dict, sets, reps: int = 1, decoders=("opencv",)) -> list[dict]:
    """Every (set, decoder, (detector, age network)) combination, interleaved image by image; each pipeline is the
    object ``c3ae-edge predict`` runs (c3ae_edge.pipeline.AgePipeline), timed through its own stage calls."""
    rows = []
    for st in sets:
        times = {(c, k): [] for c in decoders for k in pipes}
        for _ in range(reps):
            for data, truth in zip(st.encoded, st.truth):
                for (c, k), acc in times.items():
                    acc.append(e2e.run_image(data, truth, pipes[k], DECODERS[c]))
        for (c, (d, f)), ts in times.items():
            rows.append(
                {
                    "input": st.name,
                    "frame": st.frame,
                    "decoder": c,
                    "detector": d,
                    "age_network": f,
                    **e2e.stage_block(ts),
                }
            )
    return rows


def pipelines(detectors: list[str], artifacts: list[str], threads: int = 1) -> dict:
    """(detector, age network) -> AgePipeline on ``threads``: predict's default (the shipped int8 and fp32
    artifacts under ai-edge-litert), PyTorch eager (the old path) and any ``--artifact`` file."""
    from c3ae_edge import artifact_set
    from c3ae_edge.age_engine import file_engine, open_engine, torch_engine
    from c3ae_edge.data.detect import get_detector
    from c3ae_edge.export.registry import list_backends
    from c3ae_edge.pipeline import AgePipeline

    shipped = artifact_set.shipped()
    engines = {
        f"predict default ({shipped.artifact()['file']})": open_engine(shipped, threads=threads),
        f"predict --precision fp32 ({shipped.artifact('fp32')['file']})": open_engine(shipped, "auto", "fp32", threads),
        "predict --runtime torch (PyTorch eager fp32)": torch_engine(None, shipped, threads),
    }
    for f in artifacts:
        p = Path(f)
        backend = next((s.name for s in list_backends() if s.suffix == p.suffix), None)
        if backend is None:
            raise SystemExit(f"{p}: no backend reads *{p.suffix}")
        prec = "int8" if "int8" in p.name else "fp32"
        engines[f"{backend} {p.name}"] = file_engine(backend, p, prec, threads, shipped.spec)
    out = {}
    for d in detectors:
        det = get_detector(d, threads)
        for name, eng in engines.items():
            out[(d, name)] = AgePipeline(eng, shipped.spec, lambda det=det: det, threads)
    return out


def markdown(doc: dict) -> str:
    """The before/after tables of one run."""
    env = doc["environment"]
    L = [
        "# Photo to age: detectors side by side",
        "",
        f"Command: `{doc['command']}` ({doc.get('wall_time_s')} s wall). CPU: {env['cpu']['model']}, "
        f"{env['cpu']['logical_cores']} logical cores, 1 thread (OpenCV, PyTorch and each runtime), load average "
        f"{env['load_average']} at the start, {env['load_average_end']} at the end (a shared machine: absolute times "
        "are inflated; the detectors and age networks are interleaved image by image, so ratios within the run hold).",
        "",
    ]
    if doc.get("quality"):
        L += quality_lines(doc["quality"])
    if doc.get("timing"):
        L += timing_lines(doc["timing"])
    return "\n".join(L) + "\n"


def quality_lines(q: dict) -> list[str]:
    """The FG-NET table (face found, MAE per detector) and each detector's boxes against the reference's."""
    L = [
        f"## FG-NET, {q['photos']} photos (shipped model, no fine-tuning)",
        "",
        f"MAE with the landmark boxes (all photos): {q['mae_landmark_boxes']:.3f}.",
        "",
        "| detector | face found | annotated face found (IoU >= 0.4) | MAE, detector's largest box | MAE, photos "
        "every detector found | MAE with landmark boxes, same photos | median IoU vs landmark box |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k, d in q["detectors"].items():
        L.append(
            f"| {k} | {d['face_found']} ({100 * d['face_found_rate']:.1f}%) | {d['annotated_face_found']} "
            f"({100 * d['annotated_face_rate']:.1f}%) | {d['mae_detector_boxes']:.3f} | "
            f"{d['mae_on_photos_all_detectors_found']:.3f} | {d['mae_landmark_boxes_same_photos']:.3f} | "
            f"{d['median_iou_vs_landmark_box']:.3f} |"
        )
    for k, d in q["detectors"].items():
        for ref, m in ((r[3:], v) for r, v in d.items() if r.startswith("vs_")):
            L += [
                "",
                f"{k} boxes vs {ref} boxes on the {m['photos']} photos both found: median IoU "
                f"{m['median_iou']:.3f}, median side ratio {m['median_side_ratio']:.3f}, median centre offset "
                f"({m['median_dx_per_side']:+.4f}, {m['median_dy_per_side']:+.4f}) x side.",
            ]
    return L


def timing_lines(rows: list[dict]) -> list[str]:
    """The stage-time table: wall p50 per stage, the thread's CPU time in brackets."""
    L = [
        "",
        "## Stage times, ms per image (p50), 1 thread",
        "",
        "Wall time (`perf_counter_ns`, what a user waits) and, in brackets, the thread's CPU time "
        "(`thread_time_ns`: what is left once the waits for a core on a shared machine are taken out; an idle "
        "machine's wall time is close to it).",
        "",
        "| input | decoder | detector | age network | decode | detect | crop | age network | total p50 | total "
        "mean | images/s | faces |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        st = r["stages"]
        c = r.get("thread_cpu_p50_s") or {}

        def cell(v, k, c=c):
            return f"{v * 1e3:.2f}" + (f" ({c[k] * 1e3:.2f})" if k in c else "")

        L.append(
            f"| {r['input']} | {r.get('decoder', 'pillow')} | {r['detector']} | {r['age_network']} | "
            + " | ".join(cell(st[k]["p50"], k) for k in e2e.STAGES)
            + f" | {cell(r['latency']['p50'], 'total')} | {r['latency']['mean'] * 1e3:.2f} | "
            f"{r['throughput']['value']:.1f} | {r['faces_found']}/{r['images']} |"
        )
    return L


def _print_timing(rows: list[dict]) -> None:
    for r in rows:
        st = r["stages"]
        print(
            f"{r['input']:16s} {r['decoder']:6s} {r['detector']:14s} {r['age_network']:50s} "
            + " ".join(f"{k} {st[k]['p50'] * 1e3:6.2f}" for k in e2e.STAGES)
            + f" (cpu total {r['thread_cpu_p50_s']['total'] * 1e3:.2f})"
            + f" | total p50 {r['latency']['p50'] * 1e3:6.2f} ms, {r['throughput']['value']:.1f} img/s, faces "
            f"{r['faces_found']}/{r['images']}",
            file=sys.stderr,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--detectors", default="haar,haar-fast,blazeface")
    ap.add_argument(
        "--decoders",
        default="opencv",
        help="JPEG decoders timed: opencv (the bench's), pillow, or both (comma-separated)",
    )
    ap.add_argument("--timing", type=int, default=60, help="FG-NET photos timed (and made into frames)")
    ap.add_argument(
        "--quality", default="all", help="FG-NET photos for face-found rate and MAE: all (1,002) or a number; 0 skips"
    )
    ap.add_argument(
        "--artifact", action="append", default=[], help="also time this artifact's age network (.onnx, .tflite, .xml)"
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None, help="only render --markdown from an earlier run's JSON")
    a = ap.parse_args()
    if a.from_json:
        (a.markdown or Path("/dev/stdout")).write_text(markdown(json.loads(a.from_json.read_text())))
        return

    import cv2

    from c3ae_edge.data.detect import get_detector
    from c3ae_edge.weights import load_model

    cv2.setNumThreads(1)  # as predict's pipeline sets its threads (--threads 1)
    t0 = time.time()
    model, spec, _ = load_model(None, None)
    doc = {
        "command": "python bench/scripts/photo_to_age.py " + " ".join(sys.argv[1:]),
        "threads": 1,
        "environment": onboard.environment(1),
    }
    if a.quality != "0":
        detectors = {n: get_detector(n) for n in a.detectors.split(",")}
        samples = e2e.fgnet_samples(a.data, None if a.quality == "all" else int(a.quality))
        doc["quality"] = quality(detectors, samples, model, spec)
        print(json.dumps(doc["quality"], indent=1), file=sys.stderr)
    if a.timing:
        pipes = pipelines(a.detectors.split(","), a.artifact, 1)
        sets = e2e.input_sets(e2e.fgnet_samples(a.data, a.timing))
        doc["timing"] = timing(pipes, sets, decoders=a.decoders.split(","))
        _print_timing(doc["timing"])
    doc["wall_time_s"] = round(time.time() - t0, 1)
    doc["environment"]["load_average_end"] = onboard.environment(1)["load_average"]
    text = json.dumps(doc, indent=1) + "\n"
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text)
    else:
        print(text)
    if a.markdown:
        a.markdown.write_text(markdown(doc))


if __name__ == "__main__":
    main()
