"""`c3ae-edge sign` applies `export --sign`'s rule to an existing bundle (issue 19): a bundle whose manifest records a
runtime that did not verify it at export is refused in one line naming the bundle and the runtime, unless
--allow-unverified-runtime. The bundle is a real `export --target rpi` made where tflite-runtime's venv is not
prepared (so the manifest records it "not verified"); the keys are the session's real minisign keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a full export


@pytest.fixture(scope="module")
def unverified_bundle(tmp_path_factory) -> Path:
    from c3ae_edge.export.bundle import export_bundle

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("C3AE_RUNTIMES", str(tmp_path_factory.mktemp("no-runtimes")))  # tflite-runtime: not prepared
        out = tmp_path_factory.mktemp("unverified")
        return export_bundle("rpi", out=out, n_cal=40, n_verify=30, log=lambda *_: None)


def _statuses(b: Path) -> dict[str, str]:
    m = json.loads((b / "manifest.json").read_text())
    return {rid: row["status"] for a in m["artifacts"] for rid, row in a["runtimes"].items()}


def test_sign_refuses_a_bundle_that_a_runtime_did_not_verify(unverified_bundle, release_keys, tmp_path, cli):
    from c3ae_edge.release.sign import SIG_NAME, PublicKey, verify_signed_bundle

    b = shutil.copytree(unverified_bundle, tmp_path / unverified_bundle.name)
    st = _statuses(b)
    assert st["tflite-runtime/builtin"].startswith("not verified") and "verified" in st.values(), st
    r = cli("sign", str(b), "--key", str(release_keys["key"]))
    assert r.code == 2 and len(r.lines) == 1, r.err
    line = r.lines[0]
    assert str(b) in line and "tflite-runtime/builtin (not verified" in line, line
    assert "ai-edge-litert" not in line and "--allow-unverified-runtime" in line, line  # the verified one is not named
    assert not (b / SIG_NAME).exists()
    r = cli("sign", str(b), "--key", str(release_keys["key"]), "--allow-unverified-runtime")
    assert r.code == 0, r.err
    verify_signed_bundle(b, PublicKey.load(release_keys["pub"]))


def test_sign_checks_the_checksums_before_the_runtimes(unverified_bundle, release_keys, tmp_path, cli):
    """A tampered bundle is refused for what it is, with or without the flag."""
    b = shutil.copytree(unverified_bundle, tmp_path / unverified_bundle.name)
    with open(b / "README.md", "a") as f:
        f.write("\n")
    r = cli("sign", str(b), "--key", str(release_keys["key"]), "--allow-unverified-runtime")
    assert r.code != 0 and len(r.lines) == 1 and "checksum mismatch for README.md" in r.lines[0], r.err
