"""Adverse checkpoints: corrupt, crafted (code in a pickle), other-model, NaN or overflowing weights, bad crop specs."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from .conftest import FGNET, ROOT, TINY_TARGET, UTK, Case, face_chip, malicious_checkpoint, run_case, shipped_weights


def _ck(edit):
    """The shipped checkpoint, edited by ``edit(ck)``, saved as tmp/w.pt; predict with it."""

    def setup(tmp, env):
        import torch

        ck = torch.load(shipped_weights(), weights_only=True)
        ck = edit(ck) or ck
        torch.save(ck, tmp / "w.pt")
        return ["predict", "--aligned", "--weights", str(tmp / "w.pt"), str(face_chip())]

    return setup


def _raw(data: bytes):
    def setup(tmp, env):
        (tmp / "w.pt").write_bytes(data)
        return ["predict", "--aligned", "--weights", str(tmp / "w.pt"), str(face_chip())]

    return setup


def _set(key, value):
    def edit(ck):
        ck[key] = value

    return edit


def _spec(**kw):
    def edit(ck):
        ck["crop_spec"] = {**ck["crop_spec"], **kw}

    return edit


def _nan(ck):
    ck["state_dict"]["head.w1.weight"][0, 0] = float("nan")


def _overflow(ck):
    ck["state_dict"]["head.w1.weight"].fill_(3e38)  # finite weights whose logits overflow: the age is NaN


def _shapes(ck):
    ck["state_dict"]["head.w1.weight"] = ck["state_dict"]["head.w1.weight"][:, :3].clone()


def _evaluate_overflow(tmp, env):
    _ck(_overflow)(tmp, env)
    shutil.copyfile(face_chip(), tmp / "img.jpg")
    (tmp / "labels.csv").write_text("file,age\nimg.jpg,30\n")
    return ["evaluate", "--weights", str(tmp / "w.pt"), "--data", f"csv:{tmp / 'labels.csv'}"]


CASES = [
    Case(
        "missing",
        lambda tmp, env: ["predict", "--aligned", "--weights", str(tmp / "w.pt"), str(face_chip())],
        2,
        ("w.pt", "no such"),
    ),
    Case("empty-file", _raw(b""), 2, ("w.pt", "not a readable checkpoint")),
    Case("garbage-bytes", _raw(b"\x00\x01garbage" * 100), 2, ("w.pt", "not a readable checkpoint")),
    Case("zip-not-torch", _raw(b"PK\x03\x04" + b"\x00" * 200), 2, ("w.pt", "not a readable checkpoint")),
    Case(
        "truncated",
        lambda tmp, env: _raw(shipped_weights().read_bytes()[:5000])(tmp, env),
        2,
        ("w.pt", "not a readable"),
    ),
    Case(
        "malicious-pickle",
        lambda tmp, env: (
            malicious_checkpoint(tmp / "w.pt", tmp / "PWNED"),
            ["predict", "--aligned", "--weights", str(tmp / "w.pt"), str(face_chip())],
        )[1],
        2,
        ("w.pt", "not a readable checkpoint"),
        extra=lambda tmp, r: not (tmp / "PWNED").exists() or pytest.fail("code ran"),
    ),
    Case("a-list", _ck(lambda ck: [1, 2, 3]), 2, ("w.pt", "not a c3ae-edge checkpoint")),
    Case("no-model-key", _ck(lambda ck: {"state_dict": ck["state_dict"]}), 2, ("w.pt", "not a c3ae-edge checkpoint")),
    Case("model-not-str", _ck(_set("model", 7)), 2, ("w.pt", "not a c3ae-edge checkpoint")),
    Case("model-unknown", _ck(_set("model", "mystery_net")), 2, ("mystery_net",)),
    Case("state-not-tensors", _ck(_set("state_dict", {"a": 1})), 2, ("w.pt", "tensors")),
    Case("meta-a-list", _ck(_set("meta", [1])), 2, ("w.pt", "meta")),
    Case("meta-epoch-a-str", _ck(lambda ck: ck["meta"].update(epoch="3")), 2, ("w.pt", "meta.epoch")),
    Case(
        "meta-split-file-escapes",
        _ck(lambda ck: ck["meta"].update(split_file="../../x.split.json")),
        2,
        ("w.pt", "meta.split_file", "not a file name"),
    ),
    Case("other-model-weights", _ck(_set("model", "c3ae_plain")), 2, ("w.pt", "do not fit")),
    Case("wrong-shapes", _ck(_shapes), 2, ("w.pt", "do not fit")),
    Case("nan-weights", _ck(_nan), 2, ("w.pt", "nan")),
    Case("crop-spec-a-string", _ck(_set("crop_spec", "edge")), 2, ("w.pt",)),
    Case("crop-spec-unknown-key", _ck(_spec(flip=True)), 2, ("w.pt", "crop spec")),
    Case("crop-spec-scales-str", _ck(_spec(scales="1.2")), 2, ("w.pt", "crop spec")),
    Case("crop-spec-size-0", _ck(_spec(size=0)), 2, ("w.pt", "crop spec")),
    Case("crop-spec-std-0", _ck(_spec(std=[0, 0, 0])), 2, ("w.pt", "crop spec")),
    Case("crop-spec-scale-nan", _ck(_spec(scales=[1.2, float("nan"), 0.6])), 2, ("w.pt", "crop spec")),
    Case("crop-spec-one-scale", _ck(_spec(scales=[1.0])), 2, ("w.pt", "scale")),
    Case(
        "model-mismatch",
        lambda tmp, env: [
            "predict",
            "--aligned",
            "--weights",
            str(shipped_weights()),
            "--model",
            "c3ae_plain",
            str(face_chip()),
        ],
        2,
        ("c3ae_plain",),
    ),
    Case("overflow-predict", _ck(_overflow), 1, ("not finite",)),
    Case("overflow-evaluate", _evaluate_overflow, 2, ("w.pt", "non-finite")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_checkpoint(case, tmp_path, capsys, env):
    run_case(case, tmp_path, capsys, env)


def test_overflow_json_is_valid_json_and_an_error(tmp_path, capsys, env):
    """`predict --json` never prints a bare NaN: the face is an error entry, exit 1."""
    from .conftest import run_main

    argv = _ck(_overflow)(tmp_path, env) + ["--json"]
    r = run_main(argv, capsys)
    assert r.code == 1
    doc = json.loads(r.out)  # strict: NaN would not parse as JSON here
    assert "not finite" in doc["error"]


# ------------------------------------------------------------------ every loader of a user checkpoint


def _loaders(tmp: Path, bad: Path) -> dict[str, list[str]]:
    (tmp / "tiny.toml").write_text(TINY_TARGET)
    run = tmp / "run"
    run.mkdir()
    shutil.copyfile(bad, run / "last.pt")
    common = ["--model", "c3ae_plain", "--data", f"utkface:{UTK}", "--limit", "40", "--no-compile"]
    return {
        "predict": ["predict", "--aligned", "--weights", str(bad), str(face_chip())],
        "evaluate": ["evaluate", "--weights", str(bad), "--data", f"utkface:{UTK}", "--limit", "4"],
        "evaluate-protocol": [
            "evaluate",
            "--weights",
            str(bad),
            "--data",
            f"fgnet:{FGNET}",
            "--protocol",
            "lopo",
            "--folds",
            "1",
        ],
        "export": ["export", "--weights", str(bad), "--target", str(tmp / "tiny.toml"), "--out", str(tmp / "exports")],
        "train-init": ["train", "--init", str(bad), "--out", str(tmp / "fresh"), *common],
        "train-resume": ["train", "--resume", "--out", str(run), *common],
    }


@pytest.mark.parametrize(
    "command", ["predict", "evaluate", "evaluate-protocol", "export", "train-init", "train-resume"]
)
def test_malicious_pickle_runs_no_code(command, tmp_path, capsys, env):
    from .conftest import one_line_error, run_main, snapshot

    bad = malicious_checkpoint(tmp_path / "evil.pt", tmp_path / "PWNED")
    argv = _loaders(tmp_path, bad)[command]
    before = snapshot(tmp_path)
    r = run_main(argv, capsys)
    assert not (tmp_path / "PWNED").exists(), f"{command} ran code from a checkpoint"
    one_line_error(r, 2, ("not a readable",))
    assert ("evil.pt" in r.err) or ("last.pt" in r.err)
    assert snapshot(tmp_path) == before


def test_every_torch_load_is_weights_only():
    """No torch.load in the package, tools or bench scripts without weights_only=True."""
    bad = []
    for f in [
        *ROOT.joinpath("c3ae_edge").rglob("*.py"),
        *ROOT.joinpath("bench").rglob("*.py"),
        *ROOT.joinpath("docs").rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    bad.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not bad, bad
    text = "\n".join(f.read_text() for f in ROOT.joinpath("c3ae_edge").rglob("*.py"))
    assert "weights_only=False" not in text and "pickle.load" not in text
