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
