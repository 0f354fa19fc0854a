#!/usr/bin/env python3
"""On-board bench runner: times the artifacts of a c3ae-edge bundle and writes the ``c3ae-edge bench`` JSON schema.

Standalone on purpose: needs only numpy and a runtime (ai-edge-litert, else tflite_runtime, for .tflite; onnxruntime for
.onnx). Copy this file next to a bundle (the folder with manifest.json) on the board and run:

    python3 onboard.py BUNDLE [--runs 2000] [--warmup 100] [--threads 1] [--json board.json]

Inputs are the bundle's real face crops (parity_crops.npy), normalised as manifest.json says; every row also records the
runtime, its version and the delegate that really ran, and the ages of those faces against PyTorch's.
The timed loop and the latency statistics live in stats.py, which travels with this file (``c3ae-edge bench
write-runner`` writes both) and inside TFLite bundles (pinned like blazeface.py: a bundle's own copy times its rows);
``c3ae-edge bench`` imports the same stats.py and the environment helpers here, so both write the same numbers the
same way.
Install (Pi OS Bookworm, Python 3.11): pip install "numpy<2" tflite-runtime==2.14.0, or pip install ai-edge-litert;
(Trixie, Python 3.13): pip install ai-edge-litert (no tflite-runtime wheel exists for Python 3.12+).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

INSTALL = (
    'on Python <= 3.11 (Pi OS Bookworm): pip install "numpy<2" tflite-runtime==2.14.0, or pip install ai-edge-litert; '
    "on Python 3.12+ (Pi OS Trixie): pip install ai-edge-litert"
)
try:
    import numpy as np
except ImportError:  # one line, not a traceback
    sys.exit(f"onboard: error: numpy is not installed ({INSTALL})")

SCHEMA = "c3ae-edge-bench/1"
_FLAGS = (
    "neon",
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
_RUNTIMES = (
    "numpy",
    "torch",
    "onnxruntime",
    "openvino",
    "ai-edge-litert",
    "tflite-runtime",
    "litert-torch",
    "nncf",
    "onnx",
    "c3ae-edge",
)


# ---------------------------------------------------------------- environment


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_info() -> dict:
    """CPU model and the SIMD flags that matter to these runtimes (Linux /proc/cpuinfo; platform elsewhere)."""
    model, flags = None, set()
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = val.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(val.split())
    if not model and "CPU part" in text:
        part = next(line.split(":")[1].strip() for line in text.splitlines() if line.startswith("CPU part"))
        model = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76"}.get(part, f"ARM part {part}")
    dt = _read("/proc/device-tree/model")
    return {
        "model": model or platform.processor() or platform.machine(),
        "board": dt.strip("\x00") if dt else None,
        "flags": sorted(f for f in flags if f in _FLAGS),
        "logical_cores": os.cpu_count(),
    }


def versions(names=_RUNTIMES) -> dict:
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def environment(threads: int | None = None, extra: dict | None = None) -> dict:
    """Everything a reader needs to compare numbers across machines (measured now, nothing typed)."""
    aff = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
    mem = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = round(int(line.split()[1]) / 1024**2, 2)
    env = {
        "cpu": cpu_info(),
        "threads_used": threads,
        "affinity": aff,
        "governor": gov or "not visible",
        "max_freq_mhz": int(freq) // 1000 if freq and freq.isdigit() else None,
        "memory_gb": mem,
        "os": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "virtualised": "hypervisor" in (_read("/proc/cpuinfo") or ""),
        "versions": versions(),
    }
    if extra:
        env.update(extra)
    return env


def peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) so the next reading is this row's peak; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 2)
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(r / (1024**2 if sys.platform == "darwin" else 1024), 2)
    except ImportError:  # pragma: no cover
        return None


def rss_mb() -> float | None:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 2)
    return None


def peak_fp32_macs(threads: int = 1, seconds: float = 0.3) -> dict:
    """This machine's fp32 MAC/s limit, measured: numpy matmul (BLAS), best of timed repeats."""
    n = 512
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.T.copy()
    a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter_ns()
        a @ b
        best = min(best, (time.perf_counter_ns() - t) / 1e9)
    return {"kernel": f"numpy fp32 matmul {n}x{n}x{n}", "macs_per_s": n**3 / best, "threads": "BLAS default"}


