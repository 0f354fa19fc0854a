"""``c3ae-edge bench``: a real (short) run on real faces and real runtimes, its JSON/markdown/PNG, the paper's data,
errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FGNET

from c3ae_edge.bench.report import table_file
from c3ae_edge.board.onboard import SCHEMA
from c3ae_edge.board.stats import latency_stats
from c3ae_edge.data.detect import resolve_detector

ROOT = Path(__file__).resolve().parents[1]


GOOD = ROOT / "bench" / "results" / "x86.json"
BOARD = ROOT / "bench" / "results" / "onboard_runner_x86_clean_venv.json"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The one bench run of this file, in its own process (a bench sets torch's process-wide thread pools)."""
    return subprocess.run(
        [sys.executable, "-m", "c3ae_edge.cli", "bench", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[dict, Path]:
    """torch + ONNX (fp32 and int8) for c3ae_plain, 30 runs: the whole pipeline at small cost."""
    out = tmp_path_factory.mktemp("bench")
    e2e = ["--e2e", "4" if (FGNET / "labels.csv").is_file() else "0"]  # photo-to-age rows need FG-NET's photos
    r = run(
        "run",
        "--models",
        "c3ae_plain",
        "--backends",
        "torch,onnx",
        "--precision",
        "fp32,int8",
        "--runs",
        "30",
        "--warmup",
        "3",
        *e2e,
        "--json",
        str(out / "b.json"),
        "--markdown",
        str(out / "b.md"),
        "-q",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "deprecated" not in r.stderr, r.stderr[-3000:]
    return json.loads((out / "b.json").read_text()), out


def test_latency_stats_describe_the_distribution():
    rng = np.random.default_rng(0)
    ns = rng.normal(100_000, 2_000, 1000).astype(np.int64)
    ns[:5] = 5_000_000  # five pre-emptions
    s = latency_stats(ns)
    assert s["count"] == 1000 and s["unit"] == "s"
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    lo, hi = s["p50_ci95"]
    assert lo <= s["p50"] <= hi and hi - lo < 1e-5
    assert s["outliers"] == 5
    assert abs(s["mean_without_outliers"] - 100e-6) < 1e-6 < s["mean"] - 100e-6


def test_json_schema_and_rows(short_run):
    doc, _ = short_run
    assert doc["schema"] == SCHEMA
    rows = {(r["backend"], r["precision"]): r for r in doc["results"] if not r.get("pipeline")}
    assert set(rows) == {("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    for r in rows.values():
        lat = r["latency"]
        assert lat["count"] == 30 and {"mean", "stdev", "p50", "p90", "p95", "p99", "p50_ci95"} <= set(lat)
        assert r["throughput"]["value"] == pytest.approx(1 / lat["p50"])
        assert r["memory"]["peak_rss"] > 0 and r["load"]["time"] > 0 and r["first_inference"]["time"] > 0
        assert r["threads"] == 1 and r["batch"] == 1 and r["params"] == 36_377
        assert 0 < r["efficiency"]["fraction_of_peak"]
    # MACC counted from the ONNX graph agrees with the module's count
    assert rows[("onnx", "fp32")]["macc"]["graph"] == rows[("onnx", "fp32")]["macc"]["model"]
    g = rows[("onnx", "int8")]["graph"]
    assert g["added_by_conversion"]["quantize"] > 0 and g["added_by_conversion"]["dequantize"] > 0
    assert "QLinearConv" in g["runtime"]["optimised_ops"]
    assert rows[("onnx", "fp32")]["parity"]["max_abs_age_diff_vs_pytorch"] < 0.01
    assert rows[("onnx", "int8")]["artifact"]["bytes"] < rows[("onnx", "fp32")]["artifact"]["bytes"]
    env = doc["environment"]
    assert (
        env["cpu"]["logical_cores"] >= 1
        and env["versions"]["onnxruntime"]
        and env["peak"]["1"]["fp32"]["macs_per_s"] > 0
    )
    assert len(doc["config"]["timing_faces"]) == 32 and all(f.endswith(".jpg") for f in doc["config"]["timing_faces"])


def test_photo_to_age_rows(short_run, fgnet_dir):
    """End-to-end rows: every timed artifact x (FG-NET photos, 640x480, 1280x720), per-stage latency blocks,
    images/s."""
    doc, out = short_run
    e2e = [r for r in doc["results"] if r.get("pipeline") == "photo-to-age"]
    assert {(r["backend"], r["precision"], r["input"]) for r in e2e} == {
        (b, p, i)
        for b, p in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"))
        for i in ("FG-NET photos", "640x480 frames", "1280x720 frames")
    }
    for r in e2e:
        assert (
            r["detector"] == resolve_detector("auto")
            and r["images"] == 4
            and r["model"] == "c3ae_plain"
            and r["threads"] == 1
        )
        assert r["frame"] in (None, [640, 480], [1280, 720])
        assert r["runs_in"].startswith("c3ae_edge.pipeline.AgePipeline")  # predict's own pipeline object
        assert r["faces_found"] >= 3 and r["annotated_face_found"] >= 3  # real faces, found and in the right place
        st = r["stages"]
        assert set(st) == {"decode", "detect", "crop", "age"} and all(
            s["count"] == 4 and s["p50"] > 0 for s in st.values()
        )
        assert r["latency"]["count"] == 4 and r["thread_cpu_p50_s"]["total"] > 0
        assert r["latency"]["mean"] == pytest.approx(
            sum(s["mean"] for s in st.values())
        )  # the total is the sum of its stages
        assert r["throughput"] == {"unit": "images/s", "value": pytest.approx(1 / r["latency"]["mean"])}
    # frames of one photo share decode/detect/crop timings across artifacts; their age networks differ
    by_input = {}
    for r in e2e:
        by_input.setdefault(r["input"], []).append(r)
    assert all(len({r["stages"]["detect"]["p50"] for r in rs}) == 1 for rs in by_input.values())
    md = (out / "b.md").read_text()
    section = md.split("## Photo to age (end to end)")[1].split("\n## ")[0]
    for r in e2e:  # each row's own computed total and faces, in its own line of the section
        cells = f"| {r['input']} | {resolve_detector('auto')} | {r['backend']} {r['precision']} | 1 | "
        line = next(ln for ln in section.splitlines() if cells in ln)
        assert f"| {r['latency']['p50'] * 1e3:.2f} ({r['latency']['mean'] * 1e3:.2f}) |" in line, line
        assert f"| {r['faces_found']}/4 ({r['annotated_face_found']}) |" in line, line
    assert "4 FG-NET photos" in doc["config"]["photo_to_age"]


def test_markdown_puts_paper_beside_ours(short_run):
    from c3ae_edge.models import get_model_cfg

    doc, out = short_run
    md = (out / "b.md").read_text()
    rows = {(r["backend"], r["precision"]): r for r in doc["results"] if not r.get("pipeline")}
    eager, best = rows[("torch", "fp32")], min(rows.values(), key=lambda r: r["latency"]["p50"])
    # Table 3: the paper's CPU figure beside our eager and best p50, and the MAE cell from the accuracy table
    paper_ms = get_model_cfg("c3ae_plain").paper.cpu_s * 1e3
    t3 = md.split("## Table 3, reproduced")[1].split("\n## ")[0]
    line = next(ln for ln in t3.splitlines() if ln.startswith("| c3ae_plain |")).split(" | ")
    assert line[5] == f"{paper_ms:.2f} ms" and line[2] == "36,377", line
    assert line[7] == f"{eager['latency']['p50'] * 1e3:.2f} ms", line
    assert line[8] == f"{best['latency']['p50'] * 1e3:.2f} ms", line
    assert line[9] == f"{best['backend']} {best['precision']}", line
    mae = ((doc.get("accuracy") or {}).get("results") or {}).get("c3ae_plain", {}).get("mae")
    assert line[-2] == (f"{mae:.2f}" if isinstance(mae, (int, float)) else "not yet trained"), line
    card = json.loads((ROOT / "c3ae_edge" / "weights" / "c3ae_plain.card.json").read_text())
    assert line[-1] == f"{card['utkface_test']['mae']:.2f} |", line  # the shipped weights' MAE, read from the card
    # the bar: eager / best artifact, as computed from the JSON rows
    art = min((r for r in rows.values() if r["backend"] != "torch"), key=lambda r: r["latency"]["p50"])
    ratio = eager["latency"]["p50"] / art["latency"]["p50"]
    bar = md.split("## Performance bar")[1].split("\n## ")[0]
    assert any(
        "best backend vs PyTorch eager" in ln and f"| {ratio:.2f}x | {'yes' if ratio >= 5 else '**no**'} |" in ln
        for ln in bar.splitlines()
    ), bar
    graph = md.split("## Graph report per artifact")[1].split("\n## ")[0]
    q8 = rows[("onnx", "int8")]
    assert f"| {q8['artifact']['file']} | {q8['graph']['nodes']} |" in graph, graph
    assert f"CPU {doc['environment']['cpu']['model']}, " in md.split("## Environment")[1]
    png = out / "b.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_combines_documents(short_run, tmp_path, cli):
    from c3ae_edge.bench.report import doc_label

    doc, out = short_run
    gpu_like = dict(doc, config={**doc["config"], "device": "cuda"})  # a second document from "another" run
    (tmp_path / "g.json").write_text(json.dumps(gpu_like))
    r = cli(
        "bench",
        "merge",
        out / "b.json",
        tmp_path / "g.json",
        "--json",
        tmp_path / "m.json",
        "--markdown",
        tmp_path / "m.md",
    )
    assert r.code == 0 and "deprecated" not in r.err, r.err
    m = json.loads((tmp_path / "m.json").read_text())
    assert len(m["merged_from"]) == 2 and len(m["results"]) == 2 * len(doc["results"])
    labels = [doc_label(doc), doc_label(gpu_like)]
    n = len(doc["results"])
    assert labels[1] == labels[0] + " [cuda]"
    assert [r["machine"] for r in m["results"]] == [labels[0]] * n + [labels[1]] * n
    md = (tmp_path / "m.md").read_text()
    assert f"- `{out / 'b.json'}`: {labels[0]}, command `{doc['config']['command']}`" in md, md
    assert f"- `{tmp_path / 'g.json'}`: {labels[1]}," in md, md


def test_rows_are_typed_and_round_trip_to_the_same_bytes(short_run):
    """Every row the harness wrote, and every committed bench document's, reads as a BenchRow (photo-to-age rows as
    E2ERow) and writes back with the same keys in the same order."""
    from c3ae_edge.bench.report import load_doc
    from c3ae_edge.bench.rows import BenchRow, E2ERow

    doc, _ = short_run
    docs = [doc] + [
        load_doc(f)
        for f in sorted((ROOT / "bench" / "results").glob("*.json"))
        if json.loads(f.read_text()).get("schema") == SCHEMA
    ]
    assert len(docs) >= 4
    for d in docs:
        for r in d["results"]:
            row = BenchRow.from_json(r)
            assert isinstance(row, E2ERow) == (r.get("pipeline") == "photo-to-age")
            assert json.dumps(row.to_json()) == json.dumps(r)
    plain = BenchRow.from_json(next(r for r in doc["results"] if r["backend"] == "onnx" and r["precision"] == "int8"))
    assert plain.timed and plain.p50 == plain.latency["p50"] > 0
    assert plain.label == "onnx int8" and plain.params == 36_377


def test_onboard_rows_parse_as_bench_rows():
    """The standalone runner builds its rows itself (numpy only, no package import): they read as BenchRow."""
    from c3ae_edge.bench.rows import BenchRow
    from c3ae_edge.board import onboard

    lat = latency_stats(np.arange(100_000, 120_000, 100))
    r = onboard.row(
        "c3ae_full",
        "tflite",
        "int8",
        1,
        1,
        lat,
        0.002,
        0.01,
        runtime="ai-edge-litert",
        runtime_version="1.2",
        runtime_id="ai-edge-litert/xnnpack",
        delegate={"name": "xnnpack"},
        artifact={"file": "a.tflite", "bytes": 1},
        memory={"unit": "MB", "peak_rss": 50.0},
        source="onboard runner",
    )
    row = BenchRow.from_json(json.loads(json.dumps(r)))
    assert row.runtime_id == "ai-edge-litert/xnnpack" and row.throughput["value"] == pytest.approx(1 / lat["p50"])
    assert row.label == "tflite [ai-edge-litert/xnnpack 1.2] int8"
    assert row.to_json() == r and list(row.to_json()) == list(r)
    for bad in ({**r, "latency": {"p50": "fast"}}, {k: v for k, v in r.items() if k != "model"}, "row"):
        with pytest.raises(ValueError):
            BenchRow.from_json(bad)


def test_paper_table_file_matches_registry():
    from c3ae_edge.bench.paper import document

    assert json.loads(table_file("paper_table3.json").read_text()) == json.loads(json.dumps(document()))


def test_bad_input_is_one_line(tmp_path, cli):
    """Old and new spellings alike: exit 2 and one error line (no deprecation line on a refused command)."""
    (tmp_path / "x.json").write_text('{"not": "a bench"}')
    x, gone = str(tmp_path / "x.json"), str(tmp_path / "missing.json")
    for args in (
        ["--models", "nope"],
        ["--backends", "no-such-backend"],
        ["--precision", "int4"],
        ["--runs", "0"],
        ["--threads", "two"],
        ["--merge", x],
        ["--merge", gone],
        ["--merge"],
        ["run", "--models", "nope"],
        ["run", "--backends", "no-such-backend"],
        ["run", "--runs", "0"],
        ["run", "--batch", "0"],
        ["merge", x],
        ["merge", gone],
        ["merge"],
        ["render", gone],
        ["render"],
        ["remote", "pi@board"],
        ["write-runner"],
        ["merge", "--models", "c3ae_plain", x],
        ["render", "--merge", x],
        ["run", "--from-json", x],
    ):
        r = cli("bench", *args)
        assert r.code == 2, (args, r.err)
        assert r.err.count("\n") == 1 and r.err.startswith("c3ae-edge: error:"), (args, r.err)


def _deprecation(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if "deprecated" in ln]


@pytest.mark.slow  # four reports with PNGs, old and new spelling
def test_old_spellings_do_what_the_new_ones_do_and_say_so(tmp_path, cli):
    """Each old spelling writes the same files as its sub-command and adds one stderr line naming the new spelling."""
    for old, new, word in (
        (["--merge", GOOD, BOARD], ["merge", GOOD, BOARD], "merge FILES"),
        (["--from-json", GOOD], ["render", GOOD], "render FILE"),
    ):
        outs = []
        for i, args in enumerate((old, new)):
            d = tmp_path / f"{word.split()[0]}{i}"
            r = cli("bench", *args, "--json", d / "r.json", "--markdown", d / "r.md", "--plot", d / "p.png")
            assert r.code == 0, r.err
            assert len(_deprecation(r.err)) == (1 - i), r.err
            outs.append([(d / f).read_bytes() for f in ("r.json", "r.md", "p.png")])
        assert outs[0] == outs[1], word
        assert f"use `c3ae-edge bench {word}" in cli("bench", *old, "--json", tmp_path / "again.json").err
    r_old, r_new = cli("bench", "--write-runner", tmp_path / "w0"), cli("bench", "write-runner", tmp_path / "w1")
    assert r_old.code == 0 and r_new.code == 0 and not _deprecation(r_new.err), (r_old.err, r_new.err)
    assert _deprecation(r_old.err) == [ln for ln in r_old.err.splitlines() if "bench write-runner DIR" in ln], r_old.err
    for name in ("onboard.py", "stats.py", "facefind.py"):
        shipped = (ROOT / "c3ae_edge" / "board" / name).read_bytes()
        assert (tmp_path / "w0" / name).read_bytes() == (tmp_path / "w1" / name).read_bytes() == shipped


def test_sub_commands_take_only_their_own_options(cli):
    r = cli("bench", "--help")
    assert r.code == 0 and all(c in r.out for c in ("run", "merge", "render", "remote", "write-runner")), r.out
    assert "legacy" not in r.out and "--models" not in r.out, r.out
    for sub, has, lacks in (
        ("run", "--models", "--merge"),
        ("merge", "--markdown", "--runs"),
        ("render", "--plot", "--models"),
        ("remote", "--bundle", "--models"),
        ("write-runner", "facefind.py", "--json"),
    ):
        r = cli("bench", sub, "--help")
        flat = " ".join(r.out.replace("│", " ").split())
        assert r.code == 0 and has in flat and lacks not in flat, (sub, flat)


def test_peer_recipe_is_the_trainer_s_and_covers_table3():
    from dataclasses import fields

    from c3ae_edge.bench.paper import DEFAULT_MODELS
    from c3ae_edge.train.loop import TrainConfig

    recipe = json.loads(table_file("peers_recipe.json").read_text())
    assert set(recipe["models"]) == set(DEFAULT_MODELS)
    assert set(recipe["train"]) <= {f.name for f in fields(TrainConfig)}
    mae = table_file("peers_mae.json")
    if mae.is_file():  # every recorded MAE was trained with the recipe as it stands
        for name, res in json.loads(mae.read_text())["results"].items():
            assert name in recipe["models"] and res["train"] == recipe["train"] and res["limit"] == recipe.get("limit")


def test_remote_needs_a_bundle(tmp_path, cli):
    for args in (["--remote", "pi@board", "--bundle", tmp_path], ["remote", "pi@board", "--bundle", tmp_path]):
        r = cli("bench", *args)
        assert r.code == 2 and "not a bundle" in r.err and r.err.count("\n") == 1, (args, r.err)


def test_dwpool_rewrite_is_identical_in_float():
    import torch

    from c3ae_edge.bench.harness import faces
    from c3ae_edge.export.rewrite import PoolAsDepthwise, has_pools, pools_as_depthwise
    from c3ae_edge.models import create_model
    from c3ae_edge.weights import pretrained_model

    for name, crops in (("c3ae_plain", 1), ("c3ae_full", 3)):
        x, _, _, _ = faces(crops, None, 0)
        m = pretrained_model(name).eval()
        r = pools_as_depthwise(m, x)
        assert has_pools(m) and not has_pools(r) and any(isinstance(k, PoolAsDepthwise) for k in r.modules())
        with torch.inference_mode():
            assert torch.allclose(m(torch.from_numpy(x)), r(torch.from_numpy(x)), atol=1e-5)
    assert not has_pools(create_model("mobilenet_v2_050_6"))


def test_openvino_lean_forward_computes_each_new_input(tmp_path):
    """The bench's OpenVINO call (copy into the request's input, infer() on the calling thread, output views made once)
    and the async one return the former call's outputs for every new input, not the first input's."""
    pytest.importorskip("openvino")
    from c3ae_edge.bench.harness import build_model, faces
    from c3ae_edge.export.backends.openvino_backend import bench_forward as openvino_forward
    from c3ae_edge.export.registry import get_backend

    x = faces(1, None, 0)[0][:3]
    model, _ = build_model("c3ae_plain", 0)
    ir = get_backend("openvino").export(model, x[:1], tmp_path, "fp32", None, {"stem": "p"})
    lean, asyn, wrap = (openvino_forward(ir, 1, call=c) for c in ("lean", "async", "wrap"))
    ages = []
    for i in range(3):
        a, b, c = ([np.array(o) for o in f(x[i : i + 1])] for f in (lean, wrap, asyn))
        assert all(np.allclose(p, q, atol=1e-5) and np.allclose(p, r, atol=1e-5) for p, q, r in zip(a, b, c))
        ages.append(a[0].ravel()[0])
    assert len(set(ages)) == 3
