"""The PyTorch-forms run (``bench run --device cuda``, or ``--variants`` on the CPU): every model x variant x batch,
one row at a time, each written as it is measured, within per-row time budgets and a whole-run time limit."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict

from c3ae_edge.bench.budget import Budget, Deadline
from c3ae_edge.bench.config import BenchConfig
from c3ae_edge.bench.cuda import NothingMeasured, bench_row, row_line
from c3ae_edge.bench.cuda_facts import available, gpu_info
from c3ae_edge.bench.gpu_forms import applies, missing, parse_variants
from c3ae_edge.bench.inputs import build_model, faces, input_note
from c3ae_edge.bench.progress import Progress
from c3ae_edge.bench.sink import RowSink
from c3ae_edge.board import onboard


def device_of(cfg: BenchConfig):
    """The torch device; NothingMeasured (one line, nothing written) where CUDA was asked for and is absent."""
    import torch

    if cfg.device == "cuda":
        ok, why = available()
        if not ok:
            raise NothingMeasured(f"--device cuda: nothing measured: {why}; no JSON or PNG written")
        return torch.device("cuda")
    torch.set_num_threads(cfg.threads[0])
    return torch.device("cpu")


def plan(models: dict, cfg: BenchConfig, log) -> tuple[list[tuple], list[dict]]:
    """(model, variant, batch) units to run, and the variants skipped with why (an absent optional runtime, a
    layout that does not apply)."""
    units, skipped = [], []
    variants = parse_variants(cfg.variants, cfg.device)
    for v in variants:
        why = missing(v)
        if why:
            skipped.append({"variant": v.spec, "why": why})
            log(f"skip {v.spec}: {why}")
    absent = {s["variant"] for s in skipped}
    for name, (model, _) in models.items():
        for v in variants:
            if v.spec in absent:
                continue
            for b in cfg.batches:
                why = applies(v, model, b)
                if why:
                    skipped.append({"model": name, "variant": v.spec, "batch": b, "why": why})
                else:
                    units.append((name, v, b))
    return units, skipped


def head(cfg: BenchConfig, device, skipped: list[dict]) -> dict:
    from c3ae_edge.bench import paper

    extra = {"gpu": gpu_info()} if device.type == "cuda" else {}
    return {
        "schema": onboard.SCHEMA,
        "config": {
            **asdict(cfg),
            "input": input_note(cfg.seed),
            "timing": f"per row: up to {cfg.runs} timed forwards, or {cfg.budget_s} s of them with at least "
            f"{cfg.min_runs} (the count is recorded), after the first call and up to {cfg.warmup} warm-up calls; "
            f"run time limit {cfg.time_limit_s} s (rows shrink to fit it); each call synchronises the device",
            "parity": "every row: ages on the 32 timing faces vs PyTorch eager fp32 on the CPU; tolerance 0.01 y "
            "(fp32), 0.5 y (fp16, bf16)",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "environment": onboard.environment(cfg.threads[0], extra),
        "paper": paper.document(),
        "skipped_variants": skipped,
    }


def run(cfg: BenchConfig, quiet: bool = False, out=None) -> dict:
    """The whole run -> its document (``partial`` with ``stopped`` when the time limit cut it)."""
    cfg.resolve().check()
    t0 = time.time()
    device = device_of(cfg)
    models = {name: build_model(name, cfg.seed) for name in cfg.models}
    with Progress(0, quiet) as prog:
        units, skipped = plan(models, cfg, prog.log)
        if not units:
            raise NothingMeasured("nothing measured: no variant applies or can run here (" + _whys(skipped) + ")")
        prog.grow(len(units))
        budget = Budget(cfg.runs, cfg.budget_s, cfg.min_runs, cfg.warmup)
        deadline = Deadline.after(cfg.time_limit_s)
        with tempfile.TemporaryDirectory(prefix="c3ae-bench-") as tmp, RowSink(out, head(cfg, device, skipped)) as sink:
            stopped = _rows(models, units, cfg, device, tmp, budget, deadline, sink, prog)
            sink.head["config"]["wall_time_s"] = round(time.time() - t0, 1)
            return sink.stop(stopped) if stopped else sink.document(partial=False)


def _rows(models, units, cfg, device, tmp, budget, deadline, sink, prog) -> str | None:
    """Every unit, model by model; -> why the run stopped early, or None."""
    import torch

    from c3ae_edge.bench.gpu_prepare import Forms

    done = 0
    for name, (model, wnote) in models.items():
        mine = [u for u in units if u[0] == name]
        if not mine:
            continue
        prog.step(f"{name}: faces, reference ages")
        x_all, common, ref = _model_inputs(name, model, wnote, cfg)
        common.update({"gpu": {"name": sink.head["environment"]["gpu"]["name"]}} if device.type == "cuda" else {})
        common.update({"threads": cfg.threads[0]} if device.type == "cpu" else {})
        forms = Forms(model, device, tmp)
        for _, v, b in mine:
            if deadline.passed and done:  # the first row always runs: a cut run still measured something
                return f"time limit {cfg.time_limit_s} s reached: {done} of {len(units)} rows measured"
            prog.step(f"{name}: {v.spec} b{b}")
            t = time.monotonic()
            r = bench_row(forms, v, b, x_all, ref, budget, deadline.row_seconds(budget, len(units) - done))
            deadline.note(time.monotonic() - t, (r.get("timing") or {}).get("timed_s", 0.0))
            done += 1
            sink.add([{**common, **r}])
            prog.row(row_line(name, r))
            if device.type == "cuda":
                torch.cuda.empty_cache()
        del forms
    return None


_FACES: dict = {}


def _model_inputs(name: str, model, wnote: str, cfg: BenchConfig):
    """(the 32 timing faces, the row fields every row of the model shares, the reference ages: CPU fp32 eager)."""
    import torch

    from c3ae_edge.bench import paper
    from c3ae_edge.models.profile import profile_model

    key = (model.cfg.crops, cfg.data, cfg.seed)
    if key not in _FACES:
        _FACES[key] = faces(*key)[0]
    x_all = _FACES[key]
    with torch.inference_mode():
        ref = model(torch.from_numpy(x_all)).float().numpy().reshape(-1).astype("float64")
    prof = profile_model(model)
    common = {
        "model": name,
        "weights": wnote,
        "params": prof.params,
        "macc": {"model": prof.macc},
        "paper": paper.paper_ref(name),
    }
    return x_all, common, ref


def _whys(skipped: list[dict]) -> str:
    return "; ".join(dict.fromkeys(f"{s['variant']}: {s['why']}" for s in skipped)) or "no variants"
