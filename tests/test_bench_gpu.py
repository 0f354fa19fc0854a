"""The GPU bench's code paths, exercised on the CPU (CI has no GPU): the folded/fused/compiled forms against eager on
real faces, time budgets, row-by-row JSON and the partial file, parity marking, the GPU named in reports, the run
without CUDA, and the GPU check script's dry run."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ages(model, x, double: bool = False):
    import torch

    with torch.inference_mode():
        if double:  # float64 on both sides: a wrong fold shows, rounding does not
            return model.double()(torch.from_numpy(x).double()).numpy()
        return model(torch.from_numpy(x)).float().numpy().astype(np.float64)


def _random_bn(model, seed: int = 0) -> None:
    """Untrained peers have identity BatchNorm statistics (folding them changes nothing): give them real ones."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def test_inference_forms_match_eager_on_real_faces():
    """Every model family: BN folded, ReLU fused, dropout gone, C3AE's conv5 in W1 (and the pools in the next convs):
    the same ages as the eager model on real faces (C3AE: also in float64, where a wrong fold cannot hide in rounding),
    and the eager model untouched."""
    import torch

    from c3ae_edge.bench.inputs import build_model, faces
    from c3ae_edge.models.fuse import ConvAct, inference_form

    for name in ("c3ae_plain", "c3ae_full", "ssr_net", "mobilenet_v2_050_6", "shufflenet_v2_050_1"):  # each family
        model, _ = build_model(name, 0)
        if not name.startswith("c3ae"):
            _random_bn(model)
        x = faces(model.cfg.crops, None, 0)[0][: 8 if name.startswith("c3ae") else 2]  # the peers are slow on the CPU
        before = {k: v.clone() for k, v in model.state_dict().items()}
        ref = _ages(model, x)
        for pool in (False, True) if name.startswith("c3ae") else (False,):
            form = inference_form(model, pool_into_conv=pool)
            kinds = {type(m) for m in form.modules()}
            assert torch.nn.BatchNorm2d not in kinds and torch.nn.Dropout not in kinds, name
            assert ConvAct in kinds and form.form_notes.bn_folded > 0 and form.form_notes.act_fused > 0, name
            assert np.abs(_ages(form, x) - ref).max() < 2e-3 * max(1.0, np.abs(ref).max()), (name, pool)
            if name.startswith("c3ae"):  # shipped weights on real faces: the ages differ face to face
                ref64 = _ages(copy.deepcopy(model), x, double=True)
                got = _ages(inference_form(copy.deepcopy(model).double(), pool_into_conv=pool), x, double=True)
                assert np.ptp(ref64) > 10 and np.abs(got - ref64).max() < 1e-9, (name, pool)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), name


def test_generic_fold_is_exact_in_float64():
    """Conv + BN + ReLU6, a grouped conv + BN, Dropout, Conv + ReLU: folded and fused, equal to 1e-12 in float64."""
    import torch
    import torch.nn as nn

    from c3ae_edge.models.fuse import ConvAct, inference_form

    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU6(), nn.Conv2d(8, 8, 3, 2, 1, groups=8),
        nn.BatchNorm2d(8), nn.Dropout(0.5), nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Tanh(),
    )  # fmt: skip
    _random_bn(seq)
    seq = seq.double().eval()
    form = inference_form(seq)
    assert [type(m) for m in form] == [ConvAct, ConvAct, ConvAct, nn.Tanh]
    assert [m.act for m in form[:3]] == ["relu6", None, "relu"]
    assert vars(form.form_notes) == vars(type(form.form_notes)(2, 2, 1, False, 0))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 3
    with torch.inference_mode():
        assert torch.allclose(form(x), seq(x), rtol=0, atol=1e-12)


def test_fold_pools_makes_fewer_layers_and_keeps_ages():
    """c3ae_plain's inference form with pools folded runs 4 convolutions + the head, no pool and no conv5."""
    import torch

    from c3ae_edge.bench.inputs import build_model, faces
    from c3ae_edge.models.fuse import ConvAct, inference_form

    model, _ = build_model("c3ae_plain", 0)
    form = inference_form(model, pool_into_conv=True)
    trunk = list(form.trunk)
    assert [type(m) for m in trunk] == [ConvAct] * 4
    assert [tuple(m.weight.shape[-2:]) for m in trunk] == [(3, 3), (6, 6), (6, 6), (6, 6)]
    assert [m.stride for m in trunk] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert not any(isinstance(m, (torch.nn.AvgPool2d, torch.nn.BatchNorm2d)) for m in form.modules())
    x = faces(1, None, 0)[0]
    assert np.abs(_ages(form, x) - _ages(model, x)).max() < 2e-3


