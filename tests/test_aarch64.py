"""Run with -m aarch64 or C3AE_ARM64_ROOT (.ci/run builds a fresh root and sets it): the rpi bundle's
reference_infer.py and onboard.py in the emulated arm64 root (bench/aarch64/build_root.sh) under tflite-runtime 2.14
and ai-edge-litert, against the x86 runs of the same runtimes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench" / "aarch64"))
import emulated  # noqa: E402

pytestmark = [pytest.mark.aarch64, pytest.mark.slow]


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory, request) -> Path:
    """The rpi bundle (C3AE_ARM64_BUNDLE to reuse one, else the session's shared export) staged with onboard.py, as
    on a Pi."""
    root = emulated.root_path()
    assert emulated.root_ready(root), f"{root}: no complete arm64 root: run bench/aarch64/build_root.sh (once)"
    assert os.geteuid() == 0, "the emulated root needs root (unshare, mount, chroot)"
    b = os.environ.get("C3AE_ARM64_BUNDLE")
    return emulated.stage(Path(b) if b else request.getfixturevalue("rpi_bundle"), tmp_path_factory.mktemp("board"))


@pytest.mark.parametrize("board", ["rpi4", "rpi5"])
@pytest.mark.parametrize("runtime", sorted(emulated.GUEST_VENVS))
def test_emulated_pi_self_test_passes_and_matches_x86(board_dir: Path, runtime: str, board: str, record_property):
    """On an emulated Pi 4 and Pi 5, under tflite-runtime 2.14 and ai-edge-litert, the bundle's own self-test passes:
    bit for bit against the goldens export recorded on that Pi (where it had the root), on the age tolerance
    elsewhere, with the closest golden's difference reported."""
    assert emulated.host_problem(runtime) is None, emulated.host_problem(runtime)
    host, guest = emulated.run_both(board_dir, runtime, board, emulated.root_path())
    assert host.error is None and guest.error is None, (host.error, guest.error)
    rows = emulated.compare(host, guest)
    man = json.loads((board_dir / "bundle" / "manifest.json").read_text())
    assert {r["artifact"] for r in rows} == {a["file"] for a in man["artifacts"] if a["file"].endswith(".tflite")}
    for r in rows:
        record_property(f"{runtime}:{board}:{r['artifact']}", json.dumps(r))
        print(json.dumps(r))
        assert r["version_x86"] == r["version_aarch64"]
        # the same delegate decision on both ISAs: tflite-runtime 2.14 never puts int8 on XNNPACK;
        # ai-edge-litert does by default
        assert r["delegate_x86"] == r["delegate_aarch64"]
        if "int8" in r["artifact"]:
            assert r["delegate_aarch64"] == ("builtin" if runtime == "tflite-runtime" else "xnnpack")
        assert r["passed_aarch64"] and r["max_abs_age_diff_vs_pytorch_aarch64"] <= r["tolerance_years"], r
        assert r["passed_x86"] and r["max_abs_age_diff_aarch64_vs_x86"] <= r["tolerance_years"], r
    for st in guest.self_test:
        art = next(a for a in man["artifacts"] if a["file"] == st["artifact"])
        here = f"{st['runtime_id']}@{board}"
        if here in art["golden"]:  # export recorded this Pi's outputs: they must hold bit for bit
            assert st["golden"] == here and st["bit_exact"], st
        else:  # recorded elsewhere (x86, or the other Pi): information only, never a failure
            assert st["golden"].startswith("none for") and st["closest"] in art["golden"], st
    for g in guest.onboard:  # the board runner, emulated: runtime, delegate and the age check recorded per row
        assert (
            g["runtime"] == runtime
            and g["threads"] == 1
            and g["parity"]["faces"] == len(man["parity_set"]["pytorch_age"])
        )
        assert g["delegate"]["name"] == next(
            r["delegate_aarch64"] for r in rows if r["artifact"] == g["artifact"]["file"]
        )
    assert len(guest.onboard) == len(rows)
