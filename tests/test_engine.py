"""The generated C99 engine end to end: `export --target cortex-m` (its default engine), bit-exact with TFLite Micro on
all 500 embedded verification faces (host build), an exactly sized work buffer with guards (and AddressSanitizer),
the bundle's Makefile on emulated Cortex-M4 / Cortex-M7 / RV32IMC cores, budgets, verify, and c3ae_plain."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from c3ae_edge.export.mcu.derive import MEASURED
from c3ae_edge.export.provenance import RECORDS
from tests.conftest import edit_one_byte, repin

pytest.importorskip("tflite_micro", reason="tflite-micro not installed (pip extra 'mcu'): C99 engine not tested")
EXPECTED_UNVERIFIED = {*RECORDS, MEASURED["engine"][0]}  # records and measured figures: nothing derivable
pytestmark = pytest.mark.slow  # full MCU bundles, cross-compiled and run: outside the fast tier

WORK_BAR, FLASH_BAR, TFLM_ARENA = 49_152, 65_536, 164_336  # issue 20: <= 48 KB of SRAM, <= 64 KB of flash (M4, -Os)
CORES = ("cortex-m4", "cortex-m7", "rv32imc")
ENGINE_GENERATED = (
    "c3ae_model.h",
    "c3ae_mcu_model.h",
    "c3ae_mcu_model.c",
    "c3ae_engine_model.h",
    "c3ae_engine_model.c",
    "selftest_data.h",
    "selftest_data.c",
    "README.md",
)
ENGINE_COPIES = ("c3ae_engine.h", "c3ae_engine.c", "selftest.c", "Makefile", "c3ae_mcu.c", "c3ae_mcu.h")


@pytest.fixture(scope="module")
def bundle(cortex_m_bundle: Path) -> Path:
    if "engine" not in manifest(cortex_m_bundle):
        pytest.skip("no host C compiler (cc/gcc/clang): the C99 engine is not built")
    return cortex_m_bundle


def manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def test_engine_bundle_meets_the_bars(bundle: Path):
    m = manifest(bundle)
    e = m["engine"]
    assert m["target"]["engine"] == "c99" and e["kind"] == "c99" and e["generated_from"] == m["primary"]
    assert e["work_bytes"] <= WORK_BAR and e["tflm_arena_bytes"] >= 150_000  # the same graph under TFLM, measured
    assert f"#define C3AE_ENGINE_WORK_BYTES {e['work_bytes']} " in (bundle / "c3ae_engine_model.h").read_text()
    x = e["exactness"]
    assert x["faces"] == 60 and x["bit_exact_faces"] == 60 and x["max_lsb_per_face"] == 0 and not x["inexact_ops"]
    m4 = e["flash"]["cores"]["cortex-m4"]
    if "flash" in m4:
        assert m4["flash"] <= FLASH_BAR and m4["total"]["data"] == 0 and "-Os" in e["flash"]["flags"]
    plan = e["plan"]
    assert plan["layers"][1]["rows_held"] < plan["layers"][1]["output"][0]  # conv1 streams in row bands
    assert not plan["layers"][2]["kept_whole"] and [0, 2] in plan["passes"]  # SE1: mean pass, then recompute
    for name in e["sources"]:
        assert (bundle / name).is_file(), name
    for gone in ("main.cc", "c3ae_ops.h", "reference_infer.py"):
        assert not (bundle / gone).exists(), gone  # TFLM-only files, and a script that cannot run this graph
    assert "c3ae_trunk_tflite" not in (bundle / "c3ae_mcu_model.h").read_text()


def test_engine_readme_and_header_speak_of_this_bundle(bundle: Path):
    text = (bundle / "README.md").read_text()
    m = manifest(bundle)
    for absent in ("Raspberry", "onboard.py", "reference_infer", "pip install", "Postprocessing"):
        assert absent not in text, absent
    assert f"{m['engine']['work_bytes']:,} bytes" in text and "make qemu-m4" in text and "c3ae_age(" in text
    assert "emulated instruction counts, not time" in text and "DWT_CYCCNT" in text
    hdr = (bundle / "c3ae_model.h").read_text()
    assert '#define C3AE_HEAD_OUTPUT "features"' in hdr and "#define C3AE_CPU_HZ 480000000u" in hdr
    from c3ae_edge.export.manifest import Manifest
    from c3ae_edge.export.mcu.readme import engine_readme
    from c3ae_edge.export.targets import load_target

    for name, mhz in (("esp32s3", "240 MHz"), ("esp32c3", "160 MHz")):  # the same engine, the ESP cores' notes
        t = {k: v for k, v in load_target(name).to_dict().items() if k != "source"}
        esp = engine_readme(bundle, Manifest.from_dict({**m, "target": t}, "m"), m["engine"], None)
        assert "esp_cpu_get_cycle_count()" in esp and mhz in esp and "idf_component_register" in esp
        assert "DWT" not in esp and "add-dependency" not in esp  # no TFLite Micro component for the engine
        assert ("Xtensa LX7 compiler" in esp) == (name == "esp32s3")


def _verification_int8(spec, runner) -> np.ndarray:
    """The 500 embedded verification faces' crops as the trunk graph's int8 input (N, S, H, W, 3)."""
    from c3ae_edge.data.crops import aligned_box
    from c3ae_edge.data.imageio import load_rgb
    from c3ae_edge.export import default_faces

    crops = []
    for s in default_faces.samples("verification"):
        img = load_rgb(s.path)
        crops.append(spec.crop(img, aligned_box(img.shape[1], img.shape[0])))
    return runner.quantize(spec.normalize(np.stack(crops)))


def test_bit_exact_with_tflm_on_500_faces(bundle: Path, tmp_path: Path):
    """The host build of the bundle's engine against TFLM's interpreter on every crop of all 500 faces."""
    from c3ae_edge.data.crops import CropSpec
    from c3ae_edge.export.backends.tflm_runtime import TFLMRunner
    from c3ae_edge.export.engine.host import build_host

    m = manifest(bundle)
    runner = TFLMRunner(bundle / m["primary"])
    q = _verification_int8(CropSpec.from_dict(m["crop"]), runner)
    assert q.shape[:2] == (500, 3)
    flat = q.reshape(-1, *q.shape[2:])
    want = runner.features(flat).reshape(len(flat), -1)
    got = build_host(bundle, tmp_path).trunk(flat)
    per_face = np.abs(got.astype(int) - want).reshape(500, -1).max(1)
    assert int(per_face.max()) == 0, f"{int((per_face > 0).sum())} faces differ"


def test_exact_work_buffer_guarded_and_sanitized(bundle: Path, tmp_path: Path):
    """AddressSanitizer around a malloc of exactly C3AE_ENGINE_WORK_BYTES, and the self-test's guard words."""
    from c3ae_edge.export.engine.host import build_host
    from c3ae_edge.export.engine.verify import verify_engine

    flags = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g")
    probe = subprocess.run(
        ["cc", *flags, "-x", "c", "-", "-o", str(tmp_path / "p")],
        input="int main(void){}",
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        pytest.skip("the host compiler has no AddressSanitizer: the exact-size check runs through the guard words")
    host = build_host(bundle, tmp_path, flags)
    from c3ae_edge.data.crops import CropSpec
    from c3ae_edge.export.bundle_check import load_manifest

    man = load_manifest(bundle)
    x = CropSpec.from_dict(man.crop).normalize(np.load(bundle / "parity_crops.npy"))
    want = np.asarray(man.primary_artifact["golden"]["tflite-micro/reference"]["features"]["values"], np.int8)
    q = np.clip(np.round(np.moveaxis(x, -3, -1) / np.float32(man.input["scale"])) + man.input["zero_point"], -128, 127)
    got = host.trunk(q.astype(np.int8).reshape(-1, 64, 64, 3))
    assert np.array_equal(got, want.reshape(len(got), -1))
    assert verify_engine(bundle, man, x)["status"] == "bit-exact"
    if shutil.which("make"):
        r = subprocess.run(
            ["make", "-s", "-C", str(bundle), f"BUILD={tmp_path}/b", "host-test"], capture_output=True, text=True
        )
        last = json.loads(r.stdout.strip().splitlines()[-1])
        assert r.returncode == 0 and last["bit_exact"] and last["guard_intact"] and last["faces"] == 4


@pytest.fixture(scope="module")
def host_digest(bundle: Path, tmp_path_factory) -> str:
    if not shutil.which("make"):
        pytest.skip("make is not installed: the bundle's Makefile is not run")
    b = tmp_path_factory.mktemp("hostbuild")
    r = subprocess.run(["make", "-s", "-C", str(bundle), f"BUILD={b}", "host-test"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])["digest"]


@pytest.mark.parametrize("core", CORES)
def test_selftest_on_emulated_core(bundle: Path, host_digest: str, core: str, tmp_path: Path):
    """`make qemu-m4|qemu-m7|qemu-rv32` in the exported bundle: every face bit-exact with TFLM, the guards intact,
    the same features as the host build (digest), and instruction counts that the calibration loop confirms."""
    from c3ae_edge.export.engine import cross

    c = cross.BY_NAME[core]
    why = cross.run_missing(c)
    if why:
        pytest.skip(f"{core} not emulated: {why}")
    res = cross.selftest(bundle, c, tmp_path)
    s = res["summary"]
    assert res["exit"] == 0 and s["core"] == core and s["bit_exact"] and s["guard_intact"]
    assert s["digest"] == host_digest and s["faces"] == len(res["lines"]) == 4
    assert all(r["bit_exact"] and abs(r["age"] - r["golden_age"]) < 1e-3 for r in res["lines"])
    assert abs(s["calibration_instructions"] - s["calibration_expected"]) <= 64
    rec = manifest(bundle)["engine"]["selftest"]["cores"][core]
    assert rec["instructions_per_inference"] == s["instructions"]  # icount is deterministic: export == rerun
    assert 1e7 < s["trunk_instructions"] < s["instructions"]


def test_budget_fails_in_one_line(bundle: Path, tmp_path: Path):
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.engine.bundle import write_engine

    folder = tmp_path / "b"
    shutil.copytree(bundle, folder)
    m = manifest(folder)
    m["target"]["budget"] = {"work_bytes": m["engine"]["work_bytes"] - 4}
    with pytest.raises(
        VerificationError,
        match=r"^engine: work buffer [\d,]+ bytes exceeds target cortex-m's budget "
        r"work_bytes = [\d,]+$",
    ):
        write_engine(folder, m, faces=None)


def test_verify_cli_reruns_the_engine(bundle: Path):
    from tests.test_export import run_cli

    r = run_cli("verify", str(bundle))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "C99 engine (host build): features bit-exact with the golden ones on 8 faces" in r.stdout
    unverified = [ln.split(": ")[1] for ln in r.stdout.splitlines() if ln.startswith("  unverified: ")]
    assert set(unverified) == EXPECTED_UNVERIFIED, r.stdout  # every C source, header, README re-derived


def test_verify_rederives_every_generated_file(bundle: Path):
    from c3ae_edge.export.verify import verify_bundle

    rep = verify_bundle(bundle)
    bench = ("bench_qemu.json",) if (bundle / "bench_qemu.json").exists() else ()
    assert set(rep["derived"]) == {*ENGINE_GENERATED, *bench} and set(rep["copies"]) == set(ENGINE_COPIES)
    assert set(rep["unverified"]) == EXPECTED_UNVERIFIED, rep["unverified"]
    listed = {ln.split("  ")[1] for ln in (bundle / "SHA256SUMS").read_text().splitlines()}
    arts = {f for a in manifest(bundle)["artifacts"] for f in a["files"]}
    records = {"manifest.json", "parity_crops.npy", "calibration_files.txt"}
    assert listed == {*rep["derived"], *rep["copies"], *arts, *records}


def test_verify_names_an_edited_repinned_engine_section(bundle: Path, tmp_path: Path):
    """The manifest's engine section is recomputed from the artifact before the files made from it are compared."""
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.verify import verify_bundle

    b = shutil.copytree(bundle, tmp_path / bundle.name)
    m = manifest(b)
    m["engine"]["work_bytes"] -= 16
    (b / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    repin(b)
    with pytest.raises(VerificationError, match=r"manifest.json engine work_bytes: not what the artifact gives"):
        verify_bundle(b)


@pytest.mark.parametrize("name", [*ENGINE_GENERATED, *ENGINE_COPIES, "bench_qemu.json"])
def test_verify_names_an_edited_repinned_file(bundle: Path, tmp_path: Path, name: str):
    """Issue 24: one byte of a generated file (or a package copy) changed and every checksum and pin redone, as a
    forger without the key would: verify fails naming that file (before the engine is built from it)."""
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.verify import verify_bundle

    if not (bundle / name).exists():
        pytest.skip(f"{name}: not in this bundle (no core was emulated at export)")
    b = shutil.copytree(bundle, tmp_path / bundle.name)
    edit_one_byte(b / name)
    repin(b)
    with pytest.raises(VerificationError, match=rf": {re.escape(name)} differs from "):
        verify_bundle(b)


def test_verify_without_a_host_compiler_lists_the_selftest_data(bundle: Path, monkeypatch):
    """selftest_data.c needs the C library built on this host: without a compiler it is listed, not passed."""
    from c3ae_edge.export.engine import host
    from c3ae_edge.export.verify import verify_bundle

    monkeypatch.setattr(host, "host_cc", lambda: None)
    rep = verify_bundle(bundle)
    assert rep["unverified"]["selftest_data.c"].startswith("not re-derived here: no host C compiler")
    assert "selftest_data.c" not in rep["derived"] and rep["engine"]["status"].startswith("not run")


def test_bench_rows_are_emulated_instruction_counts(bundle: Path):
    from c3ae_edge.bench.report import load_doc, rows_of

    f = bundle / "bench_qemu.json"
    if not f.exists():
        pytest.skip("no core was emulated at export: no bench rows")
    rows = rows_of(load_doc(f))
    assert rows and all(not r.timed and r.extra["emulated"]["unit"].startswith("emulated instructions") for r in rows)


def test_plain_model_one_crop(tmp_path: Path):
    """c3ae_plain (one crop, no squeeze-excite): the whole trunk streams, bit-exact with TFLM."""
    from c3ae_edge.export.bundle import export_bundle

    b = export_bundle("cortex-m", model="c3ae_plain", out=tmp_path, n_cal=32, n_verify=30, log=lambda *_: None)
    e = manifest(b)["engine"]
    assert e["exactness"]["bit_exact_faces"] == 30 and e["work_bytes"] < 16_384
    assert "#define C3AE_MCU_CROPS 1" in (b / "c3ae_mcu_model.h").read_text()
    assert all(r["status"] == "bit-exact" or r["status"].startswith("not run") for r in e["selftest"]["cores"].values())
