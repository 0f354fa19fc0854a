"""Bench documents -> markdown (Table 3 beside the paper's, the bar, every row, graph reports), a PNG, and --merge."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from c3ae_edge.bench.rows import BenchRow, E2ERow, rows_of
from c3ae_edge.errors import DataError


def table_file(name: str) -> Path:
    """A data table shipped with the bench (c3ae_edge/bench/tables/): the paper's Table 3, the peers' recipe and MAE."""
    return Path(str(resources.files("c3ae_edge.bench") / "tables" / name))


# ---------------------------------------------------------------- inputs


def load_accuracy(path: Path | None = None) -> dict | None:
    """MAE per model from the common recipe (c3ae_edge/bench/tables/peers_mae.json, written by
    bench/scripts/train_peers.py); None if not trained yet."""
    p = path or table_file("peers_mae.json")
    if not p.is_file():
        if path:
            raise DataError(f"{path}: no such accuracy file")
        return None
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
    return doc if doc.get("results") else None


def machine_label(env: dict) -> str:
    cpu = env.get("cpu", {})
    return f"{cpu.get('board') or cpu.get('model') or env.get('machine')} ({env.get('machine')}, {env.get('hostname')})"


def doc_label(doc: dict) -> str:
    """Machine label of one bench document; the on-board runner and GPU runs say so."""
    label = machine_label(doc.get("environment", {}))
    if (doc.get("config") or {}).get("runner"):
        label += " [on-board runner]"
        rts = sorted(
            {
                f"{r['runtime']} {r.get('runtime_version', '')}".strip()
                for r in doc.get("results", [])
                if r.get("runtime_id")
            }
        )
        label += (" " + ", ".join(rts)) if rts else ""  # one board, two runtimes: two Table 3 rows
    elif (doc.get("config") or {}).get("device") == "cuda":
        label += " [cuda]"
    return label


def load_doc(f: Path) -> dict:
    """One bench JSON document, checked (one-line errors for anything else)."""
    from c3ae_edge.board.onboard import SCHEMA

    try:
        d = json.loads(Path(f).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{f}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{f}: is a folder, not a bench JSON file") from None
    except OSError as e:
        raise DataError(f"{f}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{f}: not a bench JSON file ({e})") from None
    if not isinstance(d, dict) or d.get("schema") != SCHEMA or not isinstance(d.get("results"), list):
        raise DataError(f"{f}: not a c3ae-edge bench JSON file (schema {SCHEMA!r} with results)")
    try:
        rows_of(d)
    except ValueError as e:
        raise DataError(f"{f}: {e}") from None
    return d


def merge(files: list[Path]) -> dict:
    """Several bench JSON files (this machine, a GPU run, an on-board run) -> one document, each row labelled by
    machine."""
    from c3ae_edge.bench.paper import document
    from c3ae_edge.board.onboard import SCHEMA

    rows, sources = [], []
    for f in files:
        d = load_doc(f)
        if d.get("merged_from"):  # an earlier merge: keep its rows and sources
            sources += d["merged_from"]
            rows += d["results"]
            continue
        label = doc_label(d)
        sources.append(
            {"file": str(f), "machine": label, "config": d.get("config"), "environment": d.get("environment")}
        )
        for r in rows_of(d):
            r.machine = r.machine or label
            rows.append(r.to_json())
    return {"schema": SCHEMA, "merged_from": sources, "paper": document(), "results": rows}


# ---------------------------------------------------------------- derived numbers


def _machine(doc: dict, r: BenchRow) -> str:
    return r.machine or doc_label(doc)


def best(rows: list[BenchRow], **want) -> BenchRow | None:
    """The timed row with the lowest p50 among ``rows`` matching every field in ``want`` (callables are predicates)."""

    def match(r: BenchRow) -> bool:
        return all(v(getattr(r, k)) if callable(v) else getattr(r, k) == v for k, v in want.items())

    cand = [r for r in rows if r.timed and match(r)]
    return min(cand, key=lambda r: r.p50) if cand else None


def _check(machine: str, check: str, target: str, value: float, met: bool, detail: str) -> dict:
    return {"machine": machine, "check": check, "target": target, "value": value, "met": met, "detail": detail}


def bar(doc: dict) -> list[dict]:
    """The issue's performance bar, computed from this document's rows (per machine)."""
    rows = rows_of(doc)
    machines = sorted({_machine(doc, r) for r in rows})
    return [c for m in machines for c in _bar_checks(m, [r for r in rows if _machine(doc, r) == m])]


def _bar_checks(m: str, mr: list[BenchRow]) -> list[dict]:
    """The bar's checks on one machine's rows: speed-ups vs eager and the paper, int8 vs fp32, the GPU's CUDA Graphs."""
    from c3ae_edge.bench.paper import paper_ref

    out = []
    plain_cpu = (paper_ref("c3ae_plain") or {}).get("cpu_s")
    cpu = dict(model="c3ae_plain", threads=1, batch=1, device="cpu")
    eager = best(mr, backend="torch", **cpu)
    art = best(mr, backend=lambda b: b != "torch", **cpu)
    if eager and art:
        ratio = eager.p50 / art.p50
        out.append(
            _check(
                m,
                "c3ae_plain, 1 thread, p50: best backend vs PyTorch eager (same run)",
                ">= 5x",
                ratio,
                ratio >= 5,
                f"{art.label} {_us(art)} vs torch eager {_us(eager)}",
            )
        )
    if art and plain_cpu:
        ratio = plain_cpu / art.p50
        out.append(
            _check(
                m,
                "c3ae_plain, 1 thread, p50: best backend vs the paper's CPU figure",
                ">= 50x",
                ratio,
                ratio >= 50,
                f"{art.label} {_us(art)} vs the paper's {plain_cpu * 1e3:.1f} ms (Keras, Xeon 2.1 GHz)",
            )
        )
    for model in sorted({r.model for r in mr if (r.device or "cpu") == "cpu"}):
        q = best(mr, model=model, precision="int8", backend=lambda b: b != "torch", threads=1, batch=1)
        f = best(mr, model=model, precision="fp32", backend=lambda b: b != "torch", threads=1, batch=1)
        if q and f:
            ratio = f.p50 / q.p50
            out.append(
                _check(
                    m,
                    f"{model}, 1 thread, p50: best int8 artifact vs best fp32 artifact",
                    ">= 1.5x",
                    ratio,
                    ratio >= 1.5,
                    f"{q.label} {_us(q)} vs {f.label} {_us(f)}",
                )
            )
    g = best(mr, model="c3ae_plain", batch=1, device="cuda", backend=lambda b: "cuda-graph" in str(b))
    if g:
        out.append(
            _check(
                m,
                "c3ae_plain, GPU, CUDA Graphs, batch 1, p50",
                "<= 50 us",
                g.p50 * 1e6,
                g.p50 <= 50e-6,
                f"{g.label} {_us(g)}",
            )
        )
    return out


