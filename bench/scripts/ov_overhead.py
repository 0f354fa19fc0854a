"""The bench's OpenVINO call against OpenVINO's own benchmark_app, on the same IR, in alternating rounds:

    python bench/scripts/ov_overhead.py [--ir model.xml ...] [--rounds 5] [--runs 2000] [--json out.json]
    python bench/scripts/ov_overhead.py --probe --ir model.xml [--ir ...] [--json out.json]
    # --probe: input precision / data probe

Without --ir, c3ae_plain (shipped weights) is exported to fp32 and int8 IRs in a temporary folder, int8 calibrated
on the bench's 32 calibration faces. Per round and IR: benchmark_app (1 stream, 1 thread, sync API, f32 inference
precision, static shape, ``--runs`` iterations, ``-ip f32``: the float input the bench feeds; its median is the C++
request's own ``latency``), benchmark_app with its default input (a 3-channel NCHW input counts as an image: u8, random
bytes; the int8 IR then runs a different first layer), the bench's lean forward alone in a fresh process (one model,
one call in a loop, as benchmark_app runs it), then in a fresh process that imports only numpy, OpenVINO and
c3ae_edge/export/backends/openvino_backend.py (as benchmark_app's does), interleaved in blocks of 100: the bench's
``lean`` forward and the former ``async`` and ``wrap`` forwards (openvino_backend.bench_forward), timed with
``perf_counter_ns`` around each call as the bench does, the bare ``infer()`` and ``start_async()`` + ``wait()`` calls on
a pre-set input (wall), and benchmark_app's own loop (``infer()`` on a pre-set tensor, reading ``request.latency``, the
C++ side's duration).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from c3ae_edge.board import onboard, stats  # noqa: E402  (numpy + stdlib only)


def benchmark_app(
    ir: Path, runs: int, shape: list[int], workdir: Path, input_precision: str | None = "f32"
) -> tuple[float, dict]:
    """benchmark_app's median latency in seconds (its report: 10 us resolution) and what it printed about the compiled
    model (step 8's properties, step 6's input). ``input_precision`` None: its default, which makes a 3-channel NCHW
    input u8 (an image) and fills it with random bytes; "f32": the float input our bench (and a user's crops) feed."""
    rep = workdir / f"rep-{time.monotonic_ns()}"
    rep.mkdir()
    cmd = [
        sys.executable,
        "-c",
        "import sys; from openvino.tools.benchmark.main import main; sys.argv[0] = 'benchmark_app'; main()",
        "-m",
        str(ir),
        "-d",
        "CPU",
        "-hint",
        "none",
        "-nstreams",
        "1",
        "-nthreads",
        "1",
        "-niter",
        str(runs),
        "-api",
        "sync",
        "-infer_precision",
        "f32",
        "-shape",
        str(shape).replace(" ", ""),
        "-report_type",
        "no_counters",
        "-report_folder",
        str(rep),
    ]
    cmd += ["-ip", input_precision] if input_precision else []
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise SystemExit(f"benchmark_app failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    with open(rep / "benchmark_report.csv", newline="") as f:
        rows = {r[0]: r[1] for r in csv.reader(f, delimiter=";") if len(r) >= 2}
    return float(rows["latency (ms)"]) / 1e3, printed_config(r.stdout)


def printed_config(out: str) -> dict:
    """benchmark_app's step 8 (compiled model properties, KEY: VALUE) and step 6's model input line."""
    cfg: dict = {}
    step, section = "", ""
    for line in out.splitlines():
        if line.startswith("[Step "):
            step = line.split("/")[0][6:]
            continue
        body = line.removeprefix("[ INFO ]").strip()
        if body.startswith("Model"):
            section = body
        elif step == "8" and ":" in body:
            k, _, v = body.partition(":")
            cfg[k.strip()] = v.strip()
        elif step == "6" and section == "Model inputs:" and "(node:" in body:
            cfg["input"] = body
    return cfg


OUR_PROPERTIES = (
    "NUM_STREAMS",
    "INFERENCE_NUM_THREADS",
    "INFERENCE_PRECISION_HINT",
    "PERFORMANCE_HINT",
    "EXECUTION_MODE_HINT",
    "ENABLE_CPU_PINNING",
    "ENABLE_CPU_RESERVATION",
    "SCHEDULING_CORE_TYPE",
    "ENABLE_HYPER_THREADING",
    "CPU_DENORMALS_OPTIMIZATION",
    "TBB_PARTITIONER",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE",
)


def our_config(ir: Path, x: np.ndarray) -> dict:
    """The compiled properties and input of the bench's OpenVINO forward (same compile call as forward.py)."""
    import openvino as ov

    from c3ae_edge.export.backends.openvino_backend import compile_ir

    c = compile_ir(ir, 1, "f32", batch=x.shape[0], latency=True)[1]
    return {
        **{k: str(c.get_property(k)) for k in OUR_PROPERTIES},
        "input": f"{c.inputs[0].get_element_type().get_type_name()} {list(c.inputs[0].get_shape())}",
        "openvino": ov.__version__,
    }


def in_process(ir: Path, runs: int, x: np.ndarray) -> dict[str, float]:
    """p50 seconds of the bench's lean and wrap forwards (perf_counter) and of benchmark_app's loop
    (request.latency)."""
    import openvino as ov

    from c3ae_edge.export.backends.openvino_backend import bench_forward as openvino_forward
    from c3ae_edge.export.backends.openvino_backend import compile_ir

    prec = "int8" if "int8" in ir.name else "fp32"
    fwd = {c: openvino_forward(ir, 1, prec, 1, call=c) for c in ("lean", "async", "wrap")}
    req = compile_ir(ir, 1, "f32", batch=len(x), latency=True)[1].create_infer_request()
    req.set_input_tensor(ov.Tensor(np.ascontiguousarray(x)))
    fwd["infer() wall, input pre-set"] = lambda _: req.infer()
    fwd["start_async()+wait() wall, input pre-set"] = lambda _: (req.start_async(), req.wait())
    ns: dict[str, list] = {k: [] for k in (*fwd, "benchmark_app loop (request.latency)")}
    for f in fwd.values():
        stats.time_runs(f, x, 0, 100, first=False)
    for _ in range(100):
        req.infer()
    for _ in range(max(1, runs // 100)):
        for k, f in fwd.items():
            ns[k] += stats.time_runs(f, x, 100, 0, first=False)[0]
        for _ in range(100):
            req.infer()
            ns["benchmark_app loop (request.latency)"].append(req.latency * 1e6)  # ms -> ns
    out = {k: float(np.median(v)) / 1e9 for k, v in ns.items()}
    for k in ("lean", "async"):  # which thread computes: the caller's CPU time per call holds the inference, or not
        cpu = []
        for _ in range(200):
            c0 = time.thread_time_ns()
            fwd[k](x)
            cpu.append(time.thread_time_ns() - c0)
        out[f"{k}: calling thread's CPU time"] = float(np.median(cpu)) / 1e9
    # the quietest block's median per variant: on a shared machine, closer to what each call costs by itself
    out.update(
        {
            f"{k} [quietest block]": float(min(np.median(v[i : i + 100]) for i in range(0, len(v), 100))) / 1e9
            for k, v in ns.items()
        }
    )
    return out


def lean_alone(ir: Path, runs: int, x: np.ndarray) -> dict[str, float]:
    """The bench's lean forward alone in its process (one compiled model, one call in a loop, as benchmark_app runs):
    p50 wall seconds per call, timed as the bench times it."""
    from c3ae_edge.export.backends.openvino_backend import bench_forward as openvino_forward

    f = openvino_forward(ir, 1, "int8" if "int8" in ir.name else "fp32", 1, call="lean")
    ns = stats.time_runs(f, x, runs, 100, first=False)[0]
    return {"lean, alone in its process": float(np.median(ns)) / 1e9}


def input_probe(ir: Path, x: np.ndarray, blocks: int = 20) -> dict[str, float]:
    """request.latency p50 (s) of one IR in one process, interleaved in blocks of 100: its f32 input with our face
    crops, random floats, and (benchmark_app's default) a u8 input with random bytes or the faces as bytes."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    core = ov.Core()
    reqs = {}
    for ip in ("f32", "u8"):
        m = core.read_model(str(ir))
        m.reshape(list(x.shape))
        if ip == "u8":
            pp = PrePostProcessor(m)
            pp.input(0).tensor().set_element_type(ov.Type.u8)
            m = pp.build()
        reqs[ip] = core.compile_model(
            m,
            "CPU",
            {
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                "INFERENCE_NUM_THREADS": 1,
                "INFERENCE_PRECISION_HINT": "f32",
            },
        ).create_infer_request()
    rs = np.random.default_rng(0)
    inputs = {
        "f32 face crops": ("f32", x.astype(np.float32)),
        "f32 random [0, 255]": ("f32", rs.uniform(0, 255, x.shape).astype(np.float32)),
        "f32 random [-1, 1]": ("f32", rs.uniform(-1, 1, x.shape).astype(np.float32)),
        "u8 random bytes (benchmark_app default)": ("u8", rs.integers(0, 256, x.shape).astype(np.uint8)),
        "u8 face crops as bytes": ("u8", np.clip(x * 127.5 + 127.5, 0, 255).astype(np.uint8)),
    }
    lat: dict[str, list] = {k: [] for k in inputs}
    for _ in range(blocks):
        for k, (ip, data) in inputs.items():
            req = reqs[ip]
            req.set_input_tensor(ov.Tensor(data))
            for _ in range(100):
                req.infer()
                lat[k].append(req.latency / 1e3)
    return {k: float(np.median(v)) for k, v in lat.items()}


def export_plain(tmp: Path) -> list[Path]:
    from c3ae_edge.bench import harness
    from c3ae_edge.export.backends.common import head_weights
    from c3ae_edge.export.registry import get_backend

    x, _, cal, _ = harness.faces(1, None, 0)
    model, _ = harness.build_model("c3ae_plain", 0)
    be = get_backend("openvino")
    return [harness.export_artifact(be, model, x[:1], cal, p, tmp, head_weights(model)).path for p in ("fp32", "int8")]


def child(ir: Path, runs: int, x: np.ndarray, config: bool = False, mode: str = "--child"):
    """in_process() in a fresh interpreter (no torch, no nncf loaded), like benchmark_app's own process
    (``config``: our_config() there instead, as JSON text; ``mode`` "--probe-child": input_probe())."""
    with tempfile.TemporaryDirectory(prefix="c3ae-ov-x-") as td:
        np.save(Path(td) / "x.npy", x)
        r = subprocess.run(
            [sys.executable, __file__, "--config" if config else mode, str(ir), str(Path(td) / "x.npy"), str(runs)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    if r.returncode:
        raise SystemExit(f"in-process timing failed: {r.stderr.strip().splitlines()[-1:]}")
    last = r.stdout.strip().splitlines()[-1]
    return last if config else json.loads(last)


CHILD_MODES = ("--child", "--config", "--probe-child", "--alone-child")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] in CHILD_MODES:
        return child_main(sys.argv[1], Path(sys.argv[2]), np.load(sys.argv[3]), int(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ir", action="append", type=Path, default=[])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--probe", action="store_true", help="only the input probe (input_probe) on each --ir")
    a = ap.parse_args()
    from c3ae_edge.bench import harness

    x = harness.faces(1, None, 0)[0][:1].copy()
    if a.probe:
        return probe(a.ir, x, a.json)
    with tempfile.TemporaryDirectory(prefix="c3ae-ov-") as tmp:
        irs = a.ir or export_plain(Path(tmp))
        res: dict = {ir.name: {"rounds": []} for ir in irs}
        for r in range(a.rounds):
            for ir in irs:
                row = one_round(ir, a.runs, x, Path(tmp), res[ir.name])
                print(
                    f"round {r + 1} {ir.name}: " + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in row.items()),
                    file=sys.stderr,
                )
    summarise(res)
    doc = {"command": command_line(), "environment": onboard.environment(1), "results": res}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(doc, indent=1) + "\n")
    else:
        print(json.dumps(doc, indent=1))


def command_line() -> str:
    return "python bench/scripts/ov_overhead.py " + " ".join(sys.argv[1:])


def child_main(mode: str, ir: Path, x: np.ndarray, n: int) -> None:
    """A child process's work (``mode``, one of CHILD_MODES), printed as one JSON line."""
    run = {
        "--config": lambda: our_config(ir, x),
        "--probe-child": lambda: input_probe(ir, x),
        "--alone-child": lambda: lean_alone(ir, n, x),
        "--child": lambda: in_process(ir, n, x),
    }[mode]
    print(json.dumps(run()))


def probe(irs: list[Path], x: np.ndarray, json_file: Path | None) -> None:
    """--probe: input_probe() on each IR, each in a fresh process."""
    doc = {
        "command": command_line(),
        "environment": onboard.environment(1),
        "input_probe_request_latency_p50_s": {ir.name: child(ir, 0, x, mode="--probe-child") for ir in irs},
    }
    text = json.dumps(doc, indent=1) + "\n"
    json_file.write_text(text) if json_file else print(text)


def one_round(ir: Path, runs: int, x: np.ndarray, tmp: Path, res: dict) -> dict[str, float]:
    """One round on one IR: benchmark_app, the lean forward alone, benchmark_app's default input, then the forwards
    in one process; the first round also records each side's configuration in ``res``."""
    lat, cfg = benchmark_app(ir, runs, list(x.shape), tmp)
    alone = child(ir, runs, x, mode="--alone-child")  # right after benchmark_app: the closest pair
    lat_u8, cfg_u8 = benchmark_app(ir, runs, list(x.shape), tmp, None)
    res.setdefault(
        "config",
        {
            "benchmark_app -ip f32": cfg,
            "benchmark_app default": cfg_u8,
            "bench (forward.py)": json.loads(child(ir, 0, x, config=True)),
        },
    )
    row = {
        "benchmark_app": lat,
        **alone,
        **child(ir, runs, x),
        "benchmark_app default (u8 input, random bytes)": lat_u8,
    }
    res["rounds"].append(row)
    return row


def summarise(res: dict) -> None:
    """Each IR's median over rounds and its ratio to benchmark_app, added to ``res`` and printed on stderr."""
    for name, d in res.items():
        keys = d["rounds"][0].keys()
        print(f"{name} config: " + json.dumps(d["config"]), file=sys.stderr)
        d["median_of_rounds_s"] = {k: float(np.median([rr[k] for rr in d["rounds"]])) for k in keys}
        m = d["median_of_rounds_s"]
        d["ratio_to_benchmark_app"] = {k: m[k] / m["benchmark_app"] for k in keys}
        print(
            f"{name}: " + ", ".join(f"{k} {m[k] * 1e6:.0f} us ({d['ratio_to_benchmark_app'][k]:.3f}x)" for k in keys),
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
