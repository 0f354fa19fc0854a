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


def gpu_facts(doc: dict) -> dict | None:
    """The GPU a document's rows ran on: ``environment.gpu`` (this bench), else the rows' own ``gpu`` blocks (the
    bench before the GPU was recorded in the environment); None for a CPU document."""
    env = doc.get("environment") or {}
    if env.get("gpu"):
        return env["gpu"]
    row = next((r for r in doc.get("results", []) if isinstance(r, dict) and r.get("gpu")), None)
    if row is None:
        return None
    from c3ae_edge.bench.cuda_facts import cudnn_version

    g = dict(row["gpu"])
    if isinstance(g.get("cudnn"), int):
        g["cudnn"] = cudnn_version(g["cudnn"])
    return g


def gpu_label(g: dict) -> str:
    """NVIDIA H200 (141 GB, driver 580.159.04, CUDA 13.0, cuDNN 9.19.0): what is known of it."""
    facts = [
        f"{g['memory_gb']:g} GB" if g.get("memory_gb") else None,
        f"driver {g['driver']}" if g.get("driver") else None,
        f"CUDA {g['cuda']}" if g.get("cuda") else None,
        f"cuDNN {g['cudnn']}" if g.get("cudnn") else None,
    ]
    known = ", ".join(f for f in facts if f)
    return f"{g.get('name', 'GPU')}" + (f" ({known})" if known else "")


def doc_label(doc: dict) -> str:
    """Machine label of one bench document: the GPU (host CPU beside it) for a GPU run; the on-board runner says so."""
    label = machine_label(doc.get("environment", {}))
    g = gpu_facts(doc)
    if g and (doc.get("config") or {}).get("device") == "cuda":
        return f"{gpu_label(g)} on {label}"
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


MAX_DOC_BYTES = 64 << 20  # a bench JSON of every model, backend and thread count is a few MB


