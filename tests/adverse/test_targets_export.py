"""Adverse target files, names and export arguments: refused before any conversion, nothing written anywhere."""

from __future__ import annotations

import pytest

from .conftest import Case, run_case, shipped_weights

BASE = {"name": '"board"', "description": '"d"', "arch": '"any"', "backend": '"onnx"', "precisions": '["fp32"]'}


def _toml(**fields):
    """tmp/board.toml from BASE with ``fields`` replaced (None drops a field); a precious folder sits beside the
    output."""

    def setup(tmp, env):
        d = {**BASE, **fields}
        (tmp / "board.toml").write_text("".join(f"{k} = {v}\n" for k, v in d.items() if v is not None))
        (tmp / "precious").mkdir()
        (tmp / "precious" / "keep.txt").write_text("irreplaceable")
        (tmp / "exports" / "c3ae_full-0.1.0-rpi4").mkdir(parents=True)
        return [
            "export",
            "--target",
            str(tmp / "board.toml"),
            "--out",
            str(tmp / "exports"),
            "--calibration-count",
            "32",
            "--verify-count",
            "3",
        ]

    return setup


def _raw_toml(data: bytes):
    def setup(tmp, env):
        (tmp / "board.toml").write_bytes(data)
        return ["export", "--target", str(tmp / "board.toml"), "--out", str(tmp / "exports")]

    return setup


def _args(*extra, env_var: tuple | None = None):
    def setup(tmp, env):
        return [
            "export",
            "--target",
            "generic",
            "--out",
            str(tmp / "exports"),
            "--calibration-count",
            "32",
            "--verify-count",
            "3",
            *extra,
        ]

    return setup


def _shadow(tmp, env):
    (tmp / "generic").write_text("this is not TOML [[[")  # a stray file named like a built-in target
    return ["export", "--target", "generic", "--calibration-count", "5"]


def _overflowing(tmp, env):
    import torch

    ck = torch.load(shipped_weights(), weights_only=True)
    ck["state_dict"]["head.w1.weight"].fill_(3e38)  # finite weights, NaN ages
    torch.save(ck, tmp / "w.pt")
    return _args("--weights", str(tmp / "w.pt"))(tmp, env)


def _out_is_file(tmp, env):
    (tmp / "exports").write_text("a file")
    return _args()(tmp, env)


