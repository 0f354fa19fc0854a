"""Bench JSON is bounded and numeric where it must be, reports name the user's file, and the standalone on-board
runner answers bad input in one line (issue 24, classes 10 and 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import Case, copy_bundle, run_case
from .test_bench_args import GOOD, _doc, _rows


def _latency(key, value):
    return _rows(lambda rows: rows[0]["latency"].__setitem__(key, value))


def _raw_constant(word: str):
    text = GOOD.read_text()
    doc = json.loads(text)
    doc["results"][0]["latency"]["p50"] = 123456.789
    return _doc(raw=json.dumps(doc).replace("123456.789", word, 1).encode())


CASES = [
    Case("p50-nan", _raw_constant("NaN"), 2, ("in.json", "NaN")),
    Case("p50-infinity", _raw_constant("Infinity"), 2, ("in.json", "Infinity")),
    Case("p50-minus-infinity", _raw_constant("-Infinity"), 2, ("in.json", "-Infinity")),
    Case("p50-negative", _latency("p50", -0.001), 2, ("in.json", "latency p50", "non-negative")),
    Case("mean-string-number", _latency("ci", [0.1, -3]), 2, ("in.json", "latency ci")),
    Case(
        "model-name-10mb",
        _rows(lambda rows: rows[0].__setitem__("model", "m" * (10 << 20))),
        2,
        ("in.json", "characters"),
    ),
    Case(
        "machine-label-10mb",
        _doc(lambda d: d.setdefault("environment", {}).__setitem__("machine", "x" * (10 << 20))),
        2,
        ("in.json", "environment.machine", "longer than"),
    ),
    Case("file-70mb", _doc(raw=b" " * (70 << 20) + b"{}"), 2, ("in.json", "larger than")),
    Case("nested-deep", _doc(lambda d: d.__setitem__("x", json.loads("[" * 40 + "]" * 40))), 2, ("in.json",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bench_json_bounds(case, tmp_path, capsys, env):
    run_case(case, tmp_path, capsys, env)


def test_unwritable_report_names_the_users_file(tmp_path, cli):
    """The temporary file beside the report cannot be made (here: a folder already has its name): the one line names
    the report the user asked for, and nothing is left."""
    dst = tmp_path / "out" / "merged.json"
    dst.parent.mkdir()
    (dst.parent / f".{dst.name}.tmp-{os.getpid()}").mkdir()  # what the in-process command will try to write
    r = cli("bench", "merge", str(GOOD), "--json", str(dst))
    assert r.code == 1 and len(r.lines) == 1, r.err
    assert r.lines[0].startswith(f"c3ae-edge: error: {dst}: ") and ".tmp-" not in r.lines[0], r.lines
    assert not dst.exists()


def _onboard(*args, cwd=None):
    from c3ae_edge.board import onboard

    return subprocess.run(
        [sys.executable, onboard.__file__, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.mark.parametrize("bad", ["not-json", "empty-object", "artifacts-not-list", "parity-missing"])
def test_onboard_bad_bundle_is_one_line(bad, tmp_path, tiny_bundle):
    b = copy_bundle(tiny_bundle, tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    if bad == "not-json":
        (b / "manifest.json").write_text("{ not json")
    elif bad == "empty-object":
        (b / "manifest.json").write_text("{}")
    elif bad == "artifacts-not-list":
        m["artifacts"] = 7
        (b / "manifest.json").write_text(json.dumps(m))
    else:
        (b / "parity_crops.npy").unlink()
    r = _onboard(b, "--runs", "2", "--warmup", "0")
    lines = r.stderr.strip().splitlines()
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert lines and lines[-1].startswith("onboard: error: "), r.stderr


def test_onboard_json_target_errors_name_the_users_path(tmp_path, tiny_bundle):
    from c3ae_edge.board import onboard

    target = tmp_path / "res" / "out.json"
    target.parent.mkdir()
    r = _onboard(tiny_bundle, "--runs", "2", "--warmup", "0", "--json", tmp_path / "nofolder" / "out.json")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"onboard: error: {tmp_path / 'nofolder' / 'out.json'}: No such file or directory"
    )
    r = _onboard(tiny_bundle, "--runs", "2", "--warmup", "0", "--json", target)
    assert r.returncode == 0 and json.loads(target.read_text())["results"] and os.listdir(target.parent) == ["out.json"]
    try:  # a real full disk: /dev/full answers every write with ENOSPC
        with open("/dev/full", "w") as f:
            f.write("x" * 65536)
            f.flush()
    except OSError as e:
        assert onboard.os_error_line(e, target) == f"{target}: no space left on device"
    else:
        pytest.skip("/dev/full is not here")