def load_doc(f: Path) -> dict:
    """One bench JSON document, checked (one-line errors for anything else): bounded in size, numbers only where
    numbers belong (no NaN or Infinity), latencies finite and non-negative, names of bounded length."""
    from c3ae_edge.board.onboard import SCHEMA

    try:
        size = Path(f).stat().st_size
        if size > MAX_DOC_BYTES:
            raise DataError(f"{f}: {size:,} bytes, larger than a bench JSON file can be ({MAX_DOC_BYTES >> 20} MiB)")
        d = json.loads(Path(f).read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise DataError(f"{f}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{f}: is a folder, not a bench JSON file") from None
    except OSError as e:
        raise DataError(f"{f}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{f}: not a bench JSON file ({e})") from None
    except ValueError as e:  # NaN, Infinity
        raise DataError(f"{f}: not a bench JSON file ({e})") from None
    if not isinstance(d, dict) or d.get("schema") != SCHEMA or not isinstance(d.get("results"), list):
        raise DataError(f"{f}: not a c3ae-edge bench JSON file (schema {SCHEMA!r} with results)")
    where = _long_text(d)
    if where:
        raise DataError(f"{f}: {where} is longer than {MAX_STRING:,} characters (not a name or a note)")
    try:
        rows_of(d)
    except ValueError as e:
        raise DataError(f"{f}: malformed bench rows: {e}") from None
    return d


MAX_STRING = 10_000


def _long_text(v, path: str = "", depth: int = 0) -> str | None:
    """The path of the first string longer than MAX_STRING (or of nesting deeper than 32), else None."""
    if depth > 32:
        return path or "the document"
    if isinstance(v, str):
        return path or "a string" if len(v) > MAX_STRING else None
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        if isinstance(k, str) and len(k) > MAX_STRING:
            return f"a key in {path or 'the document'}"
        found = _long_text(x, f"{path}.{k}" if isinstance(k, str) else f"{path}[{k}]", depth + 1)
        if found:
            return found
    return None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


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
        src = {"file": str(f), "machine": label, "config": d.get("config"), "environment": d.get("environment")}
        src.update({k: d[k] for k in ("provenance", "stopped") if d.get(k)})
        sources.append(src)
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

    cand = [r for r in rows if r.timed and r.parity_ok and match(r)]
    return min(cand, key=lambda r: r.p50) if cand else None


def fastest(rows: list[BenchRow], **want) -> BenchRow | None:
    """The timed row with the most samples/s among ``rows`` matching ``want`` (parity within tolerance)."""
    cand = [r for r in rows if r.timed and r.parity_ok and all(getattr(r, k) == v for k, v in want.items())]
    return max(cand, key=lambda r: r.throughput["value"]) if cand else None


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
    return out + _gpu_checks(m, mr)


GPU_GOALS = (  # the GPU goals of issue 21, on an H200: (model, check, target, limit)
    ("c3ae_plain", "batch 1, p50, best form", "<= 40 us", 40e-6),
    ("c3ae_full", "batch 1, p50, best form", "<= 60 us", 60e-6),
)
GPU_THROUGHPUT_GOAL = ("c3ae_plain", "fp16, images/s, best batch", ">= 3,000,000 images/s", 3e6)


def _gpu_checks(m: str, mr: list[BenchRow]) -> list[dict]:
    """The GPU goals, from the rows whose ages are within their tolerance."""
    out = []
    for model, what, target, limit in GPU_GOALS:
        g = best(mr, model=model, batch=1, device="cuda")
        if g:
            us = g.p50 * 1e6
            out.append(_check(m, f"{model}, GPU, {what}", target, us, g.p50 <= limit, f"{g.label} {_us(g)}"))
    model, what, target, goal = GPU_THROUGHPUT_GOAL
    t = fastest(mr, model=model, device="cuda", precision="fp16")
    if t:
        v = t.throughput["value"]
        detail = f"{t.label}, batch {t.batch}: {v:,.0f} images/s"
        out.append(_check(m, f"{model}, GPU, {what}", target, v, v >= goal, detail))
    return out


def _check_value(c: dict) -> str:
    if c["target"].endswith(" us"):
        return f"{c['value']:.1f} us"
    if "images/s" in c["target"]:
        return f"{c['value']:,.0f} images/s"
    return f"{c['value']:.2f}x"


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
    """Where the rows came from (merged files or the command), whether the run was cut short, and what is measured vs
    the paper's."""
    from c3ae_edge.bench.paper import PAPER_SETUP

    if doc.get("merged_from"):
        L = ["Merged from:", ""]
        for s in doc["merged_from"]:
            cmd = (s.get("config") or {}).get("command")
            prov = (s.get("provenance") or {}).get("note")
            L.append(
                f"- `{s['file']}`: {s['machine']}"
                + (f", command `{cmd}`" if cmd else "")
                + (f" ({prov})" if prov else "")
                + (f" **partial: {s['stopped']}**" if s.get("stopped") else "")
            )
        L.append("")
    else:
        c = doc.get("config", {})
        L = [
            f"Command: `{c.get('command') or 'c3ae-edge bench'}` ({c.get('wall_time_s', '?')} s wall time). "
            f"Input: {c.get('input', '-')}.",
            "",
        ]
    if doc.get("partial"):
        L += [f"**Partial run: {doc.get('stopped')}.** The rows below are those measured before it stopped.", ""]
    return L + [
        "Every number below is measured by this run except the columns labelled **paper**, which are the "
        f"paper's Table 3 ({PAPER_SETUP['framework']}, CPU: {PAPER_SETUP['cpu']}, GPU: {PAPER_SETUP['gpu']}). "
        "Latency is the wall time of one forward (one call on a batch; a GPU call includes the device "
        "synchronise), `time.perf_counter_ns` around each call, after warm-up; Table 3 gives it in the unit "
        "written in each cell, the other tables in microseconds (us); p50 with a bootstrap 95% CI.",
        "",
    ]


TABLE3_HEAD = [
    "| model | params (paper) | params (ours) | MACC M (paper) | MACC M (ours) | CPU (paper) | machine "
    "| PyTorch eager p50 | best CPU p50 | best backend | speed-up vs paper CPU | GPU (paper) "
    "| GPU p50, batch 1 (ours) | GPU images/s, best batch (ours) | MAE UTKFace, 5-epoch common recipe "
    "| MAE UTKFace test, shipped weights |",
    "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|---|---:|---:|",
]


def table3_section(doc: dict, rows: list[BenchRow]) -> list[str]:
    """Table 3 of the paper, one line per model and CPU machine: the paper's columns beside ours; the GPU columns
    take the best GPU row of the model, whichever document (machine) it came from."""
    from c3ae_edge.bench.paper import DEFAULT_MODELS

    acc = (doc.get("accuracy") or {}).get("results", {})
    names = {r.model for r in rows}
    models = [m for m in DEFAULT_MODELS if m in names] + sorted(names - set(DEFAULT_MODELS))
    L = ["## Table 3, reproduced", "", *TABLE3_HEAD]
    for model in models:
        mae = acc.get(model, {}).get("mae")
        mae_s = f"{mae:.2f}" if isinstance(mae, (int, float)) else "not yet trained"
        mae_s += f" | {shipped_mae(model)}"
        mine = [r for r in rows if r.model == model]
        gpu = _gpu_cells([r for r in mine if r.device == "cuda"])
        machines = sorted({_machine(doc, r) for r in mine if r.device != "cuda"})
        for m in machines or sorted({_machine(doc, r) for r in mine})[:1]:
            L.append(_table3_line(model, m, [r for r in mine if _machine(doc, r) == m], rows, gpu, mae_s))
    return L + _parity_outside(doc, rows)


def shipped_mae(model: str) -> str:
    """The shipped weights' UTKFace test MAE, read from their card (c3ae_edge/weights/MODEL.card.json), or '-'."""
    card = Path(str(resources.files("c3ae_edge.weights") / f"{model}.card.json"))
    try:
        mae = json.loads(card.read_text())["utkface_test"]["mae"]
    except (OSError, ValueError, KeyError, TypeError):
        return "- (no shipped weights)"
    return f"{mae:.2f}"


def _gpu_name(r: BenchRow) -> str:
    return (r.gpu or {}).get("name") or str(r.machine or "GPU").split(" (")[0]


def _gpu_cells(g: list[BenchRow]) -> str:
    """'p50 (form, GPU) | images/s (batch, form)' of a model's best GPU rows (ages within tolerance)."""
    if not g:
        return "not run | not run"
    b1, tp = best(g, batch=1), fastest(g)

    def what(r: BenchRow, extra: str) -> str:
        checked = "" if r.parity else "; ages not checked"
        return f"({extra}{r.backend.replace('torch-cuda ', '')} {r.precision}, {_gpu_name(r)}{checked})"

    lat = f"{_us(b1)} {what(b1, '')}" if b1 else "-"
    thr = f"{tp.throughput['value']:,.0f} {what(tp, f'batch {tp.batch}, ')}"
    return f"{lat} | {thr}"


def _table3_line(model: str, m: str, mr: list[BenchRow], rows: list[BenchRow], gpu: str, mae_s: str) -> str:
    any_r = next((r for r in rows if r.model == model and r.paper), None) or next(r for r in rows if r.model == model)
    p = any_r.paper or {}
    e = best(mr, backend="torch", threads=1, batch=1, device="cpu")
    b = best(mr, threads=1, batch=1, device="cpu")
    macc = next(((r.macc or {}).get("model") for r in rows if r.model == model and (r.macc or {}).get("model")), None)
    sp = f"{p['cpu_s'] / b.p50:.0f}x" if b and p.get("cpu_s") else "-"
    return (
        f"| {model} | {_n(p.get('params'))} | {_n(any_r.params)} | {p.get('macc_m') or '-'} | "
        f"{f'{macc / 1e6:.1f}' if macc else '-'} | {_ms(p.get('cpu_s'))} | {m} | {_ms(e.p50) if e else '-'} | "
        f"{_ms(b.p50) if b else '-'} | {b.label if b else '-'} | {sp} | {_ms(p.get('gpu_s'))} | {gpu} | {mae_s} |"
    )


def _parity_outside(doc: dict, rows: list[BenchRow]) -> list[str]:
    bad = [r for r in rows if r.timed and not r.parity_ok]
    if not bad:
        return []
    L = ["", "Rows whose ages fell outside their tolerance (marked in every table, never a best figure above):", ""]
    for r in bad:
        par = r.parity
        L.append(
            f"- {_machine(doc, r)}: {r.model} {r.label} batch {r.batch}: ages differ from PyTorch fp32 by up to "
            f"{par['max_abs_age_diff_vs_pytorch']:.3f} y (tolerance {par['tolerance']} y)"
        )
    return L


def accuracy_lines(doc: dict, rows: list[BenchRow]) -> list[str]:
    """Where the two MAE columns come from, and which weights each model ran with."""
    if (doc.get("accuracy") or {}).get("results", {}):
        L = ["", f"MAE, 5-epoch common recipe: {doc['accuracy'].get('note', 'c3ae_edge/bench/tables/peers_mae.json')}."]
    else:
        L = [
            "",
            "MAE, 5-epoch common recipe: no model has been trained with the common recipe yet "
            "(`c3ae_edge/bench/tables/peers_recipe.json`, run `python bench/scripts/train_peers.py`).",
        ]
    L += [
        "",
        "That column compares architectures under one small budget; it is not the accuracy of the weights the timed "
        "rows ran with. MAE UTKFace test, shipped weights: the weights this package ships (read from their card, "
        "c3ae_edge/weights/*.card.json, computed on the UTKFace test split when they were made).",
    ]
    weights = sorted({(r.model, r.weights) for r in rows if r.weights})
    if weights:
        L += ["", "Weights timed: " + "; ".join(f"{m}: {w}" for m, w in weights) + "."]
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
        val = _check_value(c)
        met = "yes" if c["met"] else "**no**"
        L.append(f"| {c['machine']} | {c['check']} | {c['target']} | {val} | {met} | {c['detail']} |")
    return L


ROWS_HEAD = [
    "| machine | model | backend | precision | threads | batch | runs | size KiB | MACC M (model / graph) "
    "| p50 us [95% CI] | mean | min | p90 | p99 | std | outliers | first ms | load ms | img/s "
    "| memory MB | of peak MAC/s | max age diff vs PyTorch (y) |",
    "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def rows_section(doc: dict, rows: list[BenchRow]) -> list[str]:
    """Every row: size, MACC, latency distribution, first inference, load, throughput, memory, efficiency, parity."""
    L = ["", "## Every row", "", *ROWS_HEAD]
    for r in rows:
        prec = r.precision + (f" ({r.variant})" if r.variant else "")
        head = f"| {_machine(doc, r)} | {r.model} | {r.backend_label} | {prec} | {r.threads or '-'} | {r.batch} |"
        if not r.timed:
            L.append(head + f" {r.error if r.error is not None else 'no timing'} |" + " |" * 15)
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
    size = (r.artifact or {}).get("bytes")
    return [
        _runs(r),
        f"{size / 1024:.1f}" if size else "-",
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
        _parity_cell(r, pd),
    ]


def _runs(r: BenchRow) -> str:
    """Timed forwards, and '(budget)' when the row's time budget stopped it before --runs."""
    t = r.timing or {}
    return f"{r.latency['count']}" + (" (budget)" if t.get("stopped_by") == "budget" else "")


def _parity_cell(r: BenchRow, pd) -> str:
    if not isinstance(pd, (int, float)):
        return "-"
    if not r.parity_ok:
        return f"**{pd:.4f} > {r.parity['tolerance']} (outside)**"
    return f"{pd:.4f}"


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
    """Process peak RSS over the row's load/first inference/warm-up, and how much of it this row added (GPU: peak
    allocated on the device)."""
    peak, before = m.get("peak_rss"), m.get("rss_before_load")
    if peak is None:
        gpu = m.get("gpu_peak_allocated")
        return f"GPU {gpu:.0f}" if isinstance(gpu, (int, float)) else "-"
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
    """Two panels: each model's best batch-1 latency (CPU, and GPU where measured) against the MAE of its
    architecture under the 5-epoch common recipe; and each CPU artifact's latency against its size. False if
    matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    timed = [r for r in rows_of(doc) if r.timed and r.parity_ok]
    rows = [r for r in timed if r.batch == 1]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5.2))
    _plot_mae(a1, rows, (doc.get("accuracy") or {}).get("results", {}))
    arts = [r for r in rows if (r.device or "cpu") == "cpu" and (r.artifact or {}).get("bytes")]
    gpu = [r for r in timed if r.device == "cuda"]
    if gpu and not arts:
        _plot_batches(a2, gpu)
    else:
        _plot_size(a2, arts)
    fig.suptitle("c3ae-edge bench: " + ", ".join(sorted({_machine(doc, r) for r in rows}))[:150], fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_mae(ax, rows: list[BenchRow], acc: dict) -> None:
    """One point per model and device (its best batch-1 p50); the MAE is the architecture's, not a backend's."""
    maes = {m: v.get("mae") for m, v in acc.items() if isinstance(v.get("mae"), (int, float))}
    models = sorted({r.model for r in rows} & set(maes))
    if len(models) < 2:
        models, one = [], ", ".join(f"{m}: MAE {maes[m]:.2f}" for m in sorted({r.model for r in rows} & set(maes)))
        msg = "a latency-vs-MAE view needs two or more models with a\ncommon-recipe MAE (bench/scripts/train_peers.py)"
        ax.text(0.5, 0.5, msg + (f"\nhere: {one}" if one else ""), ha="center", va="center", transform=ax.transAxes)
    for device, marker, label in (("cpu", "o", "best CPU p50"), ("cuda", "s", "best GPU p50")):
        pts = [(m, best(rows, model=m, device=device)) for m in models]
        pts = [(m, r) for m, r in pts if r]
        if pts:
            ax.scatter([maes[m] for m, _ in pts], [r.p50 * 1e3 for _, r in pts], marker=marker, label=label)
            for m, r in pts:
                ax.annotate(m, (maes[m], r.p50 * 1e3), fontsize=7, alpha=0.7)
    ax.set(
        xlabel="MAE on UTKFace, years (architecture, 5-epoch common recipe; not the shipped weights)",
        ylabel="p50 latency (ms, batch 1)",
        yscale="log",
        title="latency vs MAE (one point per model and device)",
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    _plain_ticks(ax)


def _plot_size(ax, rows: list[BenchRow]) -> None:
    """Each CPU artifact row (least threads): p50 vs artifact size, one marker per backend/precision."""
    least = min((x.threads or 1) for x in rows) if rows else 1
    rows = [r for r in rows if (r.threads or 1) == least]
    groups = sorted({(r.backend_label, r.precision) for r in rows})
    markers = "osD^v<>pPX*h"
    for i, (b, p) in enumerate(groups):
        g = [r for r in rows if (r.backend_label, r.precision) == (b, p)]
        ax.scatter(
            [r.artifact["bytes"] / 1024 for r in g], [r.p50 * 1e3 for r in g], marker=markers[i % 12], label=f"{b} {p}"
        )
    for r in {r.model: r for r in rows if r.backend == "torch"}.values():
        ax.annotate(r.model, (r.artifact["bytes"] / 1024, r.p50 * 1e3), fontsize=7, alpha=0.7)
    ax.set(
        xlabel="artifact size (KiB)",
        ylabel="p50 latency (ms, batch 1)",
        xscale="log",
        yscale="log",
        title="latency vs size (CPU)",
    )
    if groups:
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "no CPU artifact rows", ha="center", va="center", transform=ax.transAxes)
    _plain_ticks(ax)


def _plot_batches(ax, rows: list[BenchRow]) -> None:
    """GPU rows: images/s against batch size, one line per model and form/precision (ages within tolerance); the
    eight forms with the highest throughput."""
    peak: dict = {}
    for r in rows:
        peak[(r.model, r.label)] = max(peak.get((r.model, r.label), 0), r.throughput["value"])
    keys = sorted(sorted(peak, key=peak.get, reverse=True)[:8])
    for i, (m, lab) in enumerate(keys):
        g = sorted((r for r in rows if (r.model, r.label) == (m, lab)), key=lambda r: r.batch)
        ax.plot(
            [r.batch for r in g], [r.throughput["value"] for r in g], marker="osD^v<>pPX*h"[i % 12], label=f"{m} {lab}"
        )
    title = "GPU throughput vs batch" + (f" (the best 8 of {len(peak)} forms)" if len(peak) > 8 else "")
    ax.set(xlabel="batch", ylabel="images/s", xscale="log", yscale="log", title=title)
    ax.legend(fontsize=6)
    _plain_ticks(ax)


def _plain_ticks(ax) -> None:
    """Log axes labelled 0.2, 0.5, 1, 2, 5 ... (not 2x10^-1); within less than a decade, every tick."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator

    def label(axis, minor: bool):
        def fmt(v, _):
            if v <= 0:
                return ""
            lo, hi = sorted(axis.get_view_interval())
            narrow = lo > 0 and math.log10(hi / lo) < 1
            mant = v / 10 ** math.floor(math.log10(v) + 1e-9)
            keep = narrow or any(abs(mant - k) < 1e-6 for k in (1, 2, 5))
            text = f"{v:,.0f}" if v >= 1 else f"{v:.3g}"
            return text if keep and (narrow or not minor) else ""

        return FuncFormatter(fmt)

    ax.grid(True, which="both", alpha=0.3)
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(label(axis, False))
            axis.set_minor_formatter(label(axis, True))
