"""export never silently replaces a signed bundle or one from other weights, says what it replaced, and writes only
bundles its own verify accepts (issue 24, classes 7 and 8). Real exports of the suite's small ONNX target."""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import DATA, HAVE_DATA, TINY_TARGET, copy_bundle, one_line_error


@pytest.fixture
def target(tmp_path):
    t = tmp_path / "tiny.toml"
    t.write_text(TINY_TARGET)
    return t


def _export(cli, target, out, *extra):
    data = ["--data", str(DATA)] if HAVE_DATA else []
    return cli(
        "export",
        "--target",
        str(target),
        "--out",
        str(out),
        "--calibration-count",
        "32",
        "--verify-count",
        "3",
        *data,
        *extra,
    )


@pytest.mark.slow  # two real exports
def test_signed_or_other_weights_bundle_needs_force(tmp_path, cli, target, tiny_bundle):
    from c3ae_edge.release.sign import SecretKey, sign_bundle, write_keypair

    out = tmp_path / "out"
    b = copy_bundle(tiny_bundle, out / tiny_bundle.name)
    sec, _, _ = write_keypair(tmp_path / "k", unencrypted=True)
    sign_bundle(b, SecretKey.load(sec))
    before = sorted(p.name for p in b.iterdir())
    r = _export(cli, target, out)
    one_line_error(r, 2, ("signed", "--force"))
    assert sorted(p.name for p in b.iterdir()) == before and (b / "SHA256SUMS.minisig").is_file()
    (b / "SHA256SUMS.minisig").unlink()  # unsigned now, but from other weights
    m = json.loads((b / "manifest.json").read_text())
    m["model"]["weights_sha256"] = "ab" * 32
    (b / "manifest.json").write_text(json.dumps(m))
    one_line_error(_export(cli, target, out), 2, ("other weights (abababababab)", "--force"))
    r = _export(cli, target, out, "--force")
    assert r.code == 0, r.err
    assert "replaced" in r.err and "weights abababababab" in r.err, r.err
    assert json.loads((b / "manifest.json").read_text())["model"]["weights_sha256"] != "ab" * 32
    r = _export(cli, target, out)  # same weights, unsigned: replaced, and said so
    assert r.code == 0 and f"replaced {b}" in r.err, r.err


def test_a_folder_that_is_not_a_bundle_is_never_replaced(tmp_path, cli, target, tiny_bundle):
    out = tmp_path / "out"
    mine = out / tiny_bundle.name
    mine.mkdir(parents=True)
    (mine / "keep.txt").write_text("mine")
    for extra in ((), ("--force",)):
        one_line_error(_export(cli, target, out, *extra), 2, ("not a c3ae-edge bundle", "refusing"))
    assert sorted(p.name for p in out.iterdir()) == [tiny_bundle.name] and (mine / "keep.txt").read_text() == "mine"


def test_failed_export_leaves_no_empty_out(tmp_path, cli, target):
    out = tmp_path / "new" / "out"
    r = _export(cli, target, out, "--calibration", str(tmp_path / "no-such-faces"))
    assert r.code != 0 and "Traceback" not in r.err, r.err
    assert not (tmp_path / "new").exists()


def test_export_writes_only_what_verify_accepts(tmp_path, tiny_bundle):
    """The last gate before the rename is verify's own code: a bundle it rejects (here a parity face moved beyond the
    tolerance, as an --allow-degraded int8 face 8 years off was) is not written, and says why."""
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.bundle import ExportRequest, _seal, _sums

    tmp = copy_bundle(tiny_bundle, tmp_path / "out" / ".x.tmp")
    (tmp / "SHA256SUMS").unlink()
    m = json.loads((tmp / "manifest.json").read_text())
    m["parity_set"]["pytorch_age"][0] += 8.0
    (tmp / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    final = tmp_path / "out" / tiny_bundle.name
    req = ExportRequest("x86", allow_degraded=True)
    with pytest.raises(VerificationError, match="would fail its own verify; nothing written.*tolerance cap"):
        _seal(tmp, final, req, log=lambda m: None)
    assert not final.exists()
    shutil.rmtree(tmp)
    tmp = copy_bundle(tiny_bundle, tmp_path / "out" / ".y.tmp")
    _sums(tmp)
    _seal(tmp, final, ExportRequest("x86"), log=lambda m: None)  # the good one goes through
    assert (final / "manifest.json").is_file()
