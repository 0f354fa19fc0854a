"""The shipped default model on real faces: predict (detector and aligned paths), evaluate, FG-NET protocol, bad
input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from c3ae_edge.data import load_split, read_fgnet, read_utkface
from c3ae_edge.predict import AgePredictor
from c3ae_edge.weights import WEIGHTS_DIR, shipped_path, split_file_for


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "c3ae_edge.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def predictor() -> AgePredictor:
    return AgePredictor()  # the default weights, loaded from the package with no network


@pytest.fixture(scope="module")
def torch_predictor() -> AgePredictor:
    return AgePredictor(runtime="torch")  # the weights in PyTorch, as evaluate runs them


@pytest.fixture(scope="module")
def utk_test(utk_dir):
    s = read_utkface(utk_dir)
    idx = load_split(split_file_for(shipped_path("c3ae_full")), s)["test"]
    return [s[i] for i in idx]


def _spread(samples, n, seed=0):
    """n samples spread over the age range, chosen by seed."""
    rng = np.random.default_rng(seed)
    order = sorted(rng.permutation(len(samples))[: n * 8], key=lambda i: samples[i].age)
    return [samples[order[int(k)]] for k in np.linspace(0, len(order) - 1, n)]


def test_default_weights_accuracy_on_held_out_faces(predictor, utk_test):
    faces = _spread(utk_test, 60)
    errs = [abs(predictor.predict_image(s.path, aligned=True).faces[0].age - s.age) for s in faces]
    assert np.mean(errs) < 8.0  # 60 faces spread evenly over 1..100 years, harder than the data's own mix
    assert np.median(errs) < 6.0


def test_predict_detects_faces_on_fgnet_photos(predictor, fgnet_dir):
    faces = [s for s in _spread(read_fgnet(fgnet_dir), 16, seed=1) if s.age >= 3]
    errs, found = [], 0
    for s in faces:
        r = predictor.predict_image(s.path)
        if r.error is None:
            found += 1
            errs.append(abs(r.faces[0].age - s.age))
    assert found >= len(faces) - 2
    assert np.median(errs) < 9.0


def test_predict_cli_json_batch_keeps_going_past_bad_files(tmp_path, utk_test):
    good = _spread(utk_test, 2)
    for i, s in enumerate(good):
        shutil.copy(s.path, tmp_path / f"good{i}.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    raw = open(good[0].path, "rb").read()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 4])
    Image.new("RGB", (300, 300), (128, 128, 128)).save(tmp_path / "noface.png")
    r = cli("predict", str(tmp_path), "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    out = {json.loads(line)["file"].split("/")[-1]: json.loads(line) for line in r.stdout.splitlines()}
    assert set(out) == {"good0.jpg", "good1.jpg", "empty.jpg", "cut.jpg", "noface.png"}
    assert "empty" in out["empty.jpg"]["error"] and "no face" in out["noface.png"]["error"]
    assert "error" in out["cut.jpg"]
    r2 = cli("predict", str(tmp_path / "good0.jpg"), str(tmp_path / "good1.jpg"), "--aligned", "--json")
    assert r2.returncode == 0
    ages = [json.loads(line)["faces"][0]["age"] for line in r2.stdout.splitlines()]
    assert all(abs(a - s.age) < 15 for a, s in zip(ages, good))


def test_predict_cli_errors_are_one_line(tmp_path, cli):
    """In this process (the entry point's own error handling)."""
    r = cli("predict", str(tmp_path / "missing.jpg"))
    assert r.returncode != 0 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = cli("predict", "--model", "nope", "x.jpg")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown model" in r.stderr
    r = cli("predict", "--model", "ssr_net", "x.jpg")
    assert r.returncode == 2 and "no pretrained weights ship for 'ssr_net'" in r.stderr


def test_evaluate_cli_on_any_folder_laid_out_like_utkface(tmp_path, torch_predictor, utk_test):
    faces = _spread(utk_test, 40, seed=2)
    (tmp_path / "images").mkdir()
    lines = ["file,age,gender,race"]
    for i, s in enumerate(faces):
        shutil.copy(s.path, tmp_path / "images" / f"{i}.jpg")
        lines.append(f"images/{i}.jpg,{int(s.age)},0,0")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    r = cli("evaluate", "--weights", "default", "--data", f"utkface:{tmp_path}", "--json", str(tmp_path / "rep.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "rep.json").read_text())
    expected = np.mean([abs(torch_predictor.predict_image(s.path, aligned=True).faces[0].age - s.age) for s in faces])
    assert rep["n"] == 40 and abs(rep["mae"] - expected) < 1e-3
    assert sum(d["n"] for d in rep["per_decade"].values()) == 40
    flat = " ".join(r.stdout.replace("│", " ").split())  # the table prints the computed MAE, overall and per decade
    assert f"MAE {rep['mae']:.3f} years over 40 faces" in flat, r.stdout
    for decade, v in rep["per_decade"].items():
        assert f"{decade} {v['n']} {v['mae']:.2f}" in flat, (decade, r.stdout)


@pytest.mark.slow
def test_fgnet_paper_protocol_fast_setting(fgnet_dir, tmp_path):
    """The protocol end to end on a 240-photo FG-NET-layout folder (the full run is in the model card)."""
    lines = (fgnet_dir / "labels.csv").read_text().splitlines()
    (tmp_path / "labels.csv").write_text("\n".join(lines[:241]) + "\n")
    for sub in ("images", "points"):
        (tmp_path / sub).symlink_to(fgnet_dir / sub)
    r = cli(
        "evaluate",
        "--data",
        f"fgnet:{tmp_path}",
        "--protocol",
        "fgnet-paper",
        "--repeats",
        "2",
        "--epochs",
        "1",
        "--json",
        "-",
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["folds"] == 2 and rep["test_size"] == 30 and len(rep["fold_mae"]) == 2
    assert 0 < rep["mae_mean"] < 15


# The target for the default model on the recorded UTKFace test split: MAE <= 5.0. The shipped weights (a
# validation-chosen soup of two seeds of a fifth cosine cycle, then a W2 re-fit, see MODEL_CARD.md) measure 4.989.
FULL_MAE_GATE = 5.0


@pytest.mark.parametrize("name", ["c3ae_full", "c3ae_plain"])
def test_pretrained_weights_ship_in_the_package_with_a_card(name):
    import torch

    from c3ae_edge.models import create_model
    from c3ae_edge.weights import pretrained_model, sha256_file, shipped_models

    assert name in set(shipped_models())
    m = pretrained_model(name)
    assert not m.training
    fresh = create_model(name)
    assert not torch.equal(m.head.w1.weight, fresh.head.w1.weight)
    card = json.loads((WEIGHTS_DIR / f"{name}.card.json").read_text())
    assert card["weights_sha256"] == sha256_file(WEIGHTS_DIR / f"{name}.pt")
    split = split_file_for(WEIGHTS_DIR / f"{name}.pt")  # named in the weights' metadata, shipped beside them
    assert split is not None and split.parent == WEIGHTS_DIR and split.name == card["train"]["split_file"]
    assert card["utkface_test"]["n"] > 2000
    assert (WEIGHTS_DIR / f"{name}.pt").stat().st_size < 400_000
    text = (WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    assert "non-commercial" in text and f"## {name}" in text


@pytest.mark.parametrize("name", ["c3ae_full", "c3ae_plain"])
def test_shipped_weights_reproduce_their_card_on_the_recorded_test_split(name, utk_dir):
    """Re-evaluates the shipped weights here; the card's figure must be what they really score."""
    from c3ae_edge.train.evaluate import evaluate

    card = json.loads((WEIGHTS_DIR / f"{name}.card.json").read_text())
    rep = evaluate("default", f"utkface:{utk_dir}", model_name=name, split="test")
    assert rep["n"] == card["utkface_test"]["n"]
    assert abs(rep["mae"] - card["utkface_test"]["mae"]) < 1e-3
    if name == "c3ae_full":
        assert rep["mae"] <= FULL_MAE_GATE
