"""Bench documents -> markdown (Table 3 beside the paper's, the bar, every row, graph reports), a PNG, and --merge."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from c3ae_edge.errors import DataError


def table_file(name: str) -> Path:
    """A data table shipped with the bench (c3ae_edge/bench/tables/): the paper's Table 3, the peers' recipe and MAE."""
    return Path(str(resources.files("c3ae_edge.bench") / "tables" / name))


# ---------------------------------------------------------------- inputs

def load_accuracy(path: Path | None = None) -> dict | None:
    """MAE per model from the common recipe (c3ae_edge/bench/tables/peers_mae.json, written by tools/train_peers.py); None if not trained yet."""
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
        rts = sorted({f"{r['runtime']} {r.get('runtime_version', '')}".strip() for r in doc.get("results", []) if r.get("runtime_id")})
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
    for i, r in enumerate(d["results"]):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("model", "backend", "precision")) or (
                "latency" in r and not (isinstance(r["latency"], dict) and isinstance(r["latency"].get("p50"), (int, float)))):
            raise DataError(f"{f}: results[{i}] is not a bench row (needs model, backend, precision and a numeric latency.p50)")
    return d


def merge(files: list[Path]) -> dict:
    """Several bench JSON files (this machine, a GPU run, an on-board run) -> one document, each row labelled by machine."""
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
        sources.append({"file": str(f), "machine": label, "config": d.get("config"), "environment": d.get("environment")})
        rows += [{**r, "machine": r.get("machine") or label} for r in d["results"]]
    return {"schema": SCHEMA, "merged_from": sources, "paper": document(), "results": rows}


# ---------------------------------------------------------------- derived numbers

def _ok(r: dict) -> bool:
    """A timed forward row (photo-to-age rows have their own section)."""
    return "latency" in r and not r.get("error") and not r.get("pipeline")


def _machine(doc: dict, r: dict) -> str:
    return r.get("machine") or doc_label(doc)


def best(rows: list[dict], **want) -> dict | None:
    """The row with the lowest p50 among ``rows`` matching every key in ``want`` (callables are predicates)."""
    cand = [r for r in rows if _ok(r) and all(v(r.get(k)) if callable(v) else r.get(k) == v for k, v in want.items())]
    return min(cand, key=lambda r: r["latency"]["p50"]) if cand else None


def bar(doc: dict) -> list[dict]:
    """The issue's performance bar, computed from this document's rows (per machine)."""
    from c3ae_edge.bench.paper import paper_ref

    out = []
    rows = doc["results"]
    plain_cpu = (paper_ref("c3ae_plain") or {}).get("cpu_s")
    for m in sorted({_machine(doc, r) for r in rows}):
        mr = [r for r in rows if _machine(doc, r) == m]
        cpu = dict(model="c3ae_plain", threads=1, batch=1, device="cpu")
        eager = best(mr, backend="torch", **cpu)
        art = best(mr, backend=lambda b: b != "torch", **cpu)
        if eager and art:
            ratio = eager["latency"]["p50"] / art["latency"]["p50"]
            out.append({"machine": m, "check": "c3ae_plain, 1 thread, p50: best backend vs PyTorch eager (same run)", "target": ">= 5x",
                        "value": ratio, "met": ratio >= 5, "detail": f"{_name(art)} {_us(art)} vs torch eager {_us(eager)}"})
        if art and plain_cpu:
            ratio = plain_cpu / art["latency"]["p50"]
            out.append({"machine": m, "check": "c3ae_plain, 1 thread, p50: best backend vs the paper's CPU figure", "target": ">= 50x",
                        "value": ratio, "met": ratio >= 50, "detail": f"{_name(art)} {_us(art)} vs the paper's {plain_cpu * 1e3:.1f} ms (Keras, Xeon 2.1 GHz)"})
        for model in sorted({r["model"] for r in mr if r.get("device", "cpu") == "cpu"}):
            q = best(mr, model=model, precision="int8", backend=lambda b: b != "torch", threads=1, batch=1)
            f = best(mr, model=model, precision="fp32", backend=lambda b: b != "torch", threads=1, batch=1)
            if q and f:
                ratio = f["latency"]["p50"] / q["latency"]["p50"]
                out.append({"machine": m, "check": f"{model}, 1 thread, p50: best int8 artifact vs best fp32 artifact", "target": ">= 1.5x",
                            "value": ratio, "met": ratio >= 1.5, "detail": f"{_name(q)} {_us(q)} vs {_name(f)} {_us(f)}"})
        g = best(mr, model="c3ae_plain", batch=1, device="cuda", backend=lambda b: "cuda-graph" in str(b))
        if g:
            out.append({"machine": m, "check": "c3ae_plain, GPU, CUDA Graphs, batch 1, p50", "target": "<= 50 us", "value": g["latency"]["p50"] * 1e6,
                        "met": g["latency"]["p50"] <= 50e-6, "detail": f"{_name(g)} {_us(g)}"})
    return out


def _name(r: dict) -> str:
    return f"{_backend(r)} {r['precision']}" + (f" ({r['variant']})" if r.get("variant") else "")


def _backend(r: dict) -> str:
    """The backend, and for on-board rows the runtime, version and delegate that ran (two runtimes on one board differ)."""
    if not r.get("runtime_id"):
        return str(r.get("backend"))
    return f"{r['backend']} [{r['runtime_id']} {r.get('runtime_version', '')}]".replace(" ]", "]")


def _us(r: dict) -> str:
    return f"{r['latency']['p50'] * 1e6:.1f} us"


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f} ms"


def _lat(s: float) -> str:
    return f"{s * 1e6:.1f}" if s < 0.1 else f"{s * 1e6:.0f}"


# ---------------------------------------------------------------- markdown

def markdown(doc: dict, png_name: str | None = None) -> str:
    from c3ae_edge.bench.paper import DEFAULT_MODELS, PAPER_SETUP

    rows = doc["results"]
    acc = (doc.get("accuracy") or {}).get("results", {})
    machines = sorted({_machine(doc, r) for r in rows})
    L = ["# c3ae-edge bench", ""]
    if doc.get("merged_from"):
        L += ["Merged from:", ""] + [f"- `{s['file']}`: {s['machine']}" + (f", command `{s['config'].get('command')}`" if (s.get('config') or {}).get("command") else "")
                                      for s in doc["merged_from"]] + [""]
    else:
        c = doc.get("config", {})
        L += [f"Command: `{c.get('command') or 'c3ae-edge bench'}` ({c.get('wall_time_s', '?')} s wall time). Input: {c.get('input', '-')}.", ""]
    L += [f"Every number below is measured by this run except the columns labelled **paper**, which are the paper's Table 3 "
          f"({PAPER_SETUP['framework']}, CPU: {PAPER_SETUP['cpu']}, GPU: {PAPER_SETUP['gpu']}). Latency = seconds per forward, "
          "`time.perf_counter_ns` around each call, after warm-up; p50 with a bootstrap 95% CI.", ""]
    # Table 3
    L += ["## Table 3, reproduced", "",
          "| model | params (paper) | params (ours) | MACC M (paper) | MACC M (ours) | CPU (paper) | machine | PyTorch eager p50 | best CPU p50 | best backend | speed-up vs paper CPU | GPU (paper) | GPU p50 (ours) | MAE UTKFace (common recipe) |",
          "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|"]
    models = [m for m in DEFAULT_MODELS if any(r.get("model") == m for r in rows)] + sorted({r["model"] for r in rows} - set(DEFAULT_MODELS))
    for model in models:
        any_r = next((r for r in rows if r.get("model") == model and r.get("paper")), None) or next(r for r in rows if r.get("model") == model)
        p = any_r.get("paper") or {}
        mae = acc.get(model, {}).get("mae")
        mae_s = f"{mae:.2f}" if isinstance(mae, (int, float)) else "not yet trained"
        for m in machines:
            mr = [r for r in rows if r.get("model") == model and _machine(doc, r) == m]
            if not mr:
                continue
            e = best(mr, backend="torch", threads=1, batch=1, device="cpu")
            b = best(mr, threads=1, batch=1, device="cpu")
            g = best(mr, batch=1, device="cuda")
            macc = next(((r.get("macc") or {}).get("model") for r in rows if r.get("model") == model and (r.get("macc") or {}).get("model")), None)
            sp = f"{p['cpu_s'] / b['latency']['p50']:.0f}x" if b and p.get("cpu_s") else "-"
            L.append(f"| {model} | {_n(p.get('params'))} | {_n(any_r.get('params'))} | {p.get('macc_m') or '-'} | {f'{macc / 1e6:.1f}' if macc else '-'} | {_ms(p.get('cpu_s'))} | {m} | "
                     f"{_ms(e['latency']['p50']) if e else '-'} | {_ms(b['latency']['p50']) if b else '-'} | {_name(b) if b else '-'} | {sp} | "
                     f"{_ms(p.get('gpu_s'))} | {_ms(g['latency']['p50']) + ' (' + g['backend'].replace('torch-cuda ', '') + ' ' + g['precision'] + ')' if g else 'not run'} | {mae_s} |"
                     if macc or b or g else f"| {model} | - | - | - | - | - | {m} | - | - | - | - | - | - | {mae_s} |")
    if acc:
        L += ["", f"MAE: {doc['accuracy'].get('note', 'c3ae_edge/bench/tables/peers_mae.json')}."]
    else:
        L += ["", "MAE: no model has been trained with the common recipe yet (`c3ae_edge/bench/tables/peers_recipe.json`, run `python tools/train_peers.py`)."]
    weights = sorted({(r['model'], r.get('weights')) for r in rows if r.get('weights')})
    if weights:
        L += ["", "Weights: " + "; ".join(f"{m}: {w}" for m, w in weights) + "."]
    # the bar
    checks = bar(doc)
    if checks:
        L += ["", "## Performance bar (ratios within one run)", "", "| machine | check | target | measured | met | rows |", "|---|---|---|---:|---|---|"]
        for c in checks:
            val = f"{c['value']:.1f} us" if "us" in c["target"] else f"{c['value']:.2f}x"
            L.append(f"| {c['machine']} | {c['check']} | {c['target']} | {val} | {'yes' if c['met'] else '**no**'} | {c['detail']} |")
    # every row
    L += ["", "## Every row", "",
          "| machine | model | backend | precision | threads | batch | size KiB | MACC M (model / graph) | p50 us [95% CI] | mean | min | p90 | p99 | std | outliers | first ms | load ms | img/s | peak RSS MB (+ this row) | of peak MAC/s | max age diff vs PyTorch |",
          "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        prec = r.get("precision") + (f" ({r['variant']})" if r.get("variant") else "")
        head = f"| {_machine(doc, r)} | {r.get('model')} | {_backend(r)} | {prec} | {r.get('threads') or '-'} | {r.get('batch')} |"
        if not _ok(r):
            L.append(head + f" {r.get('error', 'no timing')} |" + " |" * 14)
            continue
        lat, mc = r["latency"], r.get("macc") or {}
        gm = f" / {mc['graph'] / 1e6:.2f}" if mc.get("graph") else ""
        eff = r.get("efficiency") or {}
        pd = (r.get("parity") or {}).get("max_abs_age_diff_vs_pytorch")
        cells = [f"{(r.get('artifact') or {}).get('bytes', 0) / 1024:.1f}", (f"{mc['model'] / 1e6:.2f}" if mc.get("model") else "-") + gm,
                 f"{_lat(lat['p50'])} [{_lat(lat['p50_ci95'][0])}, {_lat(lat['p50_ci95'][1])}]", _lat(lat["mean"]), _lat(lat["min"]), _lat(lat["p90"]),
                 _lat(lat["p99"]), _lat(lat["stdev"]), str(lat.get("outliers", "-")), f"{r['first_inference']['time'] * 1e3:.2f}",
                 f"{r['load']['time'] * 1e3:.1f}", f"{r['throughput']['value']:,.0f}", _mem(r.get("memory") or {}),
                 f"{100 * eff['fraction_of_peak']:.1f}%" if eff.get("fraction_of_peak") else "-", f"{pd:.4f}" if isinstance(pd, float) else "-"]
        L.append(head + " " + " | ".join(cells) + " |")
    L += photo_to_age_section(doc)
    # graph reports
    g = [r for r in rows if r.get("graph") and r.get("threads") == min((x.get("threads") or 1) for x in rows) and r.get("batch") == 1]
    seen = set()
    if g:
        L += ["", "## Graph report per artifact", "",
              "Ops in the artifact; ops the conversion added (Transpose beyond those in the PyTorch graph; Quantize/Dequantize/FakeQuantize); "
              "where the ops ran (TFLite: XNNPACK delegate vs CPU kernels; OpenVINO: executed layers by runtime precision; ONNX Runtime: the optimised graph it executes).", "",
              "| artifact | nodes | ops | + Transpose | + Quantize | + Dequantize | where it ran |", "|---|---:|---|---:|---:|---:|---|"]
        for r in g:
            key = (r.get("machine"), r["artifact"]["file"])
            if key in seen:
                continue
            seen.add(key)
            gr = r["graph"]
            if "error" in gr:
                L.append(f"| {r['artifact']['file']} | - | {gr['error']} | | | | |")
                continue
            ad = gr.get("added_by_conversion", {})
            L.append(f"| {r['artifact']['file']} | {gr['nodes']} | {_ops(gr['ops'])} | {ad.get('transpose')} | {ad.get('quantize')} | {ad.get('dequantize')} | {_where(gr.get('runtime', {}))} |")
    # environment
    L += ["", "## Environment", ""]
    envs = [(s["machine"], s.get("environment") or {}) for s in doc["merged_from"]] if doc.get("merged_from") else [(machines[0] if machines else "-", doc.get("environment", {}))]
    for label, env in envs:
        cpu = env.get("cpu", {})
        L += [f"**{label}**: CPU {cpu.get('model')}, {cpu.get('logical_cores')} logical cores, threads used {env.get('threads_used')}, affinity {env.get('affinity')}, "
              f"governor {env.get('governor')}, {'virtualised, ' if env.get('virtualised') else ''}load average at the end {env.get('load_average')}; "
              f"{env.get('os')}; flags: {' '.join(cpu.get('flags', [])) or '-'}; versions: " + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items()) + ".", ""]
        for t, pk in (env.get("peak") or {}).items():
            L.append(f"- peak, {t} thread(s): " + "; ".join(f"{k} {v['macs_per_s'] / 1e9:.1f} GMAC/s ({v['kernel']}"
                                                             + (f", int8 ISA {v['isa']}" if v.get("isa") else "") + ")" for k, v in pk.items() if v and v.get("macs_per_s")))
        L.append("")
    if png_name:
        L += [f"![latency vs MAE and size]({png_name})", ""]
    return "\n".join(L) + "\n"


def photo_to_age_section(doc: dict) -> list[str]:
    """Photo to age: ms per image per stage (p50), total p50/mean, images/s, faces found, per input and artifact."""
    rows = [r for r in doc["results"] if r.get("pipeline") == "photo-to-age" and "latency" in r]
    if not rows:
        return []
    how = (doc.get("config") or {}).get("photo_to_age") or "see each source's config"
    L = ["", "## Photo to age (end to end)", "", f"{how}. Stage columns: p50 ms per image; total: p50 (mean) of the per-image sums; "
         "images/s = 1 / mean total; faces: images with a face found / images (with the annotated face: IoU >= 0.4 with its landmark box); "
         "thread CPU: p50 of the per-image CPU time of the timing thread (on a shared machine, the wall time less the waits for a core).", "",
         "| machine | model | input | detector | age network | threads | decode | detect | crop | age network | total p50 (mean) ms | thread CPU ms | images/s | faces (annotated) |",
         "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        st, lat = r["stages"], r["latency"]
        L.append(f"| {_machine(doc, r)} | {r['model']} | {r['input']} | {r.get('detector')} | {_name(r)} | {r.get('threads')} | "
                 + " | ".join(f"{st[k]['p50'] * 1e3:.2f}" for k in ("decode", "detect", "crop", "age"))
                 + f" | {lat['p50'] * 1e3:.2f} ({lat['mean'] * 1e3:.2f}) | {_ms_or_dash((r.get('thread_cpu_p50_s') or {}).get('total'))} | "
                 f"{r['throughput']['value']:.1f} | {r['faces_found']}/{r['images']} ({r.get('annotated_face_found', '-')}) |")
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
        return (f"{rt.get('delegate')}: {sum(rt['delegate_ops'].values())} ops in {rt.get('partitions')} partition(s); CPU kernels: "
                + (_ops(cpu) if cpu else "none"))
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
    rows = [r for r in doc["results"] if _ok(r) and r.get("batch") == 1]
    acc = (doc.get("accuracy") or {}).get("results", {})
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5.2))
    groups = sorted({(r["backend"], r["precision"]) for r in rows})  # a variant plots with its backend/precision
    markers = "osD^v<>pPX*h"
    for i, (b, p) in enumerate(groups):
        g = [r for r in rows if (r["backend"], r["precision"]) == (b, p) and (r.get("threads") or 1) == min((x.get("threads") or 1) for x in rows)]
        lat = [r["latency"]["p50"] * 1e3 for r in g]
        a2.scatter([r["artifact"]["bytes"] / 1024 for r in g], lat, marker=markers[i % len(markers)], label=f"{b} {p}")
        pts = [(acc[r["model"]]["mae"], r["latency"]["p50"] * 1e3) for r in g if isinstance(acc.get(r["model"], {}).get("mae"), (int, float))]
        if pts:
            a1.scatter(*zip(*pts), marker=markers[i % len(markers)], label=f"{b} {p}")
    a1.set(xlabel="MAE on UTKFace (years, common recipe)", ylabel="p50 latency (ms, batch 1)", yscale="log", title="latency vs MAE")
    if not any(isinstance(v.get("mae"), (int, float)) for v in acc.values()):
        a1.text(0.5, 0.5, "no MAE yet:\nrun tools/train_peers.py", ha="center", va="center", transform=a1.transAxes)
    a2.set(xlabel="artifact size (KiB)", ylabel="p50 latency (ms, batch 1)", xscale="log", yscale="log", title="latency vs size")
    for r in {r["model"]: r for r in rows if r["backend"] == "torch"}.values():
        a2.annotate(r["model"], (r["artifact"]["bytes"] / 1024, r["latency"]["p50"] * 1e3), fontsize=7, alpha=0.7)
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