def _us(r: BenchRow) -> str:
    return f"{r.p50 * 1e6:.1f} us"


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f} ms"


def _lat(s: float) -> str:
    return f"{s * 1e6:.1f}" if s < 0.1 else f"{s * 1e6:.0f}"


# ---------------------------------------------------------------- markdown, one function per section


def markdown(doc: dict, png_name: str | None = None) -> str:
    """The whole report: sources, Table 3 beside the paper's, MAE and weights, the bar, every row, photo to age,
    graph reports, environments and the plot."""
    rows = rows_of(doc)
    L = ["# c3ae-edge bench", ""]
    L += sources_section(doc)
    L += table3_section(doc, rows)
    L += accuracy_lines(doc, rows)
    L += bar_section(doc)
    L += rows_section(doc, rows)
    L += photo_to_age_section(doc)
    L += graph_section(rows)
    L += environment_section(doc, rows)
    if png_name:
        L += [f"![latency vs MAE and size]({png_name})", ""]
    return "\n".join(L) + "\n"


def sources_section(doc: dict) -> list[str]:
    """Where the rows came from (merged files or the command), and what is measured vs the paper's."""
    from c3ae_edge.bench.paper import PAPER_SETUP

    if doc.get("merged_from"):
        L = ["Merged from:", ""]
        for s in doc["merged_from"]:
            cmd = (s.get("config") or {}).get("command")
            L.append(f"- `{s['file']}`: {s['machine']}" + (f", command `{cmd}`" if cmd else ""))
        L.append("")
    else:
        c = doc.get("config", {})
        L = [
            f"Command: `{c.get('command') or 'c3ae-edge bench'}` ({c.get('wall_time_s', '?')} s wall time). "
            f"Input: {c.get('input', '-')}.",
            "",
        ]
    return L + [
        "Every number below is measured by this run except the columns labelled **paper**, which are the "
        f"paper's Table 3 ({PAPER_SETUP['framework']}, CPU: {PAPER_SETUP['cpu']}, GPU: {PAPER_SETUP['gpu']}). "
        "Latency = seconds per forward, `time.perf_counter_ns` around "
        "each call, after warm-up; p50 with a bootstrap 95% CI.",
        "",
    ]


