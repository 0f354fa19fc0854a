"""``c3ae-edge bench``: every model x backend x precision x threads x batch, timed the same way, one JSON document.
The CPU run over exported artifacts lives here; ``--device cuda`` (and ``--variants``) times PyTorch forms
(c3ae_edge.bench.forms_run)."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from c3ae_edge.bench.budget import Budget, RowClock, warm_up
from c3ae_edge.bench.config import BenchConfig, all_backends, bench_precisions, installed_backends
from c3ae_edge.bench.inputs import N_CALIBRATION_FACES, N_TIMING_FACES, batch_of, build_model, faces, input_note
from c3ae_edge.bench.progress import Progress
from c3ae_edge.bench.rows import BenchRow
from c3ae_edge.bench.sink import RowSink
from c3ae_edge.board import onboard, stats
from c3ae_edge.export.convert import Converted, convert, converted

__all__ = [
    "BenchConfig",
    "N_CALIBRATION_FACES",
    "N_TIMING_FACES",
    "all_backends",
    "batch_of",
    "bench_precisions",
    "build_model",
    "faces",
    "installed_backends",
    "run",
]


def _efficiency(macc: int, batch: int, p50: float, precision: str, peak: dict) -> dict | None:
    key = "int8" if precision == "int8" else "fp32"
    pk = (peak.get(key) or {}).get("macs_per_s")
    if not pk:
        return None
    achieved = macc * batch / p50
    row = {
        "achieved_macs_per_s": achieved,
        "peak_macs_per_s": pk,
        "peak_kernel": peak[key]["kernel"],
        "fraction_of_peak": achieved / pk,
    }
    if achieved > pk:  # the peak kernel was not this CPU's fastest: no fraction rather than one over 100%
        row.update(fraction_of_peak=None, note="row ran faster than the measured peak kernel: no efficiency figure")
    return row


def plan(cfg: BenchConfig) -> list[tuple[str, str]]:
    """(backend, precision) pairs the run will time for each model (torch: fp32 only; artifacts: what their spec
    exports)."""
    from c3ae_edge.export.registry import get_backend

    pairs = []
    for b in cfg.backends:
        precs = ("fp32",) if b == "torch" else get_backend(b).spec.precisions + tuple(get_backend(b).bench.run_as)
        pairs += [(b, p) for p in cfg.precisions if p in precs]
    return pairs


def run(cfg: BenchConfig, quiet: bool = False, out: str | Path | None = None) -> dict:
    """The whole bench -> the JSON document (schema ``c3ae-edge-bench/1``); with ``out``, the document is also written
    there as it is measured (model by model, marked partial until the end)."""
    if cfg.forms_run:
        from c3ae_edge.bench import forms_run

        return forms_run.run(cfg, quiet, out)
    import torch

    from c3ae_edge.bench.peak import measure_peak

    cfg.resolve().check()
    t_start = time.time()
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set once in this process
            pass
    peaks = {t: measure_peak(t) for t in cfg.threads}
    pairs = plan(cfg)
    face_cache: dict[int, tuple] = {}
    with (
        tempfile.TemporaryDirectory(prefix="c3ae-bench-") as tmp,
        Progress(len(cfg.models) * len(pairs) * len(cfg.threads) * len(cfg.batches), quiet) as prog,
        RowSink(out, _head(cfg, peaks, t_start)) as sink,
    ):
        exported = _export_first(cfg, pairs, face_cache, Path(tmp), prog)
        for name in cfg.models:
            rows = _model_rows(name, cfg, pairs, face_cache, peaks, exported.get(name, {}), prog)
            sink.head["config"]["timing_faces"] = face_cache[_crops(name)][3]
            sink.add([r.to_json() for r in rows])
        sink.head["environment"] = _environment(cfg, peaks)
        sink.head["config"]["wall_time_s"] = round(time.time() - t_start, 1)
        return sink.document(partial=False)


def _crops(name: str) -> int:
    from c3ae_edge.models import get_model_cfg

    return get_model_cfg(name).crops


def _export_first(cfg: BenchConfig, pairs, face_cache: dict, tmp: Path, prog) -> dict:
    """Every artifact of the run, before anything is timed (the progress bar grows by the variant rows)."""
    if not (pairs and any(b != "torch" for b, _ in pairs)):
        return {}
    for name in cfg.models:
        if _crops(name) not in face_cache:
            prog.step("loading faces")
            face_cache[_crops(name)] = faces(_crops(name), cfg.data, cfg.seed)
    exported = export_all(cfg, pairs, face_cache, tmp, prog)
    prog.grow(sum(1 for m in exported.values() for k in m if k[2]) * len(cfg.threads) * len(cfg.batches))
    return exported


def _model_rows(name: str, cfg: BenchConfig, pairs, face_cache: dict, peaks: dict, exported: dict, prog):
    """One model's typed rows: faces, model, reference ages, then every backend row timed interleaved."""
    import torch

    from c3ae_edge.bench import paper
    from c3ae_edge.models.profile import profile_model

    prog.step(f"{name}: loading faces and model")
    if _crops(name) not in face_cache:
        face_cache[_crops(name)] = faces(_crops(name), cfg.data, cfg.seed)
    x_all = face_cache[_crops(name)][0]
    model, wnote = build_model(name, cfg.seed)
    prof = profile_model(model)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x_all)).numpy().reshape(-1)
    common = {
        "model": name,
        "weights": wnote,
        "params": prof.params,
        "macc": {"model": prof.macc},
        "paper": paper.paper_ref(name),
    }
    rows = _bench_model(model, common, pairs, cfg, x_all, ref, peaks, exported, prog)
    return [BenchRow.from_json(r) for r in rows]


