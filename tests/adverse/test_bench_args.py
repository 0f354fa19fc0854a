"""Adverse bench JSON and arguments to every command: one line, checked before any heavy work, nothing written."""

from __future__ import annotations

import json

import pytest

from .conftest import ROOT, UTK, Case, face_chip, run_case

GOOD = ROOT / "bench" / "results" / "x86.json"


def _doc(edit=None, raw: bytes | None = None, name: str = "in.json"):
    """tmp/in.json: the committed x86 bench document, edited; merged into tmp/out/report.md (+ PNG beside it)."""

    def setup(tmp, env):
        if raw is not None:
            (tmp / name).write_bytes(raw)
        else:
            d = json.loads(GOOD.read_text())
            d = edit(d) or d if edit else d
            (tmp / name).write_text(json.dumps(d))
        (tmp / "out").mkdir()
        (tmp / "out" / "report.md").write_text("the previous good report\n")
        return [
            "bench",
            "--merge",
            str(tmp / name),
            "--markdown",
            str(tmp / "out" / "report.md"),
            "--json",
            str(tmp / "out" / "merged.json"),
        ]

    return setup


def _rows(fn):
    def edit(d):
        fn(d["results"])

    return _doc(edit)


def _merge_folder(tmp, env):
    (tmp / "folder.json").mkdir()
    return ["bench", "--merge", str(tmp / "folder.json")]


def _train(*extra):
    def setup(tmp, env):
        return ["train", "--data", f"utkface:{UTK}", "--out", str(tmp / "run"), "--no-compile", *extra]

    return setup


def _evaluate(*extra):
    def setup(tmp, env):
        return ["evaluate", "--data", f"utkface:{UTK}", *[str(e).format(tmp=tmp) for e in extra]]

    return setup


