"""Adverse training runs: a finished run is never replaced by accident, --resume needs a real checkpoint of this model,
splits and warm starts are checked, and nothing is written before the inputs are."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from .conftest import UTK, Case, face_chip, run_case, shipped_weights

COMMON = [
    "--model",
    "c3ae_plain",
    "--data",
    f"utkface:{UTK}",
    "--limit",
    "96",
    "--batch-size",
    "16",
    "--no-compile",
    "--threads",
    "2",
]


def _run(*extra, edit=None, resume=True):
    """tmp/run: a copy of the finished tiny run, edited by ``edit(run)``; train into it."""

    def setup(tmp, env):
        run = shutil.copytree(env["run"], tmp / "run")
        if edit:
            edit(run)
        return ["train", "--out", str(run), *(["--resume"] if resume else []), *COMMON, "--epochs", "2", *extra]

    return setup


def _fresh(*extra):
    def setup(tmp, env):
        return ["train", "--out", str(tmp / "new"), *COMMON, "--epochs", "1", *[str(e).format(tmp=tmp) for e in extra]]

    return setup


def _tiny_csv(tmp, env):
    shutil.copyfile(face_chip(), tmp / "a.jpg")
    shutil.copyfile(face_chip(), tmp / "b.jpg")
    (tmp / "l.csv").write_text("file,age\na.jpg,30\nb.jpg,40\n")
    return [
        "train",
        "--out",
        str(tmp / "new"),
        "--model",
        "c3ae_plain",
        "--data",
        f"csv:{tmp / 'l.csv'}",
        "--epochs",
        "1",
        "--no-compile",
    ]


def _with_split(doc: str | None):
    def setup(tmp, env):
        if doc is not None:
            (tmp / "s.json").write_text(doc)
        return _fresh("--split", str(tmp / "s.json"))(tmp, env)

    return setup


CASES = [
    Case("out-not-empty", _run(resume=False), 2, ("run", "not empty", "--resume", "--force")),
    Case(
        "out-has-one-file",
        lambda tmp, env: ((tmp / "new").mkdir(), (tmp / "new" / "notes.txt").write_text("x"), _fresh()(tmp, env))[2],
        2,
        ("new", "not empty"),
    ),
    Case(
        "out-is-a-file",
        lambda tmp, env: ((tmp / "new").write_text("x"), _fresh()(tmp, env))[1],
        2,
        ("new", "is a file"),
    ),
    Case(
        "resume-no-last", _run(edit=lambda run: (run / "last.pt").unlink()), 2, ("last.pt", "no checkpoint to resume")
    ),
    Case("resume-empty-out", lambda tmp, env: _fresh("--resume")(tmp, env), 2, ("last.pt", "no checkpoint")),
    Case(
        "resume-garbage",
        _run(edit=lambda run: (run / "last.pt").write_bytes(b"\x00garbage" * 64)),
        2,
        ("last.pt", "not a readable training checkpoint"),
    ),
    Case(
        "resume-empty-file", _run(edit=lambda run: (run / "last.pt").write_bytes(b"")), 2, ("last.pt", "not a readable")
    ),
    Case(
        "resume-weights-file",
        _run(edit=lambda run: shutil.copyfile(run / "best.pt", run / "last.pt")),
        2,
        ("last.pt", "not a c3ae-edge training checkpoint"),
    ),
    Case(
        "resume-other-model",
        lambda tmp, env: _run()(tmp, env)[:-4] + ["--model", "c3ae_full"],
        2,
        ("last.pt", "does not fit"),
    ),
    Case(
        "resume-epoch-not-int",
        _run(
            edit=lambda run: torch.save(
                {**torch.load(run / "last.pt", weights_only=True), "epoch": "1"}, run / "last.pt"
            )
        ),
        2,
        ("last.pt", "training checkpoint"),
    ),
    Case(
        "resume-opt-mangled",
        _run(
            edit=lambda run: torch.save(
                {**torch.load(run / "last.pt", weights_only=True), "opt": {"x": 1}}, run / "last.pt"
            )
        ),
        2,
        ("last.pt", "does not fit"),
    ),
    Case("split-missing", _with_split(None), 2, ("s.json", "no such split file")),
    Case("split-not-json", _with_split("[[["), 2, ("s.json", "not a split")),
    Case(
        "split-face-twice",
        _with_split(json.dumps({"splits": {"train": ["x.jpg"], "test": ["x.jpg"]}})),
        2,
        ("s.json", "both"),
    ),
    Case(
        "split-no-faces-here",
        _with_split(json.dumps({"splits": {"train": ["x.jpg"], "val": [], "test": []}})),
        2,
        ("s.json", "empty"),
    ),
    Case("two-faces-no-val-split", _tiny_csv, 2, ("l.csv", "empty")),
    Case("init-missing", _fresh("--init", "{tmp}/w.pt"), 2, ("w.pt", "no such")),
    Case("init-other-model", _fresh("--init", str(shipped_weights())), 2, ("c3ae_plain",)),
    Case(
        "init-garbage",
        lambda tmp, env: ((tmp / "w.pt").write_bytes(b"junk"), _fresh("--init", "{tmp}/w.pt")(tmp, env))[1],
        2,
        ("w.pt", "not a readable"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_run(case, tmp_path, capsys, env, tiny_run):
    env["run"] = tiny_run
    run_case(case, tmp_path, capsys, env)


def test_force_replaces_a_run_atomically(tmp_path, cli, tiny_run):
    """--force replaces a finished run; best.pt and final.pt are renamed into place (no temporary files left)."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    before = (run / "best.pt").read_bytes()
    r = cli("train", "--out", str(run), "--force", *COMMON, "--epochs", "1", "--max-steps", "1", "--seed", "3")
    assert r.code == 0, r.err
    assert (run / "best.pt").read_bytes() != before
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]