def _environment(cfg: BenchConfig, peaks: dict) -> dict:
    import torch

    return onboard.environment(
        cfg.threads[0] if len(cfg.threads) == 1 else cfg.threads,
        {
            "peak": {str(t): p for t, p in peaks.items()},
            "torch_threads": {"intra_op": "= threads", "interop": torch.get_num_interop_threads()},
        },
    )


def _head(cfg: BenchConfig, peaks: dict, t_start: float) -> dict:
    """Everything in the document but the rows (the environment is taken again at the end)."""
    from c3ae_edge.bench import paper

    return {
        "schema": onboard.SCHEMA,
        "config": {
            **asdict(cfg),
            "input": input_note(cfg.seed),
            "timing_faces": [],
            "timing": f"per model, every row's timed runs interleaved in {BLOCKS} round-robin blocks (background "
            f"load hits all backends alike), after load, first inference and {cfg.warmup} warm-up runs; a row stops at "
            f"{cfg.runs} runs, or once it has timed for {cfg.budget_s} s with at least {cfg.min_runs} runs",
            "photo_to_age": (
                f"{cfg.e2e} FG-NET photos (seed {cfg.seed}) as stored, and made into 640x480 and 1280x720 frames (fit, "
                "centred, edges replicated, JPEG q90); per image: decode (from bytes: OpenCV for JPEG, else Pillow), "
                f"detect ({cfg.detector}), crop (CropSpec), age network per artifact (all faces of the image in one "
                "call); predict's pipeline (c3ae_edge.pipeline.AgePipeline); decode/detect/crop once per image, every "
                "artifact timed on those faces"
            )
            if cfg.e2e
            else None,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
        },
        "environment": _environment(cfg, peaks),
        "paper": paper.document(),
    }


BLOCKS = 20  # round-robin blocks per model: each row runs runs/BLOCKS timed calls per block


def _bench_model(
    model, common: dict, pairs, cfg: BenchConfig, x_all, ref, peaks: dict, exported: dict, prog
) -> list[dict]:
    """Graph reports, then load each row (load time, first inference, warm-up, peak RSS), then time all rows
    interleaved."""
    rows, live = _load_rows(model, common, pairs, cfg, x_all, ref, exported, prog)
    _time_interleaved(common["model"], live, cfg, prog)
    for row, _, _, _, clock, _ in live:
        if "error" in row:
            continue
        lat = stats.latency_stats(clock.ns)
        row.update(
            {
                "latency": lat,
                "throughput": {"unit": "samples/s", "value": row["batch"] / lat["p50"]},
                "timing": clock.budget.record(clock),
                "efficiency": _efficiency(
                    row["macc"]["model"], row["batch"], lat["p50"], row["precision"], peaks[row["threads"]]
                ),
            }
        )
        prog.row(_row_line(common["model"], row, lat))
    if cfg.e2e and common.get("weights") == "shipped weights":
        ok = [(r, path) for r, _, _, _, _, path in live if r["batch"] == 1 and r["threads"] == cfg.threads[0]]
        units = [(r, r["backend"], r["precision"], path) for r, path in ok if "error" not in r]
        rows += _photo_to_age(model, common, units, cfg, prog)
    return rows


