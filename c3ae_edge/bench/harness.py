"""``c3ae-edge bench``: every model x backend x precision x threads x batch, timed the same way, one JSON document."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from c3ae_edge.bench.rows import BenchRow
from c3ae_edge.board import onboard
from c3ae_edge.errors import DataError, UsageError

N_TIMING_FACES, N_CALIBRATION_FACES = 32, 32  # 32: the export side's minimum for int8 calibration


@dataclass
class BenchConfig:
    models: list[str]
    backends: list[str]
    precisions: list[str]
    runs: int = 2000
    warmup: int = 100
    threads: list[int] = field(default_factory=lambda: [1])
    batches: list[int] = field(default_factory=lambda: [1])
    device: str = "cpu"
    data: str | None = None
    seed: int = 0
    command: str = ""
    e2e: int = 60  # FG-NET photos for the photo-to-age rows (0: none); models with shipped weights only
    detector: str = "auto"

    def check(self) -> None:
        from c3ae_edge.models import list_models

        known = set(list_models())
        bad = [m for m in self.models if m not in known]
        if bad:
            raise UsageError(f"unknown model(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        known = all_backends()
        bad = [b for b in self.backends if b not in known]
        if bad:
            raise UsageError(f"unknown backend(s) {', '.join(bad)}; known: {', '.join(known)}")
        known = bench_precisions()
        bad = [p for p in self.precisions if p not in known]
        if bad:
            raise UsageError(f"unknown precision(s) {', '.join(bad)}; known: {', '.join(known)}")
        if self.runs < 1 or self.warmup < 0:
            raise UsageError("--runs must be >= 1 and --warmup >= 0")
        if not self.threads or min(self.threads) < 1 or not self.batches or min(self.batches) < 1:
            raise UsageError("--threads and --batch take positive integers")
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"--device {self.device!r}: use cpu or cuda")
        if self.e2e < 0:
            raise UsageError("--e2e takes a number of photos >= 0")


def all_backends() -> list[str]:
    """torch (the reference) plus every registered backend the host bench times."""
    from c3ae_edge.export.registry import bench_backends

    return ["torch", *bench_backends()]


def bench_precisions() -> list[str]:
    """Every precision a benched backend exports or runs (its ``bench.run_as``: OpenVINO's bf16)."""
    from c3ae_edge.export.registry import get_backend

    bes = [get_backend(b) for b in all_backends()[1:]]
    return list(dict.fromkeys(p for be in bes for p in (*be.spec.precisions, *be.bench.run_as)))


def installed_backends() -> list[str]:
    """torch plus every artifact backend whose runtime and exporter import here."""
    import importlib.util

    from c3ae_edge.export.registry import get_backend

    return ["torch"] + [
        b for b in all_backends()[1:] if all(importlib.util.find_spec(m) for m in get_backend(b).spec.requires)
    ]


def faces(n_crops: int, data: str | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Real face crops, the same tensors for every backend: (timing/parity crops, their ages, calibration crops,
    files)."""
    from c3ae_edge.data import load_dataset
    from c3ae_edge.data.crops import spec_for
    from c3ae_edge.data.facedata import FaceData
    from c3ae_edge.export import default_faces
    from c3ae_edge.export.calibration import data_root, embedded_stand_in, stratified_pick

    root = data_root(data) / "utkface"
    if not (root / "labels.csv").is_file():
        if not embedded_stand_in(data, root):
            raise DataError(
                f"{root}: no face data (labels.csv); pass --data DIR (the folder holding utkface/) or set C3AE_DATA"
            )
        root = default_faces.folder()  # no data set here: the 800 embedded UTKFace chips, as export does
    samples = load_dataset(f"utkface:{root}")
    n = N_TIMING_FACES + N_CALIBRATION_FACES
    picked = [samples[i] for i in stratified_pick(np.array([s.age for s in samples]), n, seed)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(picked))
    picked = [picked[i] for i in order]
    x, ages = FaceData(picked, spec_for(n_crops), threads=2).batch(range(len(picked)))
    x = x.numpy()
    return (
        x[:N_TIMING_FACES],
        ages.numpy()[:N_TIMING_FACES],
        x[N_TIMING_FACES:],
        [Path(s.path).name for s in picked[:N_TIMING_FACES]],
    )


def batch_of(x: np.ndarray, b: int) -> np.ndarray:
    """The first b faces (cycled if b exceeds the set), contiguous float32."""
    idx = np.arange(b) % len(x)
    return np.ascontiguousarray(x[idx], np.float32)


def build_model(name: str, seed: int):
    """(model, weights note): shipped weights where they exist, else seeded initial weights (latency does not depend on
    them)."""
    import torch

    from c3ae_edge.models import create_model
    from c3ae_edge.weights import pretrained_model, shipped_models

    if name in shipped_models():
        return pretrained_model(name).eval(), "shipped weights"
    torch.manual_seed(seed)
    return create_model(name).eval(), "initialised weights (untrained; latency does not depend on the values)"


class _Progress:
    """Rich progress on stderr (plain lines when not a terminal)."""

    def __init__(self, total: int, quiet: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=quiet or not self.console.is_terminal,
        )
        self.task = self.p.add_task("bench", total=total)

    def __enter__(self):
        self.p.__enter__()
        return self

    def __exit__(self, *a):
        self.p.__exit__(*a)

    def step(self, what: str, advance: int = 0) -> None:
        self.p.update(self.task, description=what, advance=advance)

    def log(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(msg, highlight=False, markup=False)


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


def _parity(runner, x: np.ndarray, ref: np.ndarray) -> dict:
    ages = np.asarray(runner.run(x)["age"], np.float64).reshape(-1)
    return {
        "faces": len(x),
        "max_abs_age_diff_vs_pytorch": float(np.max(np.abs(ages - ref))),
        "mean_abs_age_diff_vs_pytorch": float(np.mean(np.abs(ages - ref))),
    }


def plan(cfg: BenchConfig) -> list[tuple[str, str]]:
    """(backend, precision) pairs the run will time for each model (torch: fp32 only; artifacts: what their spec
    exports)."""
    from c3ae_edge.export.registry import get_backend

    pairs = []
    for b in cfg.backends:
        precs = ("fp32",) if b == "torch" else get_backend(b).spec.precisions + tuple(get_backend(b).bench.run_as)
        pairs += [(b, p) for p in cfg.precisions if p in precs]
    return pairs


def run(cfg: BenchConfig, quiet: bool = False) -> dict:
    """The whole bench -> the JSON document (schema ``c3ae-edge-bench/1``)."""
    import torch

    from c3ae_edge.bench import cuda, paper
    from c3ae_edge.bench.peak import measure_peak
    from c3ae_edge.models import get_model_cfg
    from c3ae_edge.models.profile import profile_model

    cfg.check()
    t_start = time.time()
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set once in this process
            pass
    results: list[BenchRow] = []
    skipped = None
    if cfg.device == "cuda":
        ok, why = cuda.available()
        if not ok:  # one line, no rows, nothing else to do
            skipped = why
            cfg.models = []
            if not quiet:
                print(why, file=sys.stderr)
    peaks = {t: measure_peak(t) for t in cfg.threads}
    pairs = plan(cfg) if cfg.device == "cpu" else []
    total = (
        len(cfg.models) * len(pairs) * len(cfg.threads) * len(cfg.batches) if cfg.device == "cpu" else len(cfg.models)
    )
    face_cache: dict[int, tuple] = {}
    files: list[str] = []
    with tempfile.TemporaryDirectory(prefix="c3ae-bench-") as tmp, _Progress(total, quiet) as prog:
        exported: dict = {}
        if pairs and any(b != "torch" for b, _ in pairs):
            for name in cfg.models:
                crops = get_model_cfg(name).crops
                if crops not in face_cache:
                    prog.step("loading faces")
                    face_cache[crops] = faces(crops, cfg.data, cfg.seed)
            exported = export_all(cfg, pairs, face_cache, Path(tmp), prog)
            extra = sum(1 for m in exported.values() for k in m if k[2]) * len(cfg.threads) * len(cfg.batches)
            prog.p.update(prog.task, total=total + extra)
        for name in cfg.models:
            mcfg = get_model_cfg(name)
            prog.step(f"{name}: loading faces and model")
            if mcfg.crops not in face_cache:
                face_cache[mcfg.crops] = faces(mcfg.crops, cfg.data, cfg.seed)
            x_all, ages, cal, files = face_cache[mcfg.crops]
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
            if cfg.device == "cuda":
                rows = cuda.bench_model(model, x_all, cfg, log=prog.log)
                results += [BenchRow.from_json({**common, **r}) for r in rows]
                prog.step(name, 1)
                continue
            rows = _bench_model(model, common, pairs, cfg, x_all, ref, peaks, exported.get(name, {}), prog)
            results += map(BenchRow.from_json, rows)
    env = onboard.environment(
        cfg.threads[0] if len(cfg.threads) == 1 else cfg.threads,
        {
            "peak": {str(t): p for t, p in peaks.items()},
            "torch_threads": {"intra_op": "= threads", "interop": torch.get_num_interop_threads()},
        },
    )
    return {
        "schema": onboard.SCHEMA,
        "config": {
            **asdict(cfg),
            "input": f"{N_TIMING_FACES} real UTKFace crops (stratified by age, seed {cfg.seed}); batch b = the first "
            f"b; int8 calibration on {N_CALIBRATION_FACES} other faces",
            "timing_faces": files,
            "timing": f"per model, every row's {cfg.runs} timed runs interleaved in {BLOCKS} round-robin blocks "
            f"(background load hits all backends alike), after load, first inference and {cfg.warmup} warm-up runs",
            "photo_to_age": (
                f"{cfg.e2e} FG-NET photos (seed {cfg.seed}) as stored, and made into 640x480 and 1280x720 frames (fit, "
                "centred, edges replicated, JPEG q90); per image: decode (from bytes: OpenCV for JPEG, else Pillow), "
                f"detect ({cfg.detector}), crop (CropSpec), age network per artifact (batch 1, one call per face); "
                "decode/detect/crop once per image, every artifact timed on those faces"
            )
            if cfg.e2e
            else None,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
            "wall_time_s": round(time.time() - t_start, 1),
        },
        "environment": env,
        "paper": paper.document(),
        "results": [r.to_json() for r in results],
        **({"skipped": skipped} if skipped else {}),
    }


BLOCKS = 20  # round-robin blocks per model: each row runs runs/BLOCKS timed calls per block


def _bench_model(
    model, common: dict, pairs, cfg: BenchConfig, x_all, ref, peaks: dict, exported: dict, prog
) -> list[dict]:
    """Graph reports, then load each row (load time, first inference, warm-up, peak RSS), then time all rows
    interleaved."""
    from c3ae_edge.bench import graph
    from c3ae_edge.bench.forward import runtime_options

    name = common["model"]
    rows: list[dict] = []
    live: list[tuple[dict, object, np.ndarray, object]] = []  # (row, forward, input, before-block hook)
    base_t = graph.source_transposes(model, x_all)
    units = [(b, p, None) for b, p in pairs]
    units += [(b, p, v) for (b, p, v) in exported if v and (b, p) in pairs]
    for backend, prec, variant in units:
        path, report, err, export_s = None, {}, None, None
        if backend != "torch":
            path, err, export_s = exported.get(
                (backend, _run_as(backend, prec), variant), (None, "export failed: not exported", None)
            )
            if path is not None:
                prog.step(f"{name}: graph report {backend} {prec}")
                with _quiet_fds():
                    report = graph.report(backend, path, base_t, cfg.threads[0])
        for threads in cfg.threads:
            for b in cfg.batches:
                prog.step(f"{name}: load {backend} {prec}{' ' + variant if variant else ''} {threads}t b{b}")
                row = {
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
                if not err:
                    row, fwd, x, hook = _prepare(row, backend, prec, model, path, report, x_all, ref, b, threads, cfg)
                    if fwd is not None:
                        live.append((row, fwd, x, hook))
                if "error" in row or err:
                    row.setdefault("error", err)
                    prog.log(f"{name} {backend} {prec} {threads}t b{b}: {row['error']}")
                    prog.step(name, 1)
                rows.append(row)
    times: list[list[int]] = [[] for _ in live]
    per = [max(1, cfg.runs // BLOCKS)] * BLOCKS
    per[-1] += cfg.runs - sum(per) if cfg.runs >= BLOCKS else 0
    per = [p for p in per if p] if cfg.runs >= BLOCKS else [cfg.runs]
    for k, n in enumerate(per):
        prog.step(f"{name}: timing block {k + 1}/{len(per)} ({len(live)} rows)")
        for i, (row, fwd, x, hook) in enumerate(live):
            if hook:
                hook()
            try:
                ns, _ = onboard.time_runs(fwd, x, n, 0, first=False)
            except Exception as e:
                row["error"] = f"run failed: {type(e).__name__}: {_first_line(e)}"
                continue
            times[i] += ns
    for (row, _, _, _), ns in zip(live, times):
        if "error" in row:
            continue
        lat = onboard.latency_stats(ns)
        row.update(
            {
                "latency": lat,
                "throughput": {"unit": "samples/s", "value": row["batch"] / lat["p50"]},
                "efficiency": _efficiency(
                    row["macc"]["model"], row["batch"], lat["p50"], row["precision"], peaks[row["threads"]]
                ),
            }
        )
        prog.log(
            f"{name:22s} {row['backend']:8s} "
            f"{row['precision'] + (' ' + row['variant'] if row.get('variant') else ''):11s} {row['threads']}t "
            f"b{row['batch']}: p50 {lat['p50'] * 1e6:9.1f} us [{lat['p50_ci95'][0] * 1e6:.1f}, "
            f"{lat['p50_ci95'][1] * 1e6:.1f}]"
        )
        prog.step(name, 1)
    if cfg.e2e and common.get("weights") == "shipped weights":
        rows += _photo_to_age(
            model,
            common,
            [(r, f) for r, f, _, _ in live if r["batch"] == 1 and r["threads"] == cfg.threads[0] and "error" not in r],
            cfg,
            prog,
        )
    return rows


_E2E_SETS: dict = {}


def _photo_to_age(model, common: dict, live, cfg: BenchConfig, prog) -> list[dict]:
    """End-to-end rows (c3ae_edge/bench/e2e.py): FG-NET photos and 640x480 / 1280x720 frames made from them."""
    import cv2
    import torch

    from c3ae_edge.bench import e2e
    from c3ae_edge.data.detect import get_detector, resolve_detector
    from c3ae_edge.weights import load_model

    prog.step(f"{common['model']}: photo to age ({cfg.e2e} photos, {cfg.detector})")
    key = (cfg.data, cfg.e2e, cfg.seed)
    if key not in _E2E_SETS:
        _E2E_SETS[key] = e2e.input_sets(e2e.fgnet_samples(cfg.data, cfg.e2e, cfg.seed))
    cv2.setNumThreads(cfg.threads[0])
    torch.set_num_threads(cfg.threads[0])
    spec = load_model(None, common["model"])[1]
    rows = e2e.bench_rows(
        common, live, _E2E_SETS[key], get_detector(cfg.detector), resolve_detector(cfg.detector), spec
    )
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


class _quiet_fds:
    """Silence converters' stdout/stderr chatter (C++ logs included) while exporting; restored on exit."""

    def __enter__(self):
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        self.sink = tempfile.TemporaryFile()
        os.dup2(self.sink.fileno(), 1)
        os.dup2(self.sink.fileno(), 2)
        return self

    def __exit__(self, *a):
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        self.sink.close()


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
    -> {model: {(backend, precision): (path | None, error | None, seconds)}}."""
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
                res = {p: (None, f"export failed: {type(e).__name__}: {_first_line(e)}", None) for p in precs}
            for p, (path, err, secs) in res.items():
                out[name][(backend, p, variant)] = (Path(path) if path else None, err, secs)
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
    res = {}
    for p in precs:
        t = time.perf_counter()
        try:
            with _quiet_fds():
                path = _export(get_backend(backend_name), model, x1, cal, p, Path(out), head_weights(model), variant)
            res[p] = (str(path), None, round(time.perf_counter() - t, 2))
        except Exception as e:  # one failed export is one error row, not a dead bench
            res[p] = (None, f"export failed: {type(e).__name__}: {_first_line(e)}", None)
    return res


def _export(
    backend,
    model,
    x_all: np.ndarray,
    cal: np.ndarray,
    prec: str,
    out: Path,
    decode: dict | None,
    variant: str | None = None,
) -> Path:
    """One artifact per (model, backend, precision) per run, in the run's temp dir; a bench-only precision
    (``bench.run_as``: OpenVINO's bf16) runs the artifact of the precision it names."""
    out.mkdir(parents=True, exist_ok=True)
    src = backend.bench.run_as.get(prec, prec)
    stem = f"{model.cfg.name}_{backend.spec.name}" + (f"_{variant}" if variant else "")
    existing = out / f"{stem}_{src}{backend.spec.suffix}"
    if existing.exists():
        return existing
    opts = {"stem": stem, "metadata": {"decode": decode} if decode else {}}
    fp32 = out / f"{stem}_fp32{backend.spec.suffix}"
    if backend.bench.int8_from_fp32 and src == "int8" and fp32.exists():
        try:  # the same int8 the backend writes, quantised from this run's fp32 export (saves a second torch export)
            return backend.bench.int8_from_fp32(fp32, existing, cal, opts)
        except Exception:  # noqa: BLE001 - fall back to the backend's own path
            pass
    return backend.export(model, x_all[:1], out, src, cal if src == "int8" else None, opts)


def _size(backend, path: Path) -> int:
    side = backend.spec.options.get("sidecar")
    return path.stat().st_size + (
        path.with_suffix(side).stat().st_size if side and path.with_suffix(side).exists() else 0
    )


def _prepare(
    row: dict,
    backend: str,
    prec: str,
    model,
    path: Path | None,
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
    from c3ae_edge.export.registry import get_backend

    x = batch_of(x_all, b)
    try:
        onboard.peak_rss_reset()
        rss0 = onboard.rss_mb()
        t = time.perf_counter_ns()
        fwd = torch_forward(model, threads) if backend == "torch" else artifact_forward(backend, path, threads, prec, b)
        load_s = (time.perf_counter_ns() - t) / 1e9
        _, first = onboard.time_runs(fwd, x, 0, cfg.warmup)
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
        out["artifact"] = {"file": path.name, "bytes": _size(be, path)}
        out["macc"] = {**row["macc"], "graph": report.get("macc")}
        out["graph"] = report
        hook = None
        try:
            out["parity"] = _parity(be.load(path, 1), x_all, ref) if prec not in be.bench.run_as else None
        except Exception as e:
            out["parity"] = {"error": f"{type(e).__name__}: {e}"}
    return out, fwd, x, hook


def command_line() -> str:
    return "c3ae-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