CASES = [
    # bench JSON
    Case("merge-folder", _merge_folder, 2, ("folder.json", "is a folder")),
    Case(
        "merge-missing", lambda tmp, env: ["bench", "--merge", str(tmp / "gone.json")], 2, ("gone.json", "no such file")
    ),
    Case("merge-not-json", _doc(raw=b"{not json"), 2, ("in.json", "not a bench json")),
    Case("merge-not-utf8", _doc(raw=b'{"schema": "\xff"}'), 2, ("in.json",)),
    Case("merge-empty-file", _doc(raw=b""), 2, ("in.json",)),
    Case("merge-wrong-schema", _doc(lambda d: d.update(schema="other/1")), 2, ("in.json", "schema")),
    Case("merge-results-not-list", _doc(lambda d: d.update(results={"a": 1})), 2, ("in.json", "schema")),
    Case("merge-a-list", _doc(lambda d: [d]), 2, ("in.json",)),
    Case("row-not-a-dict", _rows(lambda rows: rows.append("row")), 2, ("in.json", "results[51]")),
    Case("row-no-model", _rows(lambda rows: rows[0].pop("model")), 2, ("in.json", "results[0]")),
    Case("row-latency-string", _rows(lambda rows: rows[3].update(latency="fast")), 2, ("in.json", "results[3]")),
    Case("row-p50-string", _rows(lambda rows: rows[3]["latency"].update(p50="1ms")), 2, ("in.json", "results[3]")),
    Case("row-no-artifact", _rows(lambda rows: rows[0].pop("artifact")), 2, ("in.json", "malformed bench rows")),
    Case("row-no-load", _rows(lambda rows: rows[5].pop("load")), 2, ("in.json", "malformed bench rows")),
    Case(
        "from-json-malformed",
        lambda tmp, env: (
            _rows(lambda rows: rows[0].pop("artifact"))(tmp, env),
            ["bench", "--from-json", str(tmp / "in.json"), "--markdown", str(tmp / "out" / "report.md")],
        )[1],
        2,
        ("in.json", "malformed"),
    ),
    Case(
        "accuracy-missing",
        lambda tmp, env: _doc()(tmp, env) + ["--accuracy", str(tmp / "mae.json")],
        2,
        ("mae.json", "no such accuracy"),
    ),
    Case("json-without-merge", lambda tmp, env: ["bench", str(tmp / "a.json")], 2, ("--merge",)),
    Case("threads-not-int", lambda tmp, env: ["bench", "--threads", "one"], 2, ("--threads",)),
    Case("batch-empty", lambda tmp, env: ["bench", "--batch", ","], 2, ("--batch",)),
    Case("remote-without-bundle", lambda tmp, env: ["bench", "--remote", "pi@board"], 2, ("--bundle",)),
    # train arguments: refused before the data is read
    Case("train-epochs-0", _train("--epochs", "0"), 2, ("--epochs",)),
    Case("train-lr-negative", _train("--lr", "-0.1"), 2, ("--lr",)),
    Case("train-lr-nan", _train("--lr", "nan"), 2, ("--lr",)),
    Case("train-batch-0", _train("--batch-size", "0"), 2, ("--batch-size",)),
    Case("train-dropout-1.5", _train("--dropout", "1.5"), 2, ("--dropout",)),
    Case("train-erase-2", _train("--erase-p", "2"), 2, ("--erase-p",)),
    Case("train-jitter-0.7", _train("--jitter", "0.7"), 2, ("--jitter",)),
    Case("train-limit-0", _train("--limit", "0"), 2, ("--limit",)),
    Case("train-max-steps-0", _train("--max-steps", "0"), 2, ("--max-steps",)),
    Case("train-threads-0", _train("--threads", "0"), 2, ("--threads",)),
    Case("train-alpha-negative", _train("--alpha", "-1"), 2, ("--alpha",)),
    Case("train-recipe-unknown", _train("--recipe", "magic"), 2, ("magic",)),
    Case("train-model-unknown", _train("--model", "resnet9000"), 2, ("resnet9000",)),
    Case("train-device-tpu", _train("--device", "tpu"), 2, ("--device",)),
    Case("train-epochs-not-int", _train("--epochs", "ten"), 2, ("--epochs",)),
    Case(
        "train-data-kind",
        lambda tmp, env: ["train", "--data", "zip:x", "--out", str(tmp / "run"), "--epochs", "1"],
        2,
        ("zip",),
    ),
    # evaluate arguments: refused before the model or the data is read
    Case("evaluate-folds-negative", _evaluate("--protocol", "lopo", "--folds", "-1"), 2, ("--folds",)),
    Case("evaluate-protocol-unknown", _evaluate("--protocol", "morph"), 2, ("--protocol", "morph")),
    Case("evaluate-repeats-0", _evaluate("--protocol", "fgnet-paper", "--repeats", "0"), 2, ("--repeats",)),
    Case("evaluate-epochs-negative", _evaluate("--protocol", "lopo", "--epochs", "-2"), 2, ("--epochs",)),
    Case("evaluate-split-unknown", _evaluate("--split", "holdout"), 2, ("--split", "holdout")),
    Case("evaluate-limit-0", _evaluate("--limit", "0"), 2, ("--limit",)),
    Case(
        "evaluate-json-missing-folder",
        _evaluate("--json", "{tmp}/no/such/report.json"),
        2,
        ("--json", "does not exist"),
    ),
    Case("evaluate-json-a-folder", _evaluate("--json", "{tmp}"), 2, ("--json", "folder")),
    Case("evaluate-weights-missing", _evaluate("--weights", "{tmp}/w.pt"), 2, ("w.pt", "no such")),
    # predict and the rest
    Case(
        "predict-detector-unknown", lambda tmp, env: ["predict", "--detector", "yolo", str(face_chip())], 2, ("yolo",)
    ),
    Case(
        "predict-detector-no-module",
        lambda tmp, env: ["predict", "--detector", "nosuchmod:Det", str(face_chip())],
        2,
        ("nosuchmod",),
    ),
    Case("predict-model-unknown", lambda tmp, env: ["predict", "--model", "gpt", str(face_chip())], 2, ("gpt",)),
    Case("models-filter-nothing", lambda tmp, env: ["models", "--filter", "zzz*"], 2, ("zzz",)),
    Case("option-unknown", lambda tmp, env: ["models", "--bogus"], 2, ("--bogus",)),
    Case("command-unknown", lambda tmp, env: ["frobnicate"], 2, ("frobnicate",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_bench_json_or_argument(case, tmp_path, capsys, env):
    run_case(case, tmp_path, capsys, env)


def test_merge_writes_everything_when_good(tmp_path, cli):
    r = cli("bench", "--merge", str(GOOD), "--markdown", str(tmp_path / "m.md"), "--json", str(tmp_path / "m.json"))
    assert r.code == 0, r.err
    assert (tmp_path / "m.md").is_file() and json.loads((tmp_path / "m.json").read_text())["merged_from"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