TABLE3_HEAD = [
    "| model | params (paper) | params (ours) | MACC M (paper) | MACC M (ours) | CPU (paper) | machine "
    "| PyTorch eager p50 | best CPU p50 | best backend | speed-up vs paper CPU | GPU (paper) "
    "| GPU p50 (ours) | MAE UTKFace (common recipe) |",
    "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|",
]


def table3_section(doc: dict, rows: list[BenchRow]) -> list[str]:
    """Table 3 of the paper, one line per model and machine: the paper's columns beside ours."""
    from c3ae_edge.bench.paper import DEFAULT_MODELS

    acc = (doc.get("accuracy") or {}).get("results", {})
    machines = sorted({_machine(doc, r) for r in rows})
    names = {r.model for r in rows}
    models = [m for m in DEFAULT_MODELS if m in names] + sorted(names - set(DEFAULT_MODELS))
    L = ["## Table 3, reproduced", "", *TABLE3_HEAD]
    for model in models:
        mae = acc.get(model, {}).get("mae")
        mae_s = f"{mae:.2f}" if isinstance(mae, (int, float)) else "not yet trained"
        for m in machines:
            mr = [r for r in rows if r.model == model and _machine(doc, r) == m]
            if mr:
                L.append(_table3_line(model, m, mr, rows, mae_s))
    return L


def _table3_line(model: str, m: str, mr: list[BenchRow], rows: list[BenchRow], mae_s: str) -> str:
    any_r = next((r for r in rows if r.model == model and r.paper), None) or next(r for r in rows if r.model == model)
    p = any_r.paper or {}
    e = best(mr, backend="torch", threads=1, batch=1, device="cpu")
    b = best(mr, threads=1, batch=1, device="cpu")
    g = best(mr, batch=1, device="cuda")
    macc = next(((r.macc or {}).get("model") for r in rows if r.model == model and (r.macc or {}).get("model")), None)
    if not (macc or b or g):
        return f"| {model} | - | - | - | - | - | {m} | - | - | - | - | - | - | {mae_s} |"
    sp = f"{p['cpu_s'] / b.p50:.0f}x" if b and p.get("cpu_s") else "-"
    gpu = f"{_ms(g.p50)} ({g.backend.replace('torch-cuda ', '')} {g.precision})" if g else "not run"
    return (
        f"| {model} | {_n(p.get('params'))} | {_n(any_r.params)} | {p.get('macc_m') or '-'} | "
        f"{f'{macc / 1e6:.1f}' if macc else '-'} | {_ms(p.get('cpu_s'))} | {m} | {_ms(e.p50) if e else '-'} | "
        f"{_ms(b.p50) if b else '-'} | {b.label if b else '-'} | {sp} | {_ms(p.get('gpu_s'))} | {gpu} | {mae_s} |"
    )


