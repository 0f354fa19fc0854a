"""The GPU check's summary: the issue's table (the H200 run of main 58222b2, committed in bench/results) beside this
run, and the fast path's goals, every figure read from the JSON files (nothing typed in)."""

from __future__ import annotations

import json
from pathlib import Path

from c3ae_edge.bench.rows import BenchRow, rows_of

BEFORE = Path(__file__).resolve().parents[2] / "bench" / "results" / "h200_gpu.json"

# (what, model, variant spec, batch, metric): the issue's table, re-measured by the default run
ISSUE_TABLE = (
    ("c3ae_plain, batch 1, eager fp32, p50", "c3ae_plain", "eager:fp32", 1, "p50"),
    ("c3ae_plain, batch 1, CUDA graph fp32, p50", "c3ae_plain", "graph:fp32", 1, "p50"),
    ("c3ae_plain, batch 1, CUDA graph fp16, p50", "c3ae_plain", "graph:fp16", 1, "p50"),
    ("c3ae_plain, batch 1, CUDA graph bf16, p50", "c3ae_plain", "graph:bf16", 1, "p50"),
    ("c3ae_plain, batch 1, CUDA graph channels-last fp16, p50", "c3ae_plain", "graph+cl:fp16", 1, "p50"),
    ("c3ae_plain, batch 256, CUDA graph fp16, images/s", "c3ae_plain", "graph:fp16", 256, "img/s"),
    ("c3ae_plain, batch 4096, eager fp16, images/s", "c3ae_plain", "eager:fp16", 4096, "img/s"),
    ("c3ae_full, batch 1, CUDA graph fp32, p50", "c3ae_full", "graph:fp32", 1, "p50"),
    ("c3ae_full, batch 256, CUDA graph fp16, images/s", "c3ae_full", "graph:fp16", 256, "img/s"),
)
FAST = ("fused", "fused-pool", "compiled", "compiled-pool", "ort-tensorrt", "ort-cuda", "torch-tensorrt")


def spec_of(r: BenchRow) -> str | None:
    """A row's variant spec (``graph+cl:fp16``): recorded by this bench, or read back from an older backend label."""
    if (r.form or {}).get("spec"):
        return r.form["spec"]
    words = str(r.backend).split()
    if not words or not words[0].startswith("torch-"):
        return None
    words = words[1:]
    base = next((w for w in words if w not in ("cuda-graph", "channels-last")), "eager")
    flags = ("+graph" if "cuda-graph" in words else "") + ("+cl" if "channels-last" in words else "")
    return f"{base}{flags}:{r.precision}"


def _cell(r: BenchRow | None, metric: str) -> str:
    if r is None:
        return "-"
    if metric == "p50":
        return f"{r.p50 * 1e6:.1f} us"
    return f"{r.throughput['value']:,.0f} images/s"


def _find(rows: list[BenchRow], model: str, spec: str, batch: int) -> BenchRow | None:
    got = [r for r in rows if r.timed and r.model == model and r.batch == batch and _base_spec(spec_of(r)) == spec]
    return min(got, key=lambda r: r.p50) if got else None


def _base_spec(spec: str | None) -> str | None:
    """eager+graph:fp32 -> graph:fp32 (the same CUDA graph of the eager model, two spellings)."""
    return spec.replace("eager+graph", "graph") if spec else None


def _best_fast(rows: list[BenchRow], model: str, batch: int | None, metric: str, prec: str | None = None):
    """The best fast-path row (ages within tolerance): lowest p50, or most images/s in fp16."""
    got = [
        r
        for r in rows
        if r.timed
        and r.parity_ok
        and r.model == model
        and (spec_of(r) or "").split("+")[0].split(":")[0] in FAST
        and (batch is None or r.batch == batch)
        and (metric == "p50" or r.precision == "fp16")
        and (prec is None or r.precision == prec)
    ]
    if not got:
        return None
    return min(got, key=lambda r: r.p50) if metric == "p50" else max(got, key=lambda r: r.throughput["value"])


def _load(path: Path) -> list[BenchRow]:
    try:
        return rows_of(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError):
        return []


def summary_lines(out: Path, steps: list[dict], device: str, wall_s: float) -> list[str]:
    now = [r for n in ("default", "fast_latency", "fast_throughput") for r in _load(out / f"{n}.json")]
    before = _load(BEFORE)
    L = [f"# GPU check ({device}, {wall_s} s)", ""]
    if device != "cuda":
        L += ["**A CPU dry run of the check's machinery: these are not GPU figures.**", ""]
    L += ["| step | exit | wall s | command |", "|---|---:|---:|---|"]
    L += [f"| {s['step']} | {s['rc']} | {s.get('wall_s', '-')} | `{s['command']}` |" for s in steps]
    L += ["", "## The issue's table, re-measured", "", f"| | before: `{BEFORE.name}` | this run | fast path |"]
    L += ["|---|---:|---:|---|"]
    for what, model, spec, batch, metric in ISSUE_TABLE:
        fast = _best_fast(now, model, batch, metric, spec.split(":")[1])
        fast_s = f"{_cell(fast, metric)} ({fast.label})" if fast else "-"
        L.append(f"| {what} | {_cell(_find(before, model, spec, batch), metric)} | ")
        L[-1] += f"{_cell(_find(now, model, spec, batch), metric)} | {fast_s} |"
    L += ["", "## Goals (H200)", "", "| goal | target | best row | met |", "|---|---|---|---|"]
    for what, model, batch, metric, target, ok in (
        ("c3ae_plain batch 1 p50", "c3ae_plain", 1, "p50", "<= 40 us", lambda r: r.p50 <= 40e-6),
        (
            "c3ae_plain fp16 images/s",
            "c3ae_plain",
            None,
            "img/s",
            ">= 3,000,000",
            lambda r: r.throughput["value"] >= 3e6,
        ),
        ("c3ae_full batch 1 p50", "c3ae_full", 1, "p50", "<= 60 us", lambda r: r.p50 <= 60e-6),
    ):
        r = _best_fast(now, model, batch, metric)
        cell = f"{_cell(r, metric)} ({r.label}, batch {r.batch})" if r else "not measured"
        L.append(f"| {what} | {target} | {cell} | {'yes' if r and ok(r) else '**no**'} |")
    bad = [r for r in now if r.timed and not r.parity_ok]
    L += ["", f"Rows outside their parity tolerance: {len(bad)} (listed in merged.md)." if bad else ""]
    return L + ["Every row, with its parity: `merged.md` (Table 3 with the GPU columns) and each step's `.md`.", ""]


def write_summary(out: Path, steps: list[dict], device: str, wall_s: float) -> None:
    from c3ae_edge.atomic import write_atomic

    write_atomic(out / "summary.md", "\n".join(summary_lines(out, steps, device, wall_s)) + "\n")
    write_atomic(
        out / "summary.json", json.dumps({"device": device, "wall_s": wall_s, "steps": steps}, indent=1) + "\n"
    )
