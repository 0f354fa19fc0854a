"""The TFLite Micro target: one export (measured arena, golden outputs, C sources), the C library run on this host
against the numpy/PyTorch pipeline on real faces, and the sources cross-compiled for Cortex-M4/M7 (-Werror)."""

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
from tests.conftest import DATA, edit_one_byte, repin

pytest.importorskip("tflite_micro", reason="tflite-micro not installed (pip extra 'mcu'): TFLM target not tested")

ARENA_BAR, FLASH_BAR = (
    170_000,
    64_000,
)  # issue 12: measured arena <= 170 KB, model flash <= 64 KB (decimal KB: the stricter)

TFLM_GENERATED = ("c3ae_model.h", "c3ae_mcu_model.h", "c3ae_mcu_model.c", "c3ae_ops.h", "README.md")
TFLM_COPIES = ("c3ae_mcu.c", "c3ae_mcu.h", "main.cc")
EXPECTED_UNVERIFIED = {*RECORDS, MEASURED["mcu"][0]}  # records and measured figures: nothing derivable
pytestmark = pytest.mark.slow  # full bundles, training or the data set: outside the fast tier

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "c3ae_mcu.h"
/* stdin: "crop W H CX CY SIDE\n" + W*H*3 bytes -> crops, then int8 inputs, on stdout;
          "decode\n" + CROPS*FEATURES int8 -> the age as text */
int main(void) {
    char mode[16];
    if (scanf("%15s", mode) != 1) return 1;
    if (mode[0] == 'c') {
        int w, h; double cx, cy, side;
        if (scanf("%d %d %lf %lf %lf", &w, &h, &cx, &cy, &side) != 5) return 1;
        getchar();
        static uint8_t img[1024 * 1024 * 3], crop[C3AE_MCU_CROPS][C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3];
        static int8_t q[C3AE_MCU_CROPS][C3AE_MCU_SIZE * C3AE_MCU_SIZE * 3];
        if (fread(img, 1, (size_t)w * h * 3, stdin) != (size_t)w * h * 3) return 2;
        for (int s = 0; s < C3AE_MCU_CROPS; s++) {
            if (c3ae_crop(img, w, h, w * 3, cx, cy, side, s, crop[s])) return 3;
            c3ae_quantize(crop[s], q[s]);
        }
        fwrite(crop, 1, sizeof crop, stdout);
        fwrite(q, 1, sizeof q, stdout);
        return 0;
    }
    getchar();
    static int8_t f[C3AE_MCU_CROPS][C3AE_MCU_FEATURES];
    if (fread(f, 1, sizeof f, stdin) != sizeof f) return 2;
    float bins[C3AE_MCU_BINS];
    printf("%.6f\n", (double)c3ae_decode((const int8_t (*)[C3AE_MCU_FEATURES])f, bins));
    return 0;
}
"""


@pytest.fixture(scope="module")
def bundle(cortex_m_bundle: Path, tmp_path_factory) -> Path:
    """What `export --target cortex-m --engine tflm` writes, from the shared conversion: the export's files before its
    backend step, then that step with the target's engine set to tflm (TFLMBackend.bundle_extras: arena search, C
    sources, sizes, README), the manifest with its "mcu" section and the export's own checksum step."""
    from c3ae_edge.export.backends.tflm_backend import BACKEND
    from c3ae_edge.export.bundle import _sums
    from c3ae_edge.export.manifest import Manifest

    m = manifest(cortex_m_bundle)
    if "mcu" in m:  # exported with --engine tflm already (no host C compiler)
        return cortex_m_bundle
    folder = tmp_path_factory.mktemp("tflm") / cortex_m_bundle.name
    folder.mkdir()
    art = m["artifacts"][0]
    for name in (*art["files"], "parity_crops.npy", "calibration_files.txt", "c3ae_model.h"):
        shutil.copyfile(cortex_m_bundle / name, folder / name)
    m.pop("engine")
    m["target"]["engine"] = "tflm"
    sections = BACKEND.bundle_extras(folder, m, log=lambda *_: None)
    (folder / "manifest.json").write_text(Manifest.from_dict({**m, **sections}, "manifest").to_json())
    _sums(folder)
    return folder


def manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def test_cortex_m_bundle_measured_and_verified(bundle: Path):
    m = manifest(bundle)
    art = m["artifacts"][0]
    assert (
        m["primary"] == "c3ae_full_int8.tflite"
        and art["backend"] == "tflm"
        and art["files"] == ["c3ae_full_int8.tflite", "c3ae_full_int8.head.json"]
    )
    assert (
        art["input"]["shape"] == [1, 64, 64, 3]
        and art["input"]["dtype"] == "int8"
        and art["outputs"][0]["dtype"] == "int8"
    )
    row = art["runtimes"]["tflite-micro/reference"]
    assert row["status"] == "verified" and row["verification"]["passed"] and row["verification"]["faces"] == 60
    golden = art["golden"]["tflite-micro/reference"]["features"]
    assert golden["dtype"] == "int8" and golden["shape"] == [8, 3, 2, 2, 32]
    mcu = m["mcu"]
    assert mcu["arena"]["bytes"] <= ARENA_BAR and mcu["arena"]["bytes"] == mcu["arena"]["allocations"]["total"]
    assert (
        mcu["flash"]["model_bytes"] <= FLASH_BAR
        and mcu["flash"]["flatbuffer_bytes"] == art["bytes"] - (bundle / art["files"][1]).stat().st_size
    )
    assert "TRANSPOSE" not in mcu["ops"] or mcu["ops"]["TRANSPOSE"] < 8
    hdr = (bundle / "c3ae_model.h").read_text()
    assert f"#define C3AE_TFLM_ARENA_BYTES {mcu['arena']['bytes']} " in hdr and hdr.rstrip().endswith(
        "#endif /* C3AE_MODEL_H */"
    )
    ops = (bundle / "c3ae_ops.h").read_text()
    assert f"#define C3AE_NUM_OPS {len(mcu['ops'])}" in ops and ops.count("if (r.Add") == len(mcu["ops"])
    data = (bundle / "c3ae_mcu_model.c").read_text()
    assert "const uint8_t c3ae_trunk_tflite[C3AE_MCU_MODEL_BYTES] C3AE_ALIGN16" in data and "aligned(16)" in data
    from c3ae_edge.export.mcu import op_names

    assert op_names((bundle / art["file"]).read_bytes()) and len(op_names((bundle / art["file"]).read_bytes())) == len(
        mcu["ops"]
    )


def test_tflm_rerun_matches_golden(bundle: Path):
    """The recorded TFLM golden outputs are what the interpreter gives for the parity faces again."""
    from c3ae_edge.data.crops import CropSpec
    from c3ae_edge.export.backends.tflm_backend import TFLMRunner
    from c3ae_edge.export.crosscheck import compare_golden

    m = manifest(bundle)
    x = CropSpec.from_dict(m["crop"]).normalize(np.load(bundle / "parity_crops.npy"))
    r = TFLMRunner(bundle / m["primary"])
    assert compare_golden(r.raw(x), m["artifacts"][0]["golden"]["tflite-micro/reference"])["exact"]
    assert (
        np.abs(r.run(x)["age"] - np.asarray(m["parity_set"]["pytorch_age"])).max()
        <= m["artifacts"][0]["tolerance_years"]
    )