def row(
    model: str,
    backend: str,
    precision: str,
    threads: int | None,
    batch: int,
    lat: dict,
    first_s: float,
    load_s: float,
    **kw,
) -> dict:
    """One result row of the schema (optimum-benchmark-like latency/throughput/memory blocks)."""
    r = {
        "model": model,
        "backend": backend,
        "precision": precision,
        "threads": threads,
        "batch": batch,
        "device": kw.pop("device", "cpu"),
        "latency": lat,
        "throughput": {"unit": "samples/s", "value": batch / lat["p50"]},
        "load": {"unit": "s", "time": load_s},
        "first_inference": {"unit": "s", "time": first_s},
    }
    r.update(kw)
    return r


# ---------------------------------------------------------------- the board runner

_TFLITE = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
}  # preference order


def tflite_module(name: str = "auto"):
    """(interpreter module, runtime name, version): ai-edge-litert first, else tflite-runtime. ImportError with one
    clear line when none is installed or the one installed cannot work with this numpy
    (tflite-runtime needs numpy<2)."""
    import importlib

    problems = []
    for dist in _TFLITE if name == "auto" else [name]:
        try:
            ver = metadata.version(dist)
        except metadata.PackageNotFoundError:
            ver = None
        if dist == "tflite-runtime" and ver and int(np.__version__.split(".")[0]) >= 2:
            # built against numpy 1.x: importing it under numpy 2 prints a traceback and fails
            problems.append(
                f'tflite-runtime {ver} needs numpy<2 but numpy {np.__version__} is installed (pip install "numpy<2")'
            )
            continue
        try:
            return importlib.import_module(_TFLITE[dist]), dist, ver or "unknown"
        except ModuleNotFoundError:
            if name != "auto":
                problems.append(f"{dist} is not installed")
        except Exception as e:  # a broken wheel: say which, in one line
            problems.append(
                f"{dist} {ver} fails to import ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            )
    raise ImportError("; ".join(problems) if problems else f"no TFLite runtime is installed ({INSTALL})")


def tflite_interpreter():
    mod, name, _ = tflite_module()
    return mod.Interpreter, name


def tflite_delegate(it) -> dict:
    """The delegate that really runs the graph: one DELEGATE node per XNNPACK partition in the execution plan (XNNPACK
    is the default delegate of both runtimes); none means every op runs as a built-in CPU kernel."""
    try:
        ops = it._get_ops_details()
    except Exception:  # a runtime without the introspection call
        return {"name": "unknown"}
    parts = sum(1 for o in ops if o["op_name"] == "DELEGATE")
    return {"name": "xnnpack" if parts else "builtin", "partitions": parts}


def quiet_build(build):
    """``build()`` with fd 2 captured: the TFLite runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line is
    dropped, anything else it wrote comes back on stderr."""
    import os
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


def load_tflite(path: Path, threads: int, runtime: str = "auto", delegate: str = "default"):
    """-> (forward(x_nchw_float) -> outputs, loader name); the forward does the layout move and quantisation and
    carries ``forward.info`` (runtime, version, delegate) and ``forward.output_names``."""
    mod, name, ver = tflite_module(runtime)
    kw = (
        {"experimental_op_resolver_type": mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        if delegate == "builtin"
        else {}
    )
    it = mod.Interpreter(model_path=str(path), num_threads=threads, **kw)
    quiet_build(it.allocate_tensors)  # the runtime's INFO line kept out of the report
    inp, outs = it.get_input_details()[0], it.get_output_details()
    scale, zp = inp["quantization"]
    q = inp["dtype"] != np.float32
    lo, hi = (np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max) if q else (0, 0)

    shape = [int(v) for v in inp["shape"]]

    def forward(x):
        xi = np.moveaxis(x, -3, -1)
        if xi.shape[0] != shape[0]:  # another batch: resize once (fails cleanly where the graph bakes in batch 1)
            shape[0] = xi.shape[0]
            it.resize_tensor_input(inp["index"], list(xi.shape))
            it.allocate_tensors()
        if q:
            xi = np.clip(np.rint(xi / scale) + zp, lo, hi)
        it.set_tensor(inp["index"], xi.astype(inp["dtype"]))
        it.invoke()
        return [it.get_tensor(o["index"]) for o in outs]

    dl = tflite_delegate(it)
    forward.info = {"runtime": name, "version": ver, "delegate": dl, "runtime_id": f"{name}/{dl['name']}"}
    forward.output_names = [o["name"] for o in outs]
    forward.quantization = [o["quantization"] if o["dtype"] != np.float32 else None for o in outs]
    return forward, name


def load_onnx(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name

    def forward(x):
        return s.run(None, {name: x})

    forward.info = {
        "runtime": "onnxruntime",
        "version": ort.__version__,
        "delegate": {"name": "cpu"},
        "runtime_id": "onnxruntime/cpu",
    }
    forward.output_names = [o.name for o in s.get_outputs()]
    forward.quantization = [None] * len(forward.output_names)
    return forward, "onnxruntime"


class BundleError(ValueError):
    """What this runner refuses: a manifest naming a file outside its bundle, a script that differs from its pin, or
    its own stats.py missing."""


def in_bundle(bundle: Path, name: str) -> Path:
    """``bundle / name`` only for a file of the bundle itself (manifest text never reaches outside it)."""
    p = (bundle / str(name)).resolve()
    if p.parent != bundle.resolve():
        raise BundleError(f"{name}: not a file of the bundle {bundle}")
    return p


def board_inputs(bundle: Path, man: dict) -> np.ndarray:
    """The bundle's stored real face crops (N, S, H, W, 3 uint8) -> float32 in the model's NCHW / NSCHW layout."""
    crops = np.load(in_bundle(bundle, man["parity_set"]["file"]), allow_pickle=False).astype(np.float32)
    c = man["crop"]
    x = (crops / 255.0 - np.asarray(c.get("mean", 0.5), np.float32)) / np.asarray(c.get("std", 0.5), np.float32)
    x = np.moveaxis(x, -1, -3).astype(np.float32)  # (N, S, 3, H, W)
    return x[:, 0] if x.shape[1] == 1 else x


def parity_ages(fwd, x: np.ndarray, man: dict, art: dict) -> np.ndarray:
    """Age of each stored face through a loaded artifact (batch 1): dequantise, softmax of logits,
    age = bins . w2 + b2."""
    dec = dict(man["output"], **art.get("output", {}))["decode"]
    ages = []
    for xi in x:
        outs = {}
        for name, q, v in zip(fwd.output_names, fwd.quantization, fwd(xi[None])):
            v = np.asarray(v).reshape(-1).astype(np.float32)
            outs[name] = (v - q[1]) * q[0] if q else v
        if "age" not in outs:
            if "bins" not in outs:
                z = np.exp(outs["logits"] - outs["logits"].max())
                outs["bins"] = z / z.sum()
            outs["age"] = np.array([outs["bins"] @ np.float32(dec["w2"]) + np.float32(dec["b2"])])
        ages.append(float(outs["age"][0]))
    return np.array(ages)


def age_check(fwd, x: np.ndarray, man: dict, art: dict) -> dict:
    """The bundle's parity faces through this runtime against PyTorch's ages and the artifact's tolerance."""
    d = np.abs(parity_ages(fwd, x, man, art) - np.asarray(man["parity_set"]["pytorch_age"], np.float64))
    tol = art.get("tolerance_years")
    return {
        "faces": int(d.size),
        "max_abs_age_diff_vs_pytorch": round(float(d.max()), 6),
        "mean_abs_age_diff_vs_pytorch": round(float(d.mean()), 6),
        "tolerance_years": tol,
        "within_tolerance": bool(d.max() <= tol) if tol is not None else None,
    }


@dataclass(frozen=True)
class BundleRun:
    """What every artifact of one ``run_bundle`` call is timed with: the manifest, the stored faces (all of them for
    the age check, the first one timed), the statistics module, the run counts and where progress lines go."""

    man: dict
    faces: np.ndarray
    x: np.ndarray
    stats: Any
    runs: int
    warmup: int
    log: Callable[[str], object]


def artifact_loader(kind: str, runtime: str = "auto", delegate: str = "default"):
    """-> loader(path, threads) -> (forward, runtime name) for an artifact suffix; None where this runner has none."""
    return {".tflite": lambda p, t: load_tflite(p, t, runtime, delegate), ".onnx": load_onnx}.get(kind)


def _load_timed(loader, path: Path, threads: int) -> tuple:
    """(forward, runtime name, load seconds); the peak-RSS counter reset first so the row's peak is its own."""
    peak_rss_reset()
    t = time.perf_counter_ns()
    fwd, rt = loader(path, threads)
    return fwd, rt, (time.perf_counter_ns() - t) / 1e9


def _artifact_row(job: BundleRun, art: dict, path: Path, loaded: tuple, th: int) -> dict:
    """Time one loaded artifact at ``th`` threads, log one line, check its ages; -> its result row."""
    fwd, rt, load_s = loaded
    ns, first = job.stats.time_runs(fwd, job.x, job.runs, job.warmup)
    lat = job.stats.latency_stats(ns)
    info = fwd.info
    job.log(
        f"{art['file']}: {info['runtime']} {info['version']}, delegate {info['delegate']['name']}: "
        f"p50 {lat['p50'] * 1e6:.1f} us "
        f"(95% CI {lat['p50_ci95'][0] * 1e6:.1f}-{lat['p50_ci95'][1] * 1e6:.1f}), "
        f"p99 {lat['p99'] * 1e6:.1f} us, {job.runs} runs, {th} thread(s)"
    )
    parity = age_check(fwd, job.faces, job.man, art)
    return row(
        job.man["model"]["name"],
        {".tflite": "tflite", ".onnx": "onnx"}[path.suffix],
        art["precision"],
        th,
        1,
        lat,
        first / 1e9,
        load_s,
        runtime=rt,
        runtime_version=info["version"],
        delegate=info["delegate"],
        runtime_id=info["runtime_id"],
        artifact={"file": art["file"], "bytes": art.get("bytes", path.stat().st_size)},
        params=job.man["model"].get("params"),
        memory={"unit": "MB", "peak_rss": peak_rss_mb(), "rss": rss_mb()},
        parity=parity,
        source="onboard runner",
    )


def run_bundle(
    bundle: Path,
    runs: int,
    warmup: int,
    threads,
    only: str | None = None,
    log=print,
    runtime: str = "auto",
    delegate: str = "default",
) -> dict:
    """Time every artifact the runtimes here can load, at each thread count (an int or a list); rows carry the
    runtime, version and delegate that ran, and the age check on the stored faces. ``skipped`` says why others did
    not run (not logged: the caller prints them, or one line when nothing ran)."""
    man = json.loads((bundle / "manifest.json").read_text())
    st = bundle_stats(bundle, man)
    faces = board_inputs(bundle, man)
    job = BundleRun(man, faces, faces[:1].copy(), st, runs, warmup, log)
    tlist = [threads] if isinstance(threads, int) else list(threads)
    results, skipped = [], []
    for art in man["artifacts"]:
        path = in_bundle(bundle, art["file"])
        if only and art["file"] != only:
            continue
        loader = artifact_loader(path.suffix, runtime, delegate)
        if loader is None:
            skipped.append(f"{art['file']}: this runner runs .tflite and .onnx")
            continue
        for th in tlist:
            try:
                loaded = _load_timed(loader, path, th)
            except ImportError as e:
                skipped.append(f"{art['file']}: {e}")
                break
            results.append(_artifact_row(job, art, path, loaded, th))
    peak = {th: peak_fp32_macs(th) for th in tlist}
    for r in results:
        r["peak"] = {"fp32": peak[r["threads"]]}
    one = tlist[0] if len(tlist) == 1 else tlist
    return {
        "schema": SCHEMA,
        "config": run_config(bundle, runs, warmup, one, runtime, delegate),
        "environment": environment(one),
        "results": results,
        "skipped": skipped,
    }


def run_config(bundle: Path, runs: int, warmup: int, threads, runtime: str, delegate: str) -> dict:
    """The ``config`` block of the runner's document."""
    return {
        "runner": "onboard.py",
        "bundle": bundle.name,
        "runs": runs,
        "warmup": warmup,
        "threads": threads,
        "runtime": runtime,
        "delegate": delegate,
        "input": "the bundle's parity_crops.npy (real faces), first crop, batch 1; age check on all of them",
    }


def _threads(text: str) -> list[int] | None:
    try:
        t = [int(v) for v in text.split(",")]
    except ValueError:
        return None
    return t if t and min(t) >= 1 else None


# ---------------------------------------------------------------- photo to age (end to end)


def _facefind():
    """The detector (c3ae_edge/board/facefind.py: numpy + OpenCV), from the package or copied next to this file;
    None without OpenCV."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return None
    try:  # beside this file on a board (--write-runner / --remote copy it), else the package's
        import facefind
    except ImportError:
        from c3ae_edge.board import facefind
    return facefind


def pinned_source(bundle: Path, man: dict, name: str) -> tuple[Path, bytes]:
    """(path, bytes) of a file of the bundle whose sha256 is the one manifest.json pins in ``bundle_files``, read
    once: a script edited after export, or one the manifest does not pin, is never run."""
    import hashlib

    p = in_bundle(bundle, name)
    pins = {f.get("file"): f.get("sha256") for f in man.get("bundle_files") or [] if isinstance(f, dict)}
    if name not in pins:
        raise BundleError(f"{name}: not pinned in manifest.json bundle_files; refusing to run it")
    data = p.read_bytes() if p.is_file() else None
    if data is None or hashlib.sha256(data).hexdigest() != pins[name]:
        raise BundleError(f"{name}: differs from its sha256 in manifest.json (edited after export); refusing to run it")
    return p, data


def pinned(bundle: Path, man: dict, name: str) -> Path:
    """``pinned_source``'s path: the file holds the sha256 manifest.json pins for it."""
    return pinned_source(bundle, man, name)[0]


def _load(path: Path, module: str, source: bytes | None = None):
    """The Python file ``path`` (or ``source``, its bytes already checked) run as module ``module``, compiled here:
    no bytecode cache is read from or written beside it (a bundle keeps only its own files, and a planted
    __pycache__ never runs instead of the checked source)."""
    import types

    mod = types.ModuleType(module)
    mod.__file__ = str(path)
    sys.modules[module] = mod  # dataclasses look their module up while the file runs
    exec(compile(path.read_bytes() if source is None else source, str(path), "exec"), mod.__dict__)
    return mod


def _bundle_script(bundle: Path, man: dict, name: str, module: str):
    """A script the bundle carries (reference_infer.py, blazeface.py, stats.py), run from the very bytes whose sha256
    is the one the manifest pins."""
    path, data = pinned_source(bundle, man, name)
    return _load(path, module, data)


STATS = "stats.py"


def runner_stats():
    """This runner's own stats.py: the package's when imported as c3ae_edge.board.onboard, else the file beside this
    one (``c3ae-edge bench write-runner`` and ``bench remote`` copy both), loaded by path."""
    if __package__:
        from c3ae_edge.board import stats

        return stats
    here = Path(__file__).resolve().with_name(STATS)
    if not here.is_file():
        raise BundleError(f"{here}: missing; it travels with onboard.py (c3ae-edge bench write-runner DIR writes both)")
    return _load(here, "runner_stats")


def bundle_stats(bundle: Path, man: dict):
    """The timing statistics for ``bundle``'s rows: the bundle's own stats.py once its sha256 is the one manifest.json
    pins (TFLite bundles; an edited one is refused, like blazeface.py), else this runner's (ONNX and older bundles)."""
    pins = {f.get("file") for f in man.get("bundle_files") or [] if isinstance(f, dict)}
    if STATS in pins or (bundle / STATS).exists():
        return _bundle_script(bundle, man, STATS, "bundle_stats")
    return runner_stats()


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def blazeface_detector(bundle: Path, man: dict, det: dict, threads: int, runtime: str = "auto"):
    """The bundle's BlazeFace (its blazeface.py and .tflite, the manifest's model spec and Haar mapping), run by the
    TFLite runtime that runs the age model; -> (boxes(rgb) -> [(cx, cy, side)], "runtime version")."""
    files, m = det["files"], det["model"]
    model = in_bundle(bundle, files["model"])
    if _sha256(model) != m["sha256"]:
        raise BundleError(f"{files['model']}: does not match its sha256 in manifest.json (swapped or corrupt)")
    bf = _bundle_script(bundle, man, files["code"], "bundle_blazeface")
    mod, name, ver = tflite_module(runtime)
    fields = ("name", "file", "size", "strides", "interpolated_anchor", "min_score", "nms_iou")
    spec = bf.ModelSpec(**{k: tuple(m[k]) if k == "strides" else m[k] for k in fields if k in m})
    mapping = bf.HaarMapping(**{k: det["mapping"][k] for k in ("basis", "scale", "dx", "dy")})
    try:  # OpenCV's bilinear resize where installed (about 20x faster than numpy's; same boxes within IoU 0.99)
        import cv2

        def resize(img, w, h):
            return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        resize = None
    net = bf.BlazeFace(str(model), spec, threads, resize, interpreter=mod.Interpreter)
    return (lambda img: [mapping.apply(f) for f in net.detect(img)]), f"{name} {ver}"


def photo_detector(bundle: Path, man: dict, threads: int, runtime: str = "auto"):
    """The detector the manifest's face_box.detector names -> (name, boxes(rgb) -> [(cx, cy, side)], runtime or None);
    None (and a reason) where it cannot run here."""
    det = (man.get("face_box") or {}).get("detector") or {"name": "haar-fast", "params": {}}  # older bundles
    if det.get("name") == "blazeface" and "files" in det:
        try:
            boxes, rt = blazeface_detector(bundle, man, det, threads, runtime)
        except ImportError as e:
            return None, f"the bundle's BlazeFace detector needs a TFLite runtime ({e})"
        return (det["name"], boxes, rt), None
    ff = _facefind()
    if ff is None:
        return None, "the face detector needs OpenCV (pip install opencv-python-headless)"
    import cv2

    cv2.setNumThreads(threads)
    cascade = ff.load_cascade()
    params = ff.CoarseFineParams(
        **{k: v for k, v in det.get("params", {}).items() if k in ff.CoarseFineParams.__dataclass_fields__}
    )
    return (det.get("name"), lambda img: [b for b, _ in ff.coarse_fine(cascade, img, params)], None), None


def _photo_frames(paths: list[Path], sizes=((640, 480), (1280, 720))) -> list[tuple[str, list[bytes]]]:
    """The photos' own bytes, and each photo fitted into every frame size (centred, edges replicated, JPEG q90)."""
    import io

    from PIL import Image, ImageOps

    sets = [("photos", [p.read_bytes() for p in paths])] + [(f"{w}x{h} frames", []) for w, h in sizes]
    for raw in sets[0][1]:
        with Image.open(io.BytesIO(raw)) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
        for (w, h), (_, out) in zip(sizes, sets[1:]):
            k = min(w / im.width, h / im.height)
            nw, nh = round(im.width * k), round(im.height * k)
            a = np.asarray(im.resize((nw, nh), Image.BILINEAR))
            top, left = (h - nh) // 2, (w - nw) // 2
            a = np.pad(a, ((top, h - nh - top), (left, w - nw - left), (0, 0)), mode="edge")
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return sets


@dataclass
class PhotoTimes:
    """Per-image ns of one photo set: decode, detect and crop, then each artifact's age network on the faces found."""

    name: str
    images: int
    stage: dict[str, list[int]]
    ages: list[list[int]]
    found: int = 0


def photo_forwards(bundle: Path, man: dict, threads: int, only: str | None, runtime: str) -> list[tuple[dict, Any]]:
    """(artifact, forward) for every artifact a runtime here can load (``only``: just that file)."""
    fwds = []
    for art in man["artifacts"]:
        loader = artifact_loader(Path(art["file"]).suffix, runtime)
        if loader and (not only or art["file"] == only):
            try:
                fwds.append((art, loader(bundle / art["file"], threads)[0]))
            except ImportError:
                continue
    return fwds


def time_photos(name: str, encoded: list[bytes], detect, ref, man: dict, fwds: list) -> PhotoTimes:
    """Decode (Pillow), detect, crop (the bundle's reference_infer.preprocess) and age every encoded image, each stage
    timed with perf_counter_ns."""
    import io

    from PIL import Image, ImageOps

    t = PhotoTimes(name, len(encoded), {k: [] for k in ("decode", "detect", "crop")}, [[] for _ in fwds])
    clock = time.perf_counter_ns
    for raw in encoded:
        t0 = clock()
        with Image.open(io.BytesIO(raw)) as im:
            img = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        t1 = clock()
        boxes = detect(img)
        t2 = clock()
        xs = [np.moveaxis(ref.preprocess(img, b, man["crop"]), -1, -3) for b in boxes]
        xs = [(x[0] if x.shape[0] == 1 else x)[None].astype(np.float32) for x in xs]
        t3 = clock()
        for k, v in zip(t.stage, (t1 - t0, t2 - t1, t3 - t2)):
            t.stage[k].append(v)
        t.found += bool(boxes)
        for i, (_, fwd) in enumerate(fwds):
            t0 = clock()
            for x in xs:
                fwd(x)
            t.ages[i].append(clock() - t0)
    return t


def photo_row(man: dict, art: dict, threads: int, det: tuple, st, t: PhotoTimes, a: list[int], log=print) -> dict:
    """One artifact's photo-to-age row of a photo set (``det``: detector name, runtime or None); logs one line."""
    det_name, det_runtime = det
    tot = [sum(v) for v in zip(t.stage["decode"], t.stage["detect"], t.stage["crop"], a)]
    lat = st.latency_stats(tot)
    base = row(
        man["model"]["name"],
        {".tflite": "tflite", ".onnx": "onnx"}[Path(art["file"]).suffix],
        art["precision"],
        threads,
        1,
        lat,
        0.0,
        0.0,
        source="onboard runner",
        artifact={"file": art["file"]},
    )
    log(
        f"photo to age, {t.name}, {art['file']}: p50 {lat['p50'] * 1e3:.2f} ms ("
        + ", ".join(f"{k} {np.median(v) / 1e6:.2f}" for k, v in (*t.stage.items(), ("age", a)))
        + f" ms), faces {t.found}/{t.images}"
    )
    return {
        **base,
        "pipeline": "photo-to-age",
        "input": t.name,
        "detector": det_name,
        **({"detector_runtime": det_runtime} if det_runtime else {}),
        "images": t.images,
        "faces_found": t.found,
        "stages": {**{k: st.latency_stats(v) for k, v in t.stage.items()}, "age": st.latency_stats(a)},
        "throughput": {"unit": "images/s", "value": 1.0 / lat["mean"]},
    }


def run_photo_to_age(
    bundle: Path, photos: Path, n: int, threads: int, only: str | None = None, log=print, runtime: str = "auto"
) -> list[dict]:
    """Photo-to-age rows: decode (Pillow), detect (the manifest's face_box.detector), crop (the bundle's
    reference_infer.preprocess), each artifact's age network; per image and stage, perf_counter_ns."""
    try:
        from PIL import Image, ImageOps  # noqa: F401  (time_photos decodes with them)
    except ImportError:
        log("photo to age: skipped: decoding photos needs Pillow (pip install pillow); the other rows ran")
        return []
    man = json.loads((bundle / "manifest.json").read_text())
    st = bundle_stats(bundle, man)
    found_det, why = photo_detector(bundle, man, threads, runtime)
    if found_det is None:
        log(f"photo to age: skipped: {why}; the other rows ran")
        return []
    det_name, detect, det_runtime = found_det
    ref = _bundle_script(bundle, man, "reference_infer.py", "bundle_reference_infer")
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    if not files:
        log(f"photo to age: skipped: no .jpg/.png photos in {photos}")
        return []
    fwds = photo_forwards(bundle, man, threads, only, runtime)
    rows = []
    for name, encoded in _photo_frames(files):
        t = time_photos(name, encoded, detect, ref, man, fwds)
        for (art, _), a in zip(fwds, t.ages):
            rows.append(photo_row(man, art, threads, (det_name, det_runtime), st, t, a, log))
    return rows


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="bundle folder (manifest.json, artifacts, parity_crops.npy)")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument(
        "--threads",
        default="1",
        help="threads, comma-separated for several rows (default 1: the merged Table 3 compares 1-thread rows)",
    )
    ap.add_argument(
        "--runtime",
        choices=["auto", *_TFLITE],
        default="auto",
        help=".tflite runtime (default: ai-edge-litert if installed, else tflite-runtime)",
    )
    ap.add_argument(
        "--delegate",
        choices=["default", "builtin"],
        default="default",
        help="builtin: the runtime's built-in kernels without its default delegate (XNNPACK)",
    )
    ap.add_argument("--artifact", default=None, help="time only this artifact file")
    ap.add_argument("--json", type=Path, default=None, help="write the results here (default: stdout)")
    ap.add_argument(
        "--photos",
        type=Path,
        default=None,
        help="photo-to-age rows on the photos in this folder (needs OpenCV for the detector)",
    )
    ap.add_argument("--photo-count", type=int, default=60, help="with --photos: how many (sorted by name)")
    return ap


def _bad_args(a) -> str | None:
    if not (a.bundle / "manifest.json").is_file():
        return f"{a.bundle}: no manifest.json (not a c3ae-edge bundle)"
    if a.runs < 1 or a.warmup < 0 or _threads(a.threads) is None:
        return "--runs must be >= 1, --warmup >= 0, --threads positive integers (e.g. 1 or 1,4)"
    if a.photos is not None and not a.photos.is_dir():
        return f"--photos {a.photos}: not a folder"
    if a.json is not None and a.json.is_dir():
        return f"--json {a.json}: is a folder"
    return None


def _work(a) -> dict:
    threads, say = _threads(a.threads), (lambda m: print(m, file=sys.stderr))
    res = run_bundle(a.bundle, a.runs, a.warmup, threads, a.artifact, log=say, runtime=a.runtime, delegate=a.delegate)
    if a.photos is not None:
        res["results"] += run_photo_to_age(
            a.bundle, a.photos, a.photo_count, threads[0], a.artifact, log=say, runtime=a.runtime
        )
    return res


def os_error_line(e: OSError, path=None) -> str:
    """One line for an OSError naming ``path`` (the user's file, not a temporary one); a full disk says so."""
    import errno

    where = f"{path if path is not None else e.filename}: " if (path is not None or e.filename) else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}no space left on device"
    return f"{where}{e.strerror or e}"


def write_json(path: Path, text: str) -> None:
    """Whole or nothing: a temporary file beside ``path`` renamed over it; errors name ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, os_error_line(e, path).removeprefix(f"{path}: "), str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def main(argv=None) -> int:
    """The runner's command line: one line on stderr and a non-zero exit for anything wrong, never a traceback."""
    a = _parser().parse_args(argv)
    why = _bad_args(a)
    if why:
        print(f"onboard: error: {why}", file=sys.stderr)
        return 2
    try:
        res = _work(a)
        if not res["results"]:  # one line: why nothing ran
            why = sorted({m.partition(": ")[2] for m in res["skipped"]}) or ["no artifact selected"]
            print(f"onboard: error: no artifact could run here: {'; '.join(why)}", file=sys.stderr)
            return 1
        for m in res["skipped"]:
            print(f"skipped {m}", file=sys.stderr)
        text = json.dumps(res, indent=1)
        if a.json:
            write_json(a.json, text + "\n")
            print(f"wrote {a.json}", file=sys.stderr)
        else:
            print(text)
    except BundleError as e:
        print(f"onboard: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"onboard: error: {os_error_line(e)}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:  # a manifest that is not a bundle's
        print(
            f"onboard: error: {a.bundle}: not a bundle this runner can read ({type(e).__name__}: {e})"[:400],
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
