"""``c3ae-edge bench``: a real (short) run on real faces and real runtimes, its JSON/markdown/PNG, the paper's data, errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from c3ae_edge.bench.onboard import SCHEMA, latency_stats
from c3ae_edge.detect import resolve_detector

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "c3ae_edge.cli", "bench", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[dict, Path]:
    """torch + ONNX (fp32 and int8) for c3ae_plain, 30 runs: the whole pipeline at small cost."""
    out = tmp_path_factory.mktemp("bench")
    r = run("--models", "c3ae_plain", "--backends", "torch,onnx", "--precision", "fp32,int8", "--runs", "30", "--warmup", "3", "--e2e", "4",
            "--json", str(out / "b.json"), "--markdown", str(out / "b.md"), "-q")
    assert r.returncode == 0, r.stderr[-3000:]
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
        assert r["memory"]["peak_rss"] > 0 and r["load"]["time"] >= 0 and r["first_inference"]["time"] > 0
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
    assert env["cpu"]["logical_cores"] >= 1 and env["versions"]["onnxruntime"] and env["peak"]["1"]["fp32"]["macs_per_s"] > 0
    assert len(doc["config"]["timing_faces"]) == 32 and all(f.endswith(".jpg") for f in doc["config"]["timing_faces"])


def test_photo_to_age_rows(short_run):
    """End-to-end rows: every timed artifact x (FG-NET photos, 640x480, 1280x720), per-stage latency blocks, images/s."""
    doc, out = short_run
    e2e = [r for r in doc["results"] if r.get("pipeline") == "photo-to-age"]
    assert {(r["backend"], r["precision"], r["input"]) for r in e2e} == {
        (b, p, i) for b, p in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")) for i in ("FG-NET photos", "640x480 frames", "1280x720 frames")}
    for r in e2e:
        assert r["detector"] == resolve_detector("auto") and r["images"] == 4 and r["model"] == "c3ae_plain" and r["threads"] == 1
        assert r["frame"] in (None, [640, 480], [1280, 720])
        assert r["faces_found"] >= 3 and r["annotated_face_found"] >= 3  # real faces, found and in the right place
        st = r["stages"]
        assert set(st) == {"decode", "detect", "crop", "age"} and all(s["count"] == 4 and s["p50"] > 0 for s in st.values())
        assert r["latency"]["count"] == 4 and r["thread_cpu_p50_s"]["total"] > 0
        assert r["latency"]["mean"] == pytest.approx(sum(s["mean"] for s in st.values()))  # the total is the sum of its stages
        assert r["throughput"] == {"unit": "images/s", "value": pytest.approx(1 / r["latency"]["mean"])}
    # frames of one photo share decode/detect/crop timings across artifacts; their age networks differ
    by_input = {}
    for r in e2e:
        by_input.setdefault(r["input"], []).append(r)
    assert all(len({r["stages"]["detect"]["p50"] for r in rs}) == 1 for rs in by_input.values())
    md = (out / "b.md").read_text()
    assert "## Photo to age (end to end)" in md and "640x480 frames" in md and "1280x720 frames" in md and resolve_detector("auto") in md
    assert "4 FG-NET photos" in doc["config"]["photo_to_age"]


def test_markdown_puts_paper_beside_ours(short_run):
    from c3ae_edge.models import get_model_cfg

    doc, out = short_run
    md = (out / "b.md").read_text()
    paper_ms = get_model_cfg("c3ae_plain").paper.cpu_s * 1e3
    assert "## Table 3, reproduced" in md and f"{paper_ms:.2f} ms" in md and "(paper)" in md
    assert "not yet trained" in md or "MAE" in md
    assert "## Performance bar" in md and "## Graph report per artifact" in md and "## Environment" in md
    png = out / "b.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_combines_documents(short_run, tmp_path):
    doc, out = short_run
    gpu_like = dict(doc, config={**doc["config"], "device": "cuda"})  # a second document from "another" run
    (tmp_path / "g.json").write_text(json.dumps(gpu_like))
    r = run("--merge", str(out / "b.json"), str(tmp_path / "g.json"), "--json", str(tmp_path / "m.json"), "--markdown", str(tmp_path / "m.md"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert len(m["merged_from"]) == 2 and len(m["results"]) == 2 * len(doc["results"])
    assert len({r["machine"] for r in m["results"]}) == 2
    assert "Merged from" in (tmp_path / "m.md").read_text()


def test_paper_table_file_matches_registry():
    from c3ae_edge.bench.paper import document

    assert json.loads((ROOT / "bench" / "paper_table3.json").read_text()) == json.loads(json.dumps(document()))


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "x.json").write_text('{"not": "a bench"}')
    for args in (["--models", "nope"], ["--backends", "tensorrt"], ["--precision", "int4"], ["--runs", "0"], ["--threads", "two"],
                 ["--merge", str(tmp_path / "x.json")], ["--merge", str(tmp_path / "missing.json")], ["--merge"]):
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("c3ae-edge: error:"), (args, r.stderr)


def test_cuda_absent_skips_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this test covers the machine without one")
    r = run("--device", "cuda", "--models", "c3ae_plain", "--json", str(tmp_path / "c.json"))
    assert r.returncode == 0, r.stderr
    assert "skip --device cuda: CUDA not available" in r.stderr
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["results"] == [] and doc["skipped"].startswith("skip --device cuda")


def test_peer_recipe_is_the_trainer_s_and_covers_table3():
    from dataclasses import fields

    from c3ae_edge.bench.paper import DEFAULT_MODELS
    from c3ae_edge.train import TrainConfig

    recipe = json.loads((ROOT / "bench" / "peers" / "recipe.json").read_text())
    assert set(recipe["models"]) == set(DEFAULT_MODELS)
    assert set(recipe["train"]) <= {f.name for f in fields(TrainConfig)}
    mae = ROOT / "bench" / "peers" / "mae.json"
    if mae.is_file():  # every recorded MAE was trained with the recipe as it stands
        for name, res in json.loads(mae.read_text())["results"].items():
            assert name in recipe["models"] and res["train"] == recipe["train"] and res["limit"] == recipe.get("limit")


def test_remote_needs_a_bundle(tmp_path):
    r = run("--remote", "pi@board", "--bundle", str(tmp_path))
    assert r.returncode == 2 and "not a bundle" in r.stderr and r.stderr.count("\n") == 1


def test_dwpool_rewrite_is_identical_in_float():
    import torch

    from c3ae_edge.bench.harness import faces
    from c3ae_edge.export.rewrite import PoolAsDepthwise, has_pools, pools_as_depthwise
    from c3ae_edge.models import create_model

    for name, crops in (("c3ae_plain", 1), ("c3ae_full", 3)):
        x, _, _, _ = faces(crops, None, 0)
        m = create_model(name, pretrained=True).eval()
        r = pools_as_depthwise(m, x)
        assert has_pools(m) and not has_pools(r) and any(isinstance(k, PoolAsDepthwise) for k in r.modules())
        with torch.inference_mode():
            assert torch.allclose(m(torch.from_numpy(x)), r(torch.from_numpy(x)), atol=1e-5)
    assert not has_pools(create_model("mobilenet_v2_050_6"))


def test_openvino_lean_forward_computes_each_new_input(tmp_path):
    """The bench's OpenVINO call (copy into the request's input, infer() on the calling thread, output views made once)
    and the async one return the former call's outputs for every new input, not the first input's."""
    pytest.importorskip("openvino")
    from c3ae_edge.bench.forward import openvino_forward
    from c3ae_edge.bench.harness import build_model, faces
    from c3ae_edge.export.registry import get_backend

    x = faces(1, None, 0)[0][:3]
    model, _ = build_model("c3ae_plain", 0)
    ir = get_backend("openvino").export(model, x[:1], tmp_path, "fp32", None, {"stem": "p"})
    lean, asyn, wrap = (openvino_forward(ir, 1, call=c) for c in ("lean", "async", "wrap"))
    ages = []
    for i in range(3):
        a, b, c = ([np.array(o) for o in f(x[i:i + 1])] for f in (lean, wrap, asyn))
        assert all(np.allclose(p, q, atol=1e-5) and np.allclose(p, r, atol=1e-5) for p, q, r in zip(a, b, c))
        ages.append(a[0].ravel()[0])
    assert len(set(ages)) == 3