def accuracy_lines(doc: dict, rows: list[BenchRow]) -> list[str]:
    """Where the MAE column comes from, and which weights each model ran with."""
    if (doc.get("accuracy") or {}).get("results", {}):
        L = ["", f"MAE: {doc['accuracy'].get('note', 'c3ae_edge/bench/tables/peers_mae.json')}."]
    else:
        L = [
            "",
            "MAE: no model has been trained with the common recipe yet "
            "(`c3ae_edge/bench/tables/peers_recipe.json`, run `python bench/scripts/train_peers.py`).",
        ]
    weights = sorted({(r.model, r.weights) for r in rows if r.weights})
    if weights:
        L += ["", "Weights: " + "; ".join(f"{m}: {w}" for m, w in weights) + "."]
    return L


def bar_section(doc: dict) -> list[str]:
    """The performance bar: each check, its target, the measured ratio and whether it is met."""
    checks = bar(doc)
    if not checks:
        return []
    L = [
        "",
        "## Performance bar (ratios within one run)",
        "",
        "| machine | check | target | measured | met | rows |",
        "|---|---|---|---:|---|---|",
    ]
    for c in checks:
        val = f"{c['value']:.1f} us" if "us" in c["target"] else f"{c['value']:.2f}x"
        met = "yes" if c["met"] else "**no**"
        L.append(f"| {c['machine']} | {c['check']} | {c['target']} | {val} | {met} | {c['detail']} |")
    return L