@pytest.fixture(scope="module")
def host_driver(bundle: Path, tmp_path_factory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        pytest.skip("no host C compiler (gcc): the C library is not run")
    d = tmp_path_factory.mktemp("cdrv")
    (d / "driver.c").write_text(DRIVER)
    exe = d / "driver"
    r = subprocess.run(
        [
            gcc,
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-ffp-contract=off",
            f"-I{bundle}",
            str(d / "driver.c"),
            str(bundle / "c3ae_mcu.c"),
            str(bundle / "c3ae_mcu_model.c"),
            "-lm",
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return exe


def _faces(n: int):
    import csv

    rows = list(csv.DictReader((DATA / "utkface" / "labels.csv").open()))
    return [
        DATA / "utkface" / r[next(k for k in r if k in ("file", "path", "image"))]
        for r in rows[:: max(1, len(rows) // n)][:n]
    ]


def test_c_library_matches_numpy_pipeline_on_real_faces(bundle: Path, host_driver: Path):
    """C crops equal reference_infer's numpy crops and OpenCV's within one grey level (aligned, edge-padded and
    enlarged boxes), C's int8 input equals the runner's quantisation of those crops, and the C decode gives the
    runner's age."""
    import importlib.util

    from c3ae_edge.board import board_script
    from c3ae_edge.data.crops import CropSpec
    from c3ae_edge.data.imageio import load_rgb
    from c3ae_edge.export.backends.tflm_backend import TFLMRunner

    assert not (bundle / "reference_infer.py").exists()  # it cannot run a trunk-only graph: not in MCU bundles
    spec_ = importlib.util.spec_from_file_location("ref_infer", board_script("reference_infer.py"))
    ref = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(ref)
    m = manifest(bundle)
    spec = CropSpec.from_dict(m["crop"])
    runner = TFLMRunner(bundle / m["primary"])
    worst_crop, worst_cv2, worst_q, ages = 0, 0, 0, []
    for path in _faces(6):
        img = load_rgb(str(path))
        h, w = img.shape[:2]
        cx, cy, side = ref.aligned_box(w, h, m["face_box"]["aligned_chip"])
        for box in (
            (cx, cy, side),
            (8.3, h - 5.6, side),
            (cx, cy, 40.0),
        ):  # aligned; mostly outside (edge padding); enlarged
            r = subprocess.run(
                [str(host_driver)],
                input=f"crop {w} {h} {box[0]!r} {box[1]!r} {box[2]!r}\n".encode() + img.tobytes(),
                capture_output=True,
            )
            assert r.returncode == 0, r.stderr
            k = len(spec.scales) * spec.size * spec.size * 3
            crops = np.frombuffer(r.stdout[:k], np.uint8).reshape(len(spec.scales), spec.size, spec.size, 3)
            q = np.frombuffer(r.stdout[k:], np.int8).reshape(crops.shape)
            want = np.stack(
                [
                    ref.resize(ref.cut(img, int(round(box[0] - n / 2)), int(round(box[1] - n / 2)), n), spec.size)
                    for n in (max(2, int(round(box[2] * s))) for s in spec.scales)
                ]
            )
            worst_crop = max(worst_crop, int(np.abs(crops.astype(int) - want).max()))
            worst_cv2 = max(
                worst_cv2, int(np.abs(crops.astype(int) - spec.crop(img, box)).max())
            )  # OpenCV: what training used
            scale, zp = runner._q(runner.inp)
            qc = np.clip(np.round(spec.normalize(crops).transpose(0, 2, 3, 1) / np.float32(scale)) + zp, -128, 127)
            worst_q = max(worst_q, int(np.abs(q.astype(int) - qc).max()))
            feats = runner.raw(spec.normalize(crops)[None])["features"]
            r = subprocess.run([str(host_driver)], input=b"decode\n" + feats.tobytes(), capture_output=True)
            assert r.returncode == 0, r.stderr
            ages.append((float(r.stdout), float(runner.run(spec.normalize(crops)[None])["age"][0])))
    assert worst_crop <= 1 and worst_cv2 <= 1 and worst_q == 0
    c, py = np.array(ages).T
    assert np.abs(c - py).max() <= 1e-3


def test_c_pipeline_age_vs_pytorch(bundle: Path, host_driver: Path):
    """Frame + box -> C crops and int8 inputs -> TFLM trunk -> C decode, against PyTorch on the same faces."""
    import torch

    from c3ae_edge.data.crops import CropSpec
    from c3ae_edge.data.imageio import load_rgb
    from c3ae_edge.export.backends.tflm_backend import TFLMRunner
    from c3ae_edge.weights import load_model

    m = manifest(bundle)
    spec = CropSpec.from_dict(m["crop"])
    runner, model = TFLMRunner(bundle / m["primary"]), load_model()[0]
    diffs = []
    for path in _faces(6):
        img = load_rgb(str(path))
        h, w = img.shape[:2]
        box = (0.495 * w, 0.44 * h, 0.84 * min(w, h))
        r = subprocess.run(
            [str(host_driver)],
            input=f"crop {w} {h} {box[0]!r} {box[1]!r} {box[2]!r}\n".encode() + img.tobytes(),
            capture_output=True,
        )
        k = len(spec.scales) * spec.size * spec.size * 3
        q = np.frombuffer(r.stdout[k:], np.int8).reshape(len(spec.scales), spec.size, spec.size, 3)
        feats = []
        for s in range(len(q)):
            runner.interp.set_input(q[s][None], 0)
            runner.interp.invoke()
            feats.append(runner.interp.get_output(0)[0])
        r = subprocess.run([str(host_driver)], input=b"decode\n" + np.stack(feats).tobytes(), capture_output=True)
        with torch.no_grad():
            want = float(model(torch.from_numpy(spec.model_input(img, box)[None]))[0])
        diffs.append(abs(float(r.stdout) - want))
    assert max(diffs) <= m["artifacts"][0]["tolerance_years"], diffs


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m0plus"])
def test_cross_compiles_for_cortex_m(bundle: Path, core: str, tmp_path: Path):
    from c3ae_edge.export.mcu import C_SOURCES, CFLAGS, CPUS

    gcc = shutil.which("arm-none-eabi-gcc")
    if not gcc:
        pytest.skip(
            "arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi): cross-compile not tested"
        )
    for src in C_SOURCES:
        r = subprocess.run(
            [gcc, *CFLAGS, *CPUS[core], "-c", str(bundle / src), "-o", str(tmp_path / (src + ".o"))],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
    sizes = manifest(bundle)["mcu"]["cross_compile"]["cores"][core]["total"]
    assert (
        sizes["rodata"] + sizes["text"] >= manifest(bundle)["mcu"]["flash"]["flatbuffer_bytes"] and sizes["data"] == 0
    )


def test_verify_cli_reruns_tflm_golden(bundle: Path):
    from tests.test_export import run_cli

    r = run_cli("verify", str(bundle))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "under tflite-micro/reference" in r.stdout and "golden outputs bit-exact" in r.stdout
    unverified = [ln.split(": ")[1] for ln in r.stdout.splitlines() if ln.startswith("  unverified: ")]
    assert set(unverified) == EXPECTED_UNVERIFIED, r.stdout  # every C source, header, README re-derived


def test_verify_rederives_every_tflm_file(bundle: Path):
    from c3ae_edge.export.verify import verify_bundle

    rep = verify_bundle(bundle)
    assert set(rep["derived"]) == set(TFLM_GENERATED) and set(rep["copies"]) == set(TFLM_COPIES)
    assert set(rep["unverified"]) == EXPECTED_UNVERIFIED, rep["unverified"]
    listed = {ln.split("  ")[1] for ln in (bundle / "SHA256SUMS").read_text().splitlines()}
    arts = set(manifest(bundle)["artifacts"][0]["files"])
    records = {"manifest.json", "parity_crops.npy", "calibration_files.txt"}
    assert listed == {*rep["derived"], *rep["copies"], *arts, *records}


def test_verify_names_an_edited_repinned_mcu_section(bundle: Path, tmp_path: Path):
    """The manifest's mcu section is recomputed from the artifact before the files made from it are compared."""
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.verify import verify_bundle

    b = shutil.copytree(bundle, tmp_path / bundle.name)
    m = manifest(b)
    m["mcu"]["arena"]["bytes"] -= 16
    (b / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    repin(b)
    with pytest.raises(VerificationError, match=r"manifest.json mcu arena: not what the artifact gives"):
        verify_bundle(b)


@pytest.mark.parametrize("name", [*TFLM_GENERATED, *TFLM_COPIES])
def test_verify_names_an_edited_repinned_file(bundle: Path, tmp_path: Path, name: str):
    """Issue 24: one byte of a generated file (or a package copy) changed and every checksum and pin redone, as a
    forger without the key would: verify fails naming that file."""
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.verify import verify_bundle

    b = shutil.copytree(bundle, tmp_path / bundle.name)
    edit_one_byte(b / name)
    repin(b)
    with pytest.raises(VerificationError, match=rf": {re.escape(name)} differs from "):
        verify_bundle(b)


def test_budget_is_checked(bundle: Path, tmp_path: Path):
    """A part whose arena budget is below the measured arena fails the export's check with one line; bad budgets are
    refused."""
    from c3ae_edge.errors import UsageError, VerificationError
    from c3ae_edge.export.mcu import write_sources
    from c3ae_edge.export.targets import parse

    folder = tmp_path / "b"
    shutil.copytree(bundle, folder)
    m = manifest(folder)
    m["target"]["budget"] = {"arena_bytes": m["mcu"]["arena"]["bytes"] - 16}
    with pytest.raises(VerificationError, match=r"arena bytes [\d,]+ exceeds target cortex-m's budget"):
        write_sources(folder, m, log=lambda *_: None)
    toml = (
        'name = "b"\ndescription = "d"\narch = "a"\nbackend = "tflm"\nprecisions = ["int8"]\n'
        "[budget]\narena_bytes = -5\n"
    )
    with pytest.raises(UsageError, match="budget values must be positive integers"):
        parse(toml, "b.toml")
    assert parse(toml.replace("-5", "65536"), "b.toml").budget == {"arena_bytes": 65536}


def test_tflm_readme_speaks_of_this_bundle_and_core(bundle: Path):
    """No Raspberry Pi, no script that cannot run the graph, the measured figures; the ESP32-S3 gets ESP-IDF notes,
    CCOUNT and 240 MHz, not the Cortex-M DWT (the README is rebuilt from the manifest with that target)."""
    from c3ae_edge.export.manifest import Manifest
    from c3ae_edge.export.mcu.readme import tflm_readme
    from c3ae_edge.export.targets import load_target

    text = (bundle / "README.md").read_text()
    m = manifest(bundle)
    for absent in ("Raspberry", "onboard.py", "reference_infer", "pip install", "Postprocessing", "73,131"):
        assert absent not in text, absent
    assert f"{m['mcu']['arena']['bytes']:,} bytes" in text and "DWT_CYCCNT" in text and "-Werror" in text
    assert "tflite-micro Python package" in text and '"features"' in text
    hdr = (bundle / "c3ae_model.h").read_text()
    assert '#define C3AE_HEAD_OUTPUT "features"' in hdr and "#define C3AE_HAS_AGE_OUTPUT 0" in hdr
    s3 = {k: v for k, v in load_target("esp32s3").to_dict().items() if k != "source"}
    esp = tflm_readme(bundle, Manifest.from_dict({**m, "target": s3}, "m"), {**m["mcu"], "cross_compile": {}})
    assert "esp_cpu_get_cycle_count()" in esp and "240 MHz" in esp and "idf_component_register" in esp
    assert "esp-tflite-micro" in esp and "DWT" not in esp and "cortex-m4" not in esp
    main = (bundle / "main.cc").read_text()
    assert "app_main" in main and "esp_cpu_get_cycle_count" in main and "480000000" not in main