def test_checkpoints_are_written_by_rename(tmp_path, monkeypatch):
    """A crash while best.pt is written leaves the previous best.pt whole (it used to be written in place)."""
    from c3ae_edge import weights
    from c3ae_edge.data.crops import CropSpec

    weights.save_weights(tmp_path / "best.pt", "c3ae_plain", {"w": torch.ones(3)}, CropSpec(), {"v": 1})
    good = (tmp_path / "best.pt").read_bytes()

    def crash(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights.torch, "save", lambda obj, f: (f.write(b"half a checkpoint"), crash()))
    with pytest.raises(OSError):
        weights.save_weights(tmp_path / "best.pt", "c3ae_plain", {"w": torch.zeros(3)}, CropSpec(), {"v": 2})
    assert (tmp_path / "best.pt").read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_diverging_training_is_an_error_not_nan(tmp_path, cli):
    r = cli("train", "--out", str(tmp_path / "run"), *COMMON, "--epochs", "1", "--lr", "1e30", "--max-steps", "3")
    assert r.code == 2 and "not finite" in r.err.splitlines()[-1] and "Traceback" not in r.err, r.err
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "history.json").exists()


@pytest.mark.slow  # two real training processes
def test_two_runs_into_one_folder(tmp_path):
    """Two `train` runs into one folder (issue 24, class 6): the second fails at once in one line, the first finishes
    alone; no lock file is left behind."""
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "c3ae_edge.cli", "train", "--out", str(out), *COMMON, "--epochs", "1"]
    first = subprocess.Popen([*argv, "--max-steps", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # the first run holds the folder once it exists
            if out.is_dir() or first.poll() is not None:
                break
            time.sleep(0.1)
        second = subprocess.run([*argv, "--max-steps", "2"], capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second started: the test proves nothing"
        err = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(err) == 1, second.stderr
        assert "another train run is writing this folder" in err[0], err
    finally:
        rest = first.communicate(timeout=600)
    assert first.returncode == 0, rest[1][-2000:]
    assert not any(p.name.endswith(".lock") for p in out.iterdir()), sorted(p.name for p in out.iterdir())
    assert json.loads((out / "result.json").read_text())["epochs_run"] == 1


def test_failed_run_leaves_no_empty_folder(tmp_path, cli):
    out = tmp_path / "new" / "run"
    r = cli("train", "--out", str(out), "--model", "c3ae_plain", "--data", f"utkface:{tmp_path / 'nodata'}")
    assert r.code != 0 and "Traceback" not in r.err
    assert not (tmp_path / "new").exists()
