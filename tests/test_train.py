"""Training really trains, checkpoints resume, NaN weights are refused, and torchrun runs DDP on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from c3ae_edge.errors import DataError
from c3ae_edge.train.loop import TrainConfig, train
from c3ae_edge.weights import load_model, read_checkpoint

pytestmark = pytest.mark.slow  # full bundles, training or the data set: outside the fast tier


def _cfg(tmp_path, utk_dir, **kw):
    base = dict(
        model="c3ae_plain",
        data=f"utkface:{utk_dir}",
        out=str(tmp_path / "run"),
        epochs=3,
        batch_size=32,
        limit=320,
        compile=False,
        ema=0.0,
        lr=3e-3,
        threads=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_lowers_loss_and_writes_checkpoints(tmp_path, utk_dir):
    res = train(_cfg(tmp_path, utk_dir), log=lambda m: None)
    run = tmp_path / "run"
    hist = json.loads((run / "history.json").read_text())
    assert len(hist) == 3 and hist[-1]["loss"] < hist[0]["loss"]
    for f in ("best.pt", "final.pt", "last.pt", "split.json", "config.json", "result.json"):
        assert (run / f).is_file(), f
    split = json.loads((run / "split.json").read_text())
    assert not set(split["splits"]["train"]) & set(split["splits"]["test"])
    model, spec, ck = load_model(str(run / "best.pt"))
    assert ck.model == "c3ae_plain" and spec.scales == (1.0,)
    assert res["test_mae"] > 0


def test_resume_continues_from_last_epoch(tmp_path, utk_dir):
    train(_cfg(tmp_path, utk_dir, epochs=1), log=lambda m: None)
    logs = []
    train(_cfg(tmp_path, utk_dir, epochs=2), resume=True, log=logs.append)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [0, 1]
    assert any("resumed" in m for m in logs)


def test_nan_checkpoint_is_refused(tmp_path, utk_dir):
    train(_cfg(tmp_path, utk_dir, epochs=1, max_steps=2), log=lambda m: None)
    ck = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    ck["state_dict"]["head.w1.weight"][0, 0] = float("nan")
    torch.save(ck, tmp_path / "nan.pt")
    with pytest.raises(DataError, match="NaN"):
        read_checkpoint(tmp_path / "nan.pt")
    r = subprocess.run(
        [sys.executable, "-m", "c3ae_edge.cli", "predict", "--weights", str(tmp_path / "nan.pt"), "x.jpg"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "NaN" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, utk_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "c3ae_edge.cli",
        "train",
        "--model",
        "c3ae_plain",
        "--data",
        f"utkface:{utk_dir}",
        "--out",
        str(tmp_path / "ddp"),
        "--epochs",
        "1",
        "--limit",
        "256",
        "--batch-size",
        "16",
        "--max-steps",
        "4",
        "--no-compile",
        "--threads",
        "1",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    hist = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert hist[0]["step"] == 4  # each rank stepped on its own shard, in lockstep
    assert (tmp_path / "ddp" / "best.pt").is_file()


def test_weight_soup_keeps_only_what_lowers_val_mae_and_release_follows_its_cycles(tmp_path, utk_dir):
    """`c3ae-edge weights soup` on two real runs (the second warm-started from the first), then its W2 re-fit on the
    clean train crops; the weights release sees both cycles."""
    from pathlib import Path

    from c3ae_edge.train import release as rel

    train(_cfg(tmp_path, utk_dir, out=str(tmp_path / "a"), epochs=1), log=lambda m: None)
    train(
        _cfg(
            tmp_path,
            utk_dir,
            out=str(tmp_path / "b"),
            epochs=1,
            lr=1e-3,
            seed=1,
            split=str(tmp_path / "a" / "split.json"),
            init=str(tmp_path / "a" / "best.pt"),
        ),
        log=lambda m: None,
    )
    assert (tmp_path / "b" / "split.json").read_bytes() == (
        tmp_path / "a" / "split.json"
    ).read_bytes()  # its own seed kept
    ings = [str(tmp_path / r / "best.pt") for r in ("a", "b")]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "c3ae_edge.cli",
            "weights",
            "soup",
            str(tmp_path / "soup"),
            *ings,
            "--threads",
            "2",
            "--refit-w2",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    ck = read_checkpoint(tmp_path / "soup" / "best.pt")
    alone = ck["meta"]["val_alone"]
    assert set(alone) == set(ings) and ck["meta"]["soup"][0] == min(alone, key=alone.get)
    refit = ck["meta"]["w2_refit"]
    assert refit["train_l1_after"] < refit["train_l1_before"] and refit["faces"] > 200
    assert refit["kept"] == (refit["val_after"] < refit["val_before"])
    assert (
        ck["meta"]["val_mae"] == min(refit["val_before"], refit["val_after"]) <= min(alone.values())
    )  # greedy: kept only if it helps
    states = [read_checkpoint(p)["state_dict"] for p in ck["meta"]["soup"]]
    want = {k: sum(s[k].float() for s in states) / len(states) for k, v in states[0].items() if v.is_floating_point()}
    for k, v in want.items():  # the average (buffers included); only W2 moves, and only when the re-fit is kept
        assert torch.allclose(ck["state_dict"][k], v) != (refit["kept"] and k.startswith("head.w2.")), k
    chain = [c["run"] for c in rel.cycles(tmp_path / "soup")]  # the soup itself trained nothing: not a cycle
    assert chain == (
        ["a", "b"] if "b" in {Path(p).parent.name for p in ck["meta"]["soup"]} else ["a"]
    )  # b needs a, its init
    assert [c["run"] for c in rel.cycles(tmp_path / "b")] == ["a", "b"]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "c3ae_edge.cli",
            "weights",
            "soup",
            str(tmp_path / "x"),
            ings[0],
            str(tmp_path / "nope.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nope.pt" in bad.stderr