@pytest.mark.slow  # torch.compile (inductor, C++ on the CPU): about a minute on two cores
def test_compiled_form_matches_eager_on_cpu():
    import torch

    from c3ae_edge.bench.gpu_forms import parse_variant
    from c3ae_edge.bench.gpu_prepare import _build
    from c3ae_edge.bench.inputs import build_model, faces

    model, _ = build_model("c3ae_plain", 0)
    x = faces(1, None, 0)[0][:4]
    compiled, info = _build(model, parse_variant("compiled:fp32"), torch.device("cpu"), torch.from_numpy(x))
    assert info["compile"]["backend"] == "inductor" and info["folds"]["conv5_into_w1"]
    with torch.inference_mode():
        got = compiled(torch.from_numpy(x)).numpy()
    assert np.abs(got - _ages(model, x)).max() < 2e-3


def test_row_clock_stops_by_runs_or_budget_and_counts():
    from c3ae_edge.bench.budget import Budget, Deadline, RowClock, warm_up

    def slow():
        time.sleep(0.002)

    b = Budget(runs=1000, seconds=0.05, min_runs=5, warmup=1000)
    c = RowClock(b)
    c.block(slow, b.runs)
    rec = b.record(c)
    assert 5 <= rec["runs"] < 1000 and rec["stopped_by"] == "budget" and rec["timed_s"] >= 0.05
    few = Budget(runs=7, seconds=10.0, min_runs=5)
    c = RowClock(few)
    c.block(slow, 100)
    assert few.record(c)["runs"] == 7 and few.record(c)["stopped_by"] == "runs" and c.done
    # a row that is slower than its budget still times its minimum, spread over the blocks it is given
    b = Budget(runs=1000, seconds=0.001, min_runs=6)
    c = RowClock(b)
    for k in range(3):
        c.block(slow, 50, 3 - k)
    assert len(c.ns) == 6 and c.done
    t = time.perf_counter()
    warm_up(slow, Budget(seconds=0.04, warmup=1000))  # warm-up stops at a quarter of the row's budget
    assert time.perf_counter() - t < 0.5
    d = Deadline.after(10)
    assert not d.passed and d.row_seconds(Budget(seconds=2), 1000) == 0.02  # 10 s x 0.9 / 1000 rows, floored
    assert d.row_seconds(Budget(seconds=2), 2) == 2 and 2 < d.row_seconds(Budget(seconds=5), 2) <= 4.5
    d.note(1.5, 0.5)  # a row spent 1 s loading, capturing and checking: the next rows' shares leave room for that
    assert 3 < d.row_seconds(Budget(seconds=5), 2) <= 3.6 and d.overhead_s == 1.0
    assert Deadline.after(None).row_seconds(Budget(seconds=2), 1000) == 2


def test_variants_parse_and_refuse_bad_names(cli):
    from c3ae_edge.bench.gpu_forms import SETS, parse_variants

    cuda = parse_variants(["default"], "cuda")
    assert [v.spec for v in cuda][:3] == ["eager:fp32", "eager:fp16", "eager+graph:fp32"]
    assert len(cuda) == len(SETS["default"]) and all(v.graph for v in cuda[2:])
    cpu = parse_variants(["default", "fast-latency"], "cpu")
    assert not any(v.graph for v in cpu) and "ort-cpu:fp32" in [v.spec for v in cpu]
    for args, word in (
        (["--variants", "nope:fp32"], "FORM[+graph][+cl]:PRECISION"),
        (["--variants", "graph:fp32"], "needs --device cuda"),
        (["--variants", "ort-cuda:fp16"], "fp32 only"),
        (["--variants", "fused:fp32", "--budget", "-1"], "--budget"),
    ):
        r = cli("bench", "run", "--models", "c3ae_plain", *args)
        assert r.code == 2 and word in r.err and r.err.count("\n") == 1, (args, r.err)