def _row_line(name: str, row: dict, lat: dict) -> str:
    what = row["precision"] + (" " + row["variant"] if row.get("variant") else "")
    return (
        f"{name:22s} {row['backend']:8s} {what:11s} {row['threads']}t b{row['batch']}: p50 {lat['p50'] * 1e6:9.1f} us "
        f"[{lat['p50_ci95'][0] * 1e6:.1f}, {lat['p50_ci95'][1] * 1e6:.1f}], {lat['count']} runs"
    )


def _load_rows(model, common: dict, pairs, cfg: BenchConfig, x_all, ref, exported: dict, prog):
    """-> (every row, the live ones: (row, forward, input, before-block hook, clock, artifact path))."""
    from c3ae_edge.bench import graph
    from c3ae_edge.export.quiet import quiet

    name = common["model"]
    rows: list[dict] = []
    live: list[tuple] = []
    base_t = graph.source_transposes(model, x_all)
    units = [(b, p, None) for b, p in pairs]
    units += [(b, p, v) for (b, p, v) in exported if v and (b, p) in pairs]
    budget = Budget(cfg.runs, cfg.budget_s, cfg.min_runs, cfg.warmup)
    for backend, prec, variant in units:
        art, report, err = None, {}, None
        if backend != "torch":
            art, err = exported.get((backend, _run_as(backend, prec), variant), (None, "export failed: not exported"))
            if art is not None:
                prog.step(f"{name}: graph report {backend} {prec}")
                with quiet():
                    report = graph.report(backend, art.path, base_t, cfg.threads[0])
        export_s = round(art.seconds, 2) if art else None
        for threads in cfg.threads:
            for b in cfg.batches:
                prog.step(f"{name}: load {backend} {prec}{' ' + variant if variant else ''} {threads}t b{b}")
                row = _row_head(common, backend, prec, variant, threads, b, export_s)
                if not err:
                    row, fwd, x, hook = _prepare(row, backend, prec, model, art, report, x_all, ref, b, threads, cfg)
                    if fwd is not None:
                        live.append((row, fwd, x, hook, RowClock(budget), art.path if art else None))
                if "error" in row or err:
                    row.setdefault("error", err)
                    prog.row(f"{name} {backend} {prec} {threads}t b{b}: {row['error']}")
                rows.append(row)
    return rows, live


def _row_head(common: dict, backend: str, prec: str, variant, threads: int, b: int, export_s) -> dict:
    from c3ae_edge.bench.forward import runtime_options

    return {
        **common,
        "backend": backend,
        "precision": prec,
        **({"variant": variant} if variant else {}),
        "threads": threads,
        "batch": b,
        "device": "cpu",
        "runtime_options": runtime_options(backend),
        **({"export": {"unit": "s", "time": export_s}} if export_s else {}),
    }