CASES = [
    Case("name-traversal", _toml(name='"rpi4/../../precious"'), 2, ("board.toml", "rpi4/../../precious")),
    Case("alias-traversal", _toml(aliases='["../../precious"]'), 2, ("board.toml", "../../precious")),
    Case("name-dotdot", _toml(name='".."'), 2, ("board.toml", "'..'")),
    Case("name-absolute", _toml(name='"/tmp/x"'), 2, ("board.toml", "/tmp/x")),
    Case("name-with-dot", _toml(name='"a.b"'), 2, ("board.toml", "a.b")),
    Case("name-with-space", _toml(name='"my board"'), 2, ("board.toml", "my board")),
    Case("name-empty", _toml(name='""'), 2, ("board.toml", "name")),
    Case("name-too-long", _toml(name='"' + "a" * 65 + '"'), 2, ("board.toml", "1-64")),
    Case("name-not-str", _toml(name="3"), 2, ("board.toml", "'name'")),
    Case("toml-not-utf8", _raw_toml(b'name = "b\xff"\n'), 2, ("board.toml", "utf-8")),
    Case("toml-invalid", _raw_toml(b"name = = 1\n"), 2, ("board.toml", "not valid toml")),
    Case("toml-empty", _raw_toml(b""), 2, ("board.toml", "missing field")),
    Case("field-unknown", _toml(speed="3"), 2, ("board.toml", "unknown field")),
    Case("field-missing", _toml(backend=None), 2, ("board.toml", "missing field", "backend")),
    Case("threads-str", _toml(threads='"4"'), 2, ("board.toml", "threads")),
    Case("threads-bool", _toml(threads="true"), 2, ("board.toml", "threads")),
    Case("threads-0", _toml(threads="0"), 2, ("board.toml", "threads")),
    Case("precisions-ints", _toml(precisions="[1, 2]"), 2, ("board.toml", "precisions", "strings")),
    Case("precisions-empty", _toml(precisions="[]"), 2, ("board.toml", "precisions")),
    Case("precisions-duplicate", _toml(precisions='["fp32", "fp32"]'), 2, ("board.toml", "distinct")),
    Case("precision-unknown", _toml(precisions='["int4"]'), 2, ("board.toml", "int4")),
    Case("precision-not-in-backend", _toml(backend='"tflite"', precisions='["fp16"]'), 2, ("board.toml", "fp16")),
    Case("aliases-ints", _toml(aliases="[1]"), 2, ("board.toml", "aliases", "strings")),
    Case("rewrites-ints", _toml(int8_rewrites="[1]"), 2, ("board.toml", "int8_rewrites", "strings")),
    Case("rewrite-unknown", _toml(int8_rewrites='["fuse"]'), 2, ("board.toml", "fuse")),
    Case("backend-unknown", _toml(backend='"tensorflow"'), 2, ("board.toml", "tensorflow")),
    Case("max-delta-0", _toml(max_int8_mae_delta="0"), 2, ("board.toml", "max_int8_mae_delta")),
    Case("max-delta-nan", _toml(max_int8_mae_delta="nan"), 2, ("board.toml", "max_int8_mae_delta")),
    Case(
        "target-file-missing",
        lambda tmp, env: ["export", "--target", str(tmp / "nope.toml")],
        2,
        ("nope.toml", "no such target file"),
    ),
    Case("target-name-unknown", lambda tmp, env: ["export", "--target", "pdp11"], 2, ("pdp11", "unknown target")),
    Case("builtin-not-shadowed", _shadow, 2, ("calibration needs at least 32",), cwd=True),
    Case("verify-count-0", _args("--verify-count", "0"), 2, ("--verify-count",)),
    Case("calibration-count-5", _args("--calibration-count", "5"), 2, ("calibration", "32")),
    Case("max-int8-delta-negative", _args("--max-int8-delta", "-1"), 2, ("--max-int8-delta",)),
    Case("seed-negative", _args("--seed", "-1"), 2, ("--seed",)),
    Case("out-is-a-file", _out_is_file, 2, ("exports", "not a folder")),
    Case("weights-missing", lambda tmp, env: _args("--weights", str(tmp / "w.pt"))(tmp, env), 2, ("w.pt", "no such")),
    Case("model-mismatch", _args("--weights", str(shipped_weights()), "--model", "c3ae_plain"), 2, ("c3ae_plain",)),
    Case("weights-overflow", _overflowing, 2, ("w.pt", "non-finite")),
    Case(
        "data-missing", lambda tmp, env: _args("--data", str(tmp / "nodata"))(tmp, env), 2, ("nodata", "no face data")
    ),
    Case(
        "calibration-missing",
        lambda tmp, env: _args("--target", "generic", "--calibration", str(tmp / "cal"))(tmp, env),
        2,
        ("cal",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_target_or_export_argument(case, tmp_path, capsys, env):
    run_case(case, tmp_path, capsys, env)


def test_builtin_target_wins_over_a_file_of_its_name(tmp_path, monkeypatch):
    from c3ae_edge.export.targets import load_target

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x86").write_text('name = "evil"\n')
    assert load_target("x86").name == "x86" and load_target("rpi").name == "rpi4"


def test_bundle_and_archive_paths_stay_inside_out(tmp_path):
    """The check right where the bundle path is made: any name leaving --out is refused (folder and archive)."""
    from c3ae_edge.errors import UsageError
    from c3ae_edge.export.bundle import inside_out, make_archive

    out = tmp_path / "exports"
    out.mkdir()
    assert inside_out(out, "c3ae_full-0.1.0-rpi4") == out / "c3ae_full-0.1.0-rpi4"
    for bad in ("../precious", "a/../../x", "/abs", "..", "."):
        with pytest.raises(UsageError, match="outside"):
            inside_out(out, bad)
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="outside"):
        inside_out(out, "link")
    (out / "b").mkdir()
    (out / "b" / "f.txt").write_text("x")
    (out / "b.tar.gz").symlink_to(tmp_path / "elsewhere" / "victim.tar.gz")
    with pytest.raises(UsageError, match="outside"):
        make_archive(out / "b", 0)
    assert not (tmp_path / "elsewhere" / "victim.tar.gz").exists()