ROWS_HEAD = [
    "| machine | model | backend | precision | threads | batch | size KiB | MACC M (model / graph) "
    "| p50 us [95% CI] | mean | min | p90 | p99 | std | outliers | first ms | load ms | img/s "
    "| peak RSS MB (+ this row) | of peak MAC/s | max age diff vs PyTorch |",
    "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def rows_section(doc: dict, rows: list[BenchRow]) -> list[str]:
    """Every row: size, MACC, latency distribution, first inference, load, throughput, memory, efficiency, parity."""
    L = ["", "## Every row", "", *ROWS_HEAD]
    for r in rows:
        prec = r.precision + (f" ({r.variant})" if r.variant else "")
        head = f"| {_machine(doc, r)} | {r.model} | {r.backend_label} | {prec} | {r.threads or '-'} | {r.batch} |"
        if not r.timed:
            L.append(head + f" {r.error if r.error is not None else 'no timing'} |" + " |" * 14)
            continue
        L.append(head + " " + " | ".join(_row_cells(r)) + " |")
    return L


def _row_cells(r: BenchRow) -> list[str]:
    lat, mc = r.latency, r.macc or {}
    gm = f" / {mc['graph'] / 1e6:.2f}" if mc.get("graph") else ""
    eff = r.efficiency or {}
    pd = (r.parity or {}).get("max_abs_age_diff_vs_pytorch")
    ci = lat["p50_ci95"]
    model_m = f"{mc['model'] / 1e6:.2f}" if mc.get("model") else "-"
    return [
        f"{(r.artifact or {}).get('bytes', 0) / 1024:.1f}",
        model_m + gm,
        f"{_lat(lat['p50'])} [{_lat(ci[0])}, {_lat(ci[1])}]",
        _lat(lat["mean"]),
        _lat(lat["min"]),
        _lat(lat["p90"]),
        _lat(lat["p99"]),
        _lat(lat["stdev"]),
        str(lat.get("outliers", "-")),
        f"{r.first_inference['time'] * 1e3:.2f}",
        f"{r.load['time'] * 1e3:.1f}",
        f"{r.throughput['value']:,.0f}",
        _mem(r.memory or {}),
        f"{100 * eff['fraction_of_peak']:.1f}%" if eff.get("fraction_of_peak") else "-",
        f"{pd:.4f}" if isinstance(pd, float) else "-",
    ]


GRAPH_INTRO = (
    "Ops in the artifact; ops the conversion added (Transpose beyond those in the PyTorch graph; "
    "Quantize/Dequantize/FakeQuantize); where the ops ran (TFLite: XNNPACK delegate vs CPU kernels; "
    "OpenVINO: executed layers by runtime precision; ONNX Runtime: the optimised graph it executes)."
)


def graph_section(rows: list[BenchRow]) -> list[str]:
    """One line per artifact (and machine): its ops, what the conversion added, where the ops ran."""
    least = min((x.threads or 1) for x in rows) if rows else 1
    g = [r for r in rows if r.graph and r.threads == least and r.batch == 1]
    if not g:
        return []
    L = [
        "",
        "## Graph report per artifact",
        "",
        GRAPH_INTRO,
        "",
        "| artifact | nodes | ops | + Transpose | + Quantize | + Dequantize | where it ran |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    seen = set()
    for r in g:
        key = (r.machine, r.artifact["file"])
        if key in seen:
            continue
        seen.add(key)
        gr = r.graph
        if "error" in gr:
            L.append(f"| {r.artifact['file']} | - | {gr['error']} | | | | |")
            continue
        ad = gr.get("added_by_conversion", {})
        L.append(
            f"| {r.artifact['file']} | {gr['nodes']} | {_ops(gr['ops'])} | {ad.get('transpose')} | "
            f"{ad.get('quantize')} | {ad.get('dequantize')} | {_where(gr.get('runtime', {}))} |"
        )
    return L


def environment_section(doc: dict, rows: list[BenchRow]) -> list[str]:
    """Each machine's CPU, threads, governor, load, OS, flags, versions and measured peaks."""
    L = ["", "## Environment", ""]
    if doc.get("merged_from"):
        envs = [(s["machine"], s.get("environment") or {}) for s in doc["merged_from"]]
    else:
        machines = sorted({_machine(doc, r) for r in rows})
        envs = [(machines[0] if machines else "-", doc.get("environment", {}))]
    for label, env in envs:
        cpu = env.get("cpu", {})
        virt = "virtualised, " if env.get("virtualised") else ""
        flags = " ".join(cpu.get("flags", [])) or "-"
        L += [
            f"**{label}**: CPU {cpu.get('model')}, {cpu.get('logical_cores')} logical cores, threads used "
            f"{env.get('threads_used')}, affinity {env.get('affinity')}, governor {env.get('governor')}, {virt}"
            f"load average at the end {env.get('load_average')}; {env.get('os')}; flags: {flags}; "
            "versions: " + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items()) + ".",
            "",
        ]
        for t, pk in (env.get("peak") or {}).items():
            L.append(
                f"- peak, {t} thread(s): "
                + "; ".join(
                    f"{k} {v['macs_per_s'] / 1e9:.1f} GMAC/s ({v['kernel']}"
                    + (f", int8 ISA {v['isa']}" if v.get("isa") else "")
                    + ")"
                    for k, v in pk.items()
                    if v and v.get("macs_per_s")
                )
            )
        L.append("")
    return L


PHOTO_INTRO = (
    "Stage columns: p50 ms per image; total: p50 (mean) of the per-image sums; images/s = 1 / mean total; "
    "faces: images with a face found / images (with the annotated face: IoU >= 0.4 with its landmark box); "
    "thread CPU: p50 of the per-image CPU time of the timing thread (on a shared machine, the wall time "
    "less the waits for a core)."
)


def photo_to_age_section(doc: dict) -> list[str]:
    """Photo to age: ms per image per stage (p50), total p50/mean, images/s, faces found, per input and artifact."""
    rows = [r for r in rows_of(doc) if isinstance(r, E2ERow) and r.pipeline == "photo-to-age" and r.latency is not None]
    if not rows:
        return []
    how = (doc.get("config") or {}).get("photo_to_age") or "see each source's config"
    L = [
        "",
        "## Photo to age (end to end)",
        "",
        f"{how}. {PHOTO_INTRO}",
        "",
        "| machine | model | input | detector | age network | threads | decode | detect | crop | age network "
        "| total p50 (mean) ms | thread CPU ms | images/s | faces (annotated) |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        st, lat = r.stages, r.latency
        found = "-" if r.annotated_face_found is None else r.annotated_face_found
        L.append(
            f"| {_machine(doc, r)} | {r.model} | {r.input} | {r.detector} | {r.label} | {r.threads} | "
            + " | ".join(f"{st[k]['p50'] * 1e3:.2f}" for k in ("decode", "detect", "crop", "age"))
            + f" | {lat['p50'] * 1e3:.2f} ({lat['mean'] * 1e3:.2f}) | "
            f"{_ms_or_dash((r.thread_cpu_p50_s or {}).get('total'))} | "
            f"{r.throughput['value']:.1f} | {r.faces_found}/{r.images} ({found}) |"
        )
    return L


def _ms_or_dash(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}"


def _mem(m: dict) -> str:
    """Process peak RSS over the row's load/first inference/warm-up, and how much of it this row added."""
    peak, before = m.get("peak_rss"), m.get("rss_before_load")
    if peak is None:
        return "-"
    return f"{peak:.0f} (+{max(0.0, peak - before):.1f})" if before is not None else f"{peak:.0f}"


def _ops(ops: dict, n: int = 6) -> str:
    items = list(ops.items())
    return ", ".join(f"{k} {v}" for k, v in items[:n]) + (f", +{len(items) - n} kinds" if len(items) > n else "")


def _where(rt: dict) -> str:
    if "delegate_ops" in rt:
        cpu = rt.get("cpu_ops") or {}
        return (
            f"{rt.get('delegate')}: {sum(rt['delegate_ops'].values())} ops in {rt.get('partitions')} partition(s); CPU "
            "kernels: " + (_ops(cpu) if cpu else "none")
        )
    if "executed_layers_by_precision" in rt:
        return "OpenVINO CPU: " + _ops(rt["executed_layers_by_precision"], 8)
    if "optimised_ops" in rt:
        return "ORT CPU EP, optimised: " + _ops(rt["optimised_ops"], 8)
    return "-"


# ---------------------------------------------------------------- plot


def plot(doc: dict, path: Path) -> bool:
    """latency (p50) vs MAE and vs artifact size, one marker per backend/precision; False if matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in rows_of(doc) if r.timed and r.batch == 1]
    acc = (doc.get("accuracy") or {}).get("results", {})
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5.2))
    groups = sorted({(r.backend, r.precision) for r in rows})  # a variant plots with its backend/precision
    markers = "osD^v<>pPX*h"
    least = min((x.threads or 1) for x in rows) if rows else 1
    for i, (b, p) in enumerate(groups):
        g = [r for r in rows if (r.backend, r.precision) == (b, p) and (r.threads or 1) == least]
        lat = [r.p50 * 1e3 for r in g]
        a2.scatter([r.artifact["bytes"] / 1024 for r in g], lat, marker=markers[i % len(markers)], label=f"{b} {p}")
        maes = {r.model: acc.get(r.model, {}).get("mae") for r in g}
        pts = [(maes[r.model], r.p50 * 1e3) for r in g if isinstance(maes[r.model], (int, float))]
        if pts:
            a1.scatter(*zip(*pts), marker=markers[i % len(markers)], label=f"{b} {p}")
    a1.set(
        xlabel="MAE on UTKFace (years, common recipe)",
        ylabel="p50 latency (ms, batch 1)",
        yscale="log",
        title="latency vs MAE",
    )
    if not any(isinstance(v.get("mae"), (int, float)) for v in acc.values()):
        msg = "no MAE yet:\nrun bench/scripts/train_peers.py"
        a1.text(0.5, 0.5, msg, ha="center", va="center", transform=a1.transAxes)
    a2.set(
        xlabel="artifact size (KiB)",
        ylabel="p50 latency (ms, batch 1)",
        xscale="log",
        yscale="log",
        title="latency vs size",
    )
    for r in {r.model: r for r in rows if r.backend == "torch"}.values():
        a2.annotate(r.model, (r.artifact["bytes"] / 1024, r.p50 * 1e3), fontsize=7, alpha=0.7)
    for a in (a1, a2):
        a.grid(True, which="both", alpha=0.3)
    if groups:
        a2.legend(fontsize=7, ncol=2)
    fig.suptitle("c3ae-edge bench: " + ", ".join(sorted({_machine(doc, r) for r in rows}))[:150], fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