def _time_interleaved(name: str, live: list[tuple], cfg: BenchConfig, prog) -> None:
    """Round-robin blocks over the live rows; each row stops at its runs or its time budget (RowClock)."""
    per = [max(1, cfg.runs // BLOCKS)] * BLOCKS
    per[-1] += cfg.runs - sum(per) if cfg.runs >= BLOCKS else 0
    per = [p for p in per if p] if cfg.runs >= BLOCKS else [cfg.runs]
    for k, n in enumerate(per):
        prog.step(f"{name}: timing block {k + 1}/{len(per)} ({len(live)} rows)")
        for row, fwd, x, hook, clock, _ in live:
            if "error" in row or clock.done:
                continue
            if hook:
                hook()
            try:
                clock.block(fwd, n, len(per) - k, x)
            except Exception as e:
                row["error"] = f"run failed: {type(e).__name__}: {_first_line(e)}"


_E2E_SETS: dict = {}


def _photo_to_age(model, common: dict, units, cfg: BenchConfig, prog) -> list[dict]:
    """End-to-end rows (c3ae_edge/bench/e2e.py): FG-NET photos and 640x480 / 1280x720 frames made from them, each
    row the pipeline ``predict`` runs (c3ae_edge/pipeline.py) with that row's artifact, on the bench's thread count."""
    import cv2

    from c3ae_edge.bench import e2e
    from c3ae_edge.data.detect import resolve_detector

    prog.step(f"{common['model']}: photo to age ({cfg.e2e} photos, {cfg.detector})")
    key = (cfg.data, cfg.e2e, cfg.seed)
    if key not in _E2E_SETS:
        _E2E_SETS[key] = e2e.input_sets(e2e.fgnet_samples(cfg.data, cfg.e2e, cfg.seed))
    cv2.setNumThreads(cfg.threads[0])  # as AgePipeline.build sets it for predict
    pipes = e2e.bench_pipelines(units, common["model"], cfg.detector, cfg.threads[0])
    rows = e2e.bench_rows(common, pipes, _E2E_SETS[key], resolve_detector(cfg.detector))
    for r in rows:
        st = r["stages"]
        prog.log(
            f"{r['model']:22s} {r['backend']:8s} {r['precision']:5s} {r['input']:16s}: "
            + " + ".join(f"{k} {st[k]['p50'] * 1e3:.2f}" for k in e2e.STAGES)
            + f" ms; p50 {r['latency']['p50'] * 1e3:.2f} ms, {r['throughput']['value']:.1f} images/s, faces "
            f"{r['faces_found']}/{r['images']}"
        )
    return rows


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else ""


def _run_as(backend: str, prec: str) -> str:
    """The artifact precision a bench row runs (a bench-only precision such as OpenVINO's bf16 runs the fp32 file)."""
    from c3ae_edge.export.registry import get_backend

    return prec if backend == "torch" else get_backend(backend).bench.run_as.get(prec, prec)


def export_tasks(cfg: BenchConfig, pairs) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """(model, backend, precisions, variant) units of export work; a backend with ``bench.int8_from_fp32`` (ONNX)
    keeps its precisions together (int8 is quantised from the fp32 file); a rewrite variant (c3ae_edge.export.rewrite)
    is one more unit where it applies."""
    from c3ae_edge.export.registry import get_backend
    from c3ae_edge.export.rewrite import VARIANTS
    from c3ae_edge.models import create_model

    tasks = []
    for name in cfg.models:
        model = None
        for backend in dict.fromkeys(b for b, _ in pairs if b != "torch"):
            bench = get_backend(backend).bench
            precs = tuple(dict.fromkeys(_run_as(backend, p) for b, p in pairs if b == backend))
            together = bench.int8_from_fp32 is not None  # one worker: its int8 is made from its fp32 file
            tasks += [(name, backend, precs, None)] if together else [(name, backend, (p,), None) for p in precs]
            for p in precs:
                for v in bench.variants.get(p, ()):  # rewrite variant rows: only where they were measured to help
                    model = model or create_model(name)
                    if VARIANTS[v][0](model):
                        tasks.append((name, backend, (p,), v))
    return tasks


def export_all(cfg: BenchConfig, pairs, face_cache: dict, root: Path, prog) -> dict:
    """Every artifact of the run, before any timing, in worker processes (one per core; nothing is timed meanwhile)
    -> {model: {(backend, precision, variant): (Converted | None, error | None)}}."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from c3ae_edge.models import get_model_cfg

    tasks = export_tasks(cfg, pairs)
    out: dict = {name: {} for name in cfg.models}
    workers = max(1, min(len(tasks), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
        futs = {}
        for name, backend, precs, variant in tasks:
            _, _, cal, _ = face_cache[get_model_cfg(name).crops]
            x1 = face_cache[get_model_cfg(name).crops][0][:1]
            futs[ex.submit(_export_task, name, backend, precs, x1, cal, str(root / name), cfg.seed, variant)] = (
                name,
                backend,
                precs,
                variant,
            )
        for i, f in enumerate(as_completed(futs)):
            name, backend, precs, variant = futs[f]
            prog.step(
                f"exported {i + 1}/{len(futs)}: {name} {backend} {'/'.join(precs)}{' ' + variant if variant else ''}"
            )
            try:
                res = f.result()
            except Exception as e:  # a crashed worker is an error row per precision
                res = {p: (None, f"export failed: {type(e).__name__}: {_first_line(e)}") for p in precs}
            for p, done in res.items():
                out[name][(backend, p, variant)] = done
    return out


def _export_task(
    name: str,
    backend_name: str,
    precs: tuple[str, ...],
    x1: np.ndarray,
    cal: np.ndarray,
    out: str,
    seed: int,
    variant: str | None = None,
) -> dict:
    """Worker: build the model exactly as the main process does (plus the variant's rewrite) and export the
    precisions."""
    import torch

    from c3ae_edge.export.backends.common import head_weights
    from c3ae_edge.export.registry import get_backend
    from c3ae_edge.export.rewrite import apply

    torch.set_num_threads(1)
    model, _ = build_model(name, seed)
    model, _ = apply(model, (variant,) if variant else (), x1)
    backend, decode, res = get_backend(backend_name), head_weights(model), {}
    for p in precs:
        try:
            res[p] = (export_artifact(backend, model, x1, cal, p, Path(out), decode, variant), None)
        except Exception as e:  # one failed export is one error row, not a dead bench
            res[p] = (None, f"export failed: {type(e).__name__}: {_first_line(e)}")
    return res


def export_artifact(
    backend,
    model,
    example: np.ndarray,
    cal: np.ndarray,
    prec: str,
    out: Path,
    decode: dict | None,
    variant: str | None = None,
) -> Converted:
    """One artifact per (model, backend, precision) per run, in the run's temp dir, by export's conversion step
    (c3ae_edge.export.convert); a bench-only precision (``bench.run_as``: OpenVINO's bf16) runs the artifact of the
    precision it names; an int8 is quantised from this run's fp32 file where the backend can (ONNX)."""
    out.mkdir(parents=True, exist_ok=True)
    src = backend.bench.run_as.get(prec, prec)
    stem = f"{model.cfg.name}_{backend.spec.name}" + (f"_{variant}" if variant else "")
    existing = out / f"{stem}_{src}{backend.spec.suffix}"
    if existing.exists():
        return converted(backend, existing)
    opts = {"stem": stem, "metadata": {"decode": decode} if decode else {}}
    fp32 = out / f"{stem}_fp32{backend.spec.suffix}"
    return convert(backend, model, example, out, src, cal, opts, fp32=fp32)


def _prepare(
    row: dict,
    backend: str,
    prec: str,
    model,
    art: Converted | None,
    report: dict,
    x_all,
    ref,
    b: int,
    threads: int,
    cfg: BenchConfig,
):
    """Load, first inference, warm-up, memory and parity for one row -> (row, forward, input, before-block hook)."""
    import torch

    from c3ae_edge.bench.forward import artifact_forward, output_batch, torch_forward
    from c3ae_edge.export.parity import vs_pytorch
    from c3ae_edge.export.registry import get_backend

    x = batch_of(x_all, b)
    try:
        onboard.peak_rss_reset()
        rss0 = onboard.rss_mb()
        t = time.perf_counter_ns()
        fwd = torch_forward(model, threads) if art is None else artifact_forward(backend, art.path, threads, prec, b)
        load_s = (time.perf_counter_ns() - t) / 1e9
        first = warm_up(lambda: fwd(x), Budget(cfg.runs, cfg.budget_s, cfg.min_runs, cfg.warmup))
        got = output_batch(fwd(x))
        if got != b:  # e.g. a batch-1 graph fed a batch: never time a call that did not do the work
            raise ValueError(f"the timed call returned {got} result(s) for a batch of {b}")
    except Exception as e:
        return {**row, "error": f"run failed: {type(e).__name__}: {_first_line(e)}"}, None, None, None
    out = {**row, "load": {"unit": "s", "time": load_s}, "first_inference": {"unit": "s", "time": first / 1e9}}
    out["memory"] = {
        "unit": "MB",
        "peak_rss": onboard.peak_rss_mb(),
        "rss_before_load": rss0,
        "rss": onboard.rss_mb(),
        "peak_is_per_row": bool(Path("/proc/self/clear_refs").exists()),
        "note": "process peak RSS over load, first inference and warm-up",
    }
    if backend == "torch":
        out["artifact"] = {"file": None, "bytes": model.cfg.fp32_bytes, "note": "state dict as float32"}
        out["parity"] = {"faces": len(ref), "max_abs_age_diff_vs_pytorch": 0.0}

        def hook() -> None:
            torch.set_num_threads(threads)
    else:
        be = get_backend(backend)
        out["artifact"] = {"file": art.path.name, "bytes": art.bytes}
        out["macc"] = {**row["macc"], "graph": report.get("macc")}
        out["graph"] = report
        hook = None
        try:
            out["parity"] = vs_pytorch(be.load(art.path, 1), x_all, ref) if prec not in be.bench.run_as else None
        except Exception as e:
            out["parity"] = {"error": f"{type(e).__name__}: {e}"}
    return out, fwd, x, hook


def command_line() -> str:
    return "c3ae-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