def test_cuda_absent_says_nothing_measured_and_writes_nothing(tmp_path, cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this test covers the machine without one")
    good = tmp_path / "c.json"
    good.write_text('{"kept": true}')
    for args in (["run"], []):  # the old spelling too
        r = cli("bench", *args, "--device", "cuda", "--models", "c3ae_plain", "--json", good)
        assert r.code == 1, r.err
        assert r.lines == [r.lines[0]] and "nothing measured: CUDA not available" in r.err, r.err
        assert good.read_text() == '{"kept": true}' and sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_forms_run_on_cpu_rows_parity_and_report(tmp_path, cli, monkeypatch):
    """A PyTorch-forms run on the CPU: one row per variant and batch, each with its runs, budget and parity; a row
    outside its tolerance (bf16 held to 1e-6 here) is marked in the log, the rows table and under Table 3, and never
    taken as a best figure."""
    from c3ae_edge.bench import gpu_forms

    monkeypatch.setitem(gpu_forms.TOLERANCE_Y, "bf16", 1e-6)
    out = tmp_path / "f.json"
    r = cli(
        "bench", "run", "--models", "c3ae_plain", "--variants", "eager:fp32,fused:fp32,fused:bf16",
        "--batch", "1,3", "--runs", "40", "--budget", "0.2", "--min-runs", "5", "--json", out,
        "--markdown", tmp_path / "f.md",
    )  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads(out.read_text())
    assert "partial" not in doc and doc["config"]["variants"] == ["eager:fp32", "fused:fp32", "fused:bf16"]
    rows = {(x["form"]["spec"], x["batch"]): x for x in doc["results"]}
    assert set(rows) == {(s, b) for s in ("eager:fp32", "fused:fp32", "fused:bf16") for b in (1, 3)}
    for (spec, _), x in rows.items():
        t, p = x["timing"], x["parity"]
        assert x["latency"]["count"] == t["runs"] and 5 <= t["runs"] <= 40 and t["budget_s"] == 0.2
        assert p["faces"] == 32 and p["tolerance"] == (1e-6 if spec == "fused:bf16" else 0.01), p
        within = p["max_abs_age_diff_vs_pytorch"] <= p["tolerance"]  # the flag follows the measured difference
        assert p["within_tolerance"] == within == (spec != "fused:bf16"), (spec, p)
        assert x["threads"] == 1 and x["device"] == "cpu" and x["backend"].startswith("torch-cpu ")
    fp32_max = max(x["parity"]["max_abs_age_diff_vs_pytorch"] for (s, _), x in rows.items() if s != "fused:bf16")
    assert all(rows[("fused:bf16", b)]["parity"]["mean_abs_age_diff_vs_pytorch"] > fp32_max for b in (1, 3)), rows
    assert rows[("fused:fp32", 1)]["form"]["folds"]["conv5_into_w1"] is True
    assert r.err.count("PARITY OUTSIDE") == 2, r.err
    md = (tmp_path / "f.md").read_text()
    assert md.count("(outside)**") == 2 and "Rows whose ages fell outside their tolerance" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| c3ae_plain |")).split(" | ")
    fp32 = min((x for x in doc["results"] if x["batch"] == 1 and "bf16" not in x["form"]["spec"]), key=_p50)
    assert line[8] == f"{fp32['latency']['p50'] * 1e3:.2f} ms" and "bf16" not in line[9], line


def _p50(row: dict) -> float:
    return row["latency"]["p50"]


def _bench_proc(out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "c3ae_edge.cli", "bench", "run", "--models", "c3ae_plain", "--json", str(out), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_rows_are_written_as_measured_and_a_killed_run_leaves_a_partial_file(tmp_path):
    """SIGTERM mid-run (a timeout, a cancelled CI job): exit 130, the JSON holds the rows so far and says why it
    stopped, no markdown is written."""
    out = tmp_path / "p.json"
    p = _bench_proc(
        out, "--variants", "eager:fp32,fused:fp32", "--batch", "1,2,3,4,5,6,7,8", "--runs", "100000", "--budget", "1",
        "--markdown", str(tmp_path / "p.md"),
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out.is_file() and json.loads(out.read_text())["results"]):
            time.sleep(0.2)
        mid = json.loads(out.read_text())
        assert mid["partial"] is True and mid["stopped"].startswith("running") and mid["results"]
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130 and "interrupted" in err, err[-2000:]
    doc = json.loads(out.read_text())
    assert doc["partial"] is True and doc["stopped"] == "terminated (SIGTERM)"
    assert 1 <= len(doc["results"]) < 16 and all(r["latency"]["count"] >= 1 for r in doc["results"])
    assert not (tmp_path / "p.md").exists()


def test_time_limit_cuts_the_run_and_the_report_says_partial(tmp_path, cli):
    r = cli(
        "bench", "run", "--models", "c3ae_plain", "--variants", "eager:fp32,fused:fp32", "--batch", "1,2,3,4,5,6",
        "--budget", "0.3", "--time-limit", "1", "--json", tmp_path / "t.json", "--markdown", tmp_path / "t.md",
    )  # fmt: skip
    assert r.code == 0 and "partial run: time limit 1" in r.err, r.err
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["partial"] is True and doc["stopped"].startswith("time limit 1.0 s reached:")
    assert 1 <= len(doc["results"]) < 12
    assert "**Partial run: time limit" in (tmp_path / "t.md").read_text()


def test_gpu_rows_are_named_by_the_gpu_and_fill_table3_gpu_columns(tmp_path, cli):
    """The committed H200 run: the machine is the GPU (driver, CUDA, cuDNN) on its host CPU; merged with the CPU
    results, Table 3's GPU columns hold its best rows, computed from the JSON."""
    from c3ae_edge.bench.report import doc_label, load_doc

    h200 = load_doc(ROOT / "bench" / "results" / "h200_gpu.json")
    label = doc_label(h200)
    assert label.startswith("NVIDIA H200 (driver 580.159.04, CUDA 13.0, cuDNN 9.19.0) on Intel(R) Xeon(R)"), label
    assert h200["provenance"]["date_utc"].startswith("2026-12-04") and "58222b2" in h200["provenance"]["note"]
    x86 = ROOT / "bench" / "results" / "x86.json"
    r = cli("bench", "merge", x86, ROOT / "bench" / "results" / "h200_gpu.json", "--markdown", tmp_path / "m.md")
    assert r.code == 0, r.err
    md = (tmp_path / "m.md").read_text()
    for model in ("c3ae_plain", "c3ae_full"):
        rows = [x for x in h200["results"] if x["model"] == model and x["batch"] == 1 and "latency" in x]
        b1 = min(rows, key=_p50)
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {model} |")).split(" | ")
        assert line[6].startswith("Intel(R) Xeon(R)"), line  # a CPU machine's line ...
        assert line[12].startswith(f"{b1['latency']['p50'] * 1e6:.1f} us (cuda-graph"), line  # ... with the GPU beside
        assert "NVIDIA H200" in line[12] and "ages not checked" in line[12], line
    assert (ROOT / "bench" / "results" / "merged.md").read_text().count("NVIDIA H200") >= 3
    assert "Latency = seconds per forward" not in md and "5-epoch common recipe" in md


def test_plot_ticks_are_plain_numbers(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from c3ae_edge.bench.report import _plain_ticks

    for lo, hi in ((0.21, 0.62), (0.05, 40.0), (30, 12000)):
        fig, ax = plt.subplots()
        ax.plot([1, 2], [lo, hi])
        ax.set(yscale="log")
        _plain_ticks(ax)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels(which="both") if t.get_text()]
        plt.close(fig)
        assert len(labels) >= 2 and all("^" not in s and "times" not in s and "e" not in s for s in labels), labels


@pytest.mark.slow  # three bench processes and a merge: about 40 s on two cores
def test_gpu_check_script_dry_run_on_cpu(tmp_path):
    """bench/scripts/gpu_check.sh: the same steps as on a GPU, on the CPU, into one folder."""
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(
        ["bash", str(ROOT / "bench" / "scripts" / "gpu_check.sh"), str(out), "--device", "cpu", "--tiny"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert [s["step"] for s in steps] == ["default", "fast_latency", "fast_throughput", "merge"]
    for name in ("default", "fast_latency", "fast_throughput"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert "partial" not in doc and doc["results"] and all(x["parity"]["within_tolerance"] for x in doc["results"])
        assert (out / f"{name}.md").is_file() and (out / f"{name}.log").is_file()
    merged = json.loads((out / "merged.json").read_text())
    assert len(merged["merged_from"]) == 4  # the three steps and the committed x86 run
    forms = {x["form"]["spec"] for x in merged["results"] if x.get("form")}
    assert {"eager:fp32", "fused:fp32", "fused-pool:fp32", "ort-cpu:fp32", "fused+cl:bf16"} <= forms
    summary = (out / "summary.md").read_text()
    assert "CPU dry run" in summary and "| c3ae_plain batch 1 p50 | <= 40 us |" in summary
