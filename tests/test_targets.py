"""Target profiles and the export's bad-input paths: one line on stderr, non-zero exit, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, FACES, HAVE_DATA, ROOT

from c3ae_edge.errors import DataError, UsageError

CLI = [sys.executable, "-m", "c3ae_edge.cli"]
ENV = dict(os.environ)  # C3AE_DATA as tests/conftest.py set it


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, env=env or ENV, timeout=600)


def one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr[-1500:])
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("c3ae-edge:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-1500:]
    return lines[0]


def test_builtin_targets_and_aliases():
    from c3ae_edge.export.targets import builtin, load_target

    t = builtin()
    assert {"rpi4", "rpi5", "x86", "gpu", "generic"} <= set(t)
    for name in ("rpi4", "rpi5"):
        assert (t[name].arch, t[name].backend, t[name].primary, t[name].delegate, t[name].threads) == (
            "aarch64",
            "tflite",
            "int8",
            "xnnpack",
            4,
        )
    assert load_target("rpi").name == "rpi4"
    from c3ae_edge.export.rewrite import VARIANTS
    from c3ae_edge.export.targets import REWRITES

    assert set(REWRITES) == set(VARIANTS)  # the names targets accept are the rewrites that exist
    assert all(t[n].int8_rewrites == ("dwpool",) for n in ("rpi4", "rpi5", "x86")) and t["gpu"].int8_rewrites == ()
    assert t["gpu"].backend == "onnx" and {"fp32", "fp16"} <= set(t["gpu"].precisions)


def test_targets_command_lists_what_each_produces():
    r = run_cli("targets")
    assert r.returncode == 0, r.stderr
    assert "rpi4 (alias rpi)" in r.stdout and "<model>_int8.tflite, <model>_fp32.tflite" in r.stdout
    r = run_cli("export", "--help")
    assert "tflite (.tflite: fp32/int8" in " ".join(r.stdout.split())


def test_user_board_toml(tmp_path: Path):
    from c3ae_edge.export.targets import load_target

    p = tmp_path / "myboard.toml"
    p.write_text(
        'name = "jetson"\ndescription = "my board"\narch = "aarch64"\nbackend = "onnx"\nprecisions = ["int8"]\n'
        "threads = 2\n"
        "max_int8_mae_delta = 0.2\n"
    )
    t = load_target(str(p))
    assert (t.name, t.backend, t.precisions, t.threads, t.max_int8_mae_delta) == ("jetson", "onnx", ("int8",), 2, 0.2)


@pytest.mark.parametrize(
    "body, msg",
    [
        (
            'name = "b"\ndescription = "d"\narch = "a"\nbackend = "onnx"\nprecisions = ["fp32"]\nthread = 4\n',
            "unknown field(s) thread",
        ),
        (
            'name = "b"\ndescription = "d"\narch = "a"\nbackend = "onnx"\nprecisions = ["fp32"]\nthreads = "4"\n',
            "field 'threads' must be int",
        ),
        (
            'name = "b"\ndescription = "d"\narch = "a"\nbackend = "no-such-backend"\nprecisions = ["fp32"]\n',
            "backend 'no-such-backend' is not one of",
        ),
        (
            'name = "b"\ndescription = "d"\narch = "a"\nbackend = "tflite"\nprecisions = ["fp16"]\n',
            "precisions ['fp16'] must be",
        ),
        ('name = "b"\narch = "a"\nbackend = "onnx"\nprecisions = ["fp32"]\n', "missing field(s) description"),
        ('name = "b\n', "not valid TOML"),
        (
            'name = "b"\ndescription = "d"\narch = "a"\nbackend = "onnx"\nprecisions = ["int8"]\n'
            'int8_rewrites = ["fuse"]\n',
            "int8_rewrites ['fuse'] unknown",
        ),
    ],
)
def test_bad_board_toml(tmp_path: Path, body: str, msg: str):
    from c3ae_edge.export.targets import load_target

    p = tmp_path / "board.toml"
    p.write_text(body)
    with pytest.raises(
        UsageError,
        match="board.toml: " + msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]"),
    ):
        load_target(str(p))


def test_cli_bad_inputs_are_one_line(tmp_path: Path, cli):
    """In this process (the entry point's own error handling), one line each."""
    line = one_line_error(cli("export", "--target", "pi9"))
    assert line.startswith(
        "c3ae-edge: error: unknown target 'pi9'; known: cortex-m (mcu/stm32h7), esp32c3, esp32s3, generic"
    )
    bad = tmp_path / "b.toml"
    bad.write_text(
        'name = "b"\ndescription = "d"\narch = "a"\nbackend = "onnx"\nprecisions = ["fp32"]\ncolour = "red"\n'
    )
    assert "unknown field(s) colour" in one_line_error(cli("export", "--target", str(bad)))
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert "cannot create the output folder" in one_line_error(
        cli("export", "--target", "generic", "--out", str(blocker / "sub"))
    )
    assert "calibration needs at least 32 faces" in one_line_error(
        cli("export", "--target", "generic", "--out", str(tmp_path), "--calibration-count", "5")
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_error(
        cli(
            "export", "--target", "generic", "--out", str(tmp_path), "--calibration", str(empty), "--verify-count", "20"
        )
    )
    assert "0 usable face(s), need at least 32" in line
    assert "no such bundle folder" in one_line_error(cli("verify", str(tmp_path / "nope")))
    assert "no SHA256SUMS" in one_line_error(cli("verify", str(empty)), code=3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing half-written


def test_missing_extra_names_the_pip_command(tmp_path: Path):
    code = (
        "import sys; sys.modules['litert_torch'] = None; from c3ae_edge.cli import main; "
        f"sys.argv = ['c3ae-edge', 'export', '--target', 'rpi', '--out', {str(tmp_path)!r}]; main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    line = one_line_error(r)
    assert (
        line == "c3ae-edge: error: this needs the 'tflite' extra (litert_torch is not installed): "
        "pip install 'c3ae-edge[tflite]'"
    )


def test_user_calibration_csv_must_not_be_tiny(tmp_path: Path):
    from c3ae_edge.data.crops import CropSpec
    from c3ae_edge.export.calibration import select
    from c3ae_edge.weights import WEIGHTS_DIR

    csv = tmp_path / "cal.csv"
    imgs = sorted((FACES / "images").glob("*.jpg"))[:10]
    (tmp_path / "images").symlink_to(FACES / "images")  # CSV paths stay inside the CSV's folder (issue 10)
    csv.write_text("file,age\n" + "".join(f"images/{p.name},30\n" for p in imgs))
    with pytest.raises(
        DataError, match=r"cal.csv: \d usable face\(s\), need at least 32"
    ):  # test-split faces dropped too
        select(CropSpec(), WEIGHTS_DIR / "c3ae_full.pt", str(DATA) if HAVE_DATA else None, str(csv), 300, 20)


@pytest.mark.slow
def test_ctrl_c_leaves_no_partial_bundle(tmp_path: Path):
    p = subprocess.Popen(
        [
            *CLI,
            "export",
            "--target",
            "generic",
            "--out",
            str(tmp_path),
            "--calibration-count",
            "64",
            "--verify-count",
            "300",
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(x.name.startswith(".") for x in tmp_path.iterdir()):
        time.sleep(0.2)  # wait until the export has started writing its temporary folder
    assert any(x.name.startswith(".") for x in tmp_path.iterdir()), "export never started writing"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-1500:]
    assert "Traceback" not in err, err[-3000:]  # known gap: the "c3ae-edge: interrupted" line is not always printed
    assert list(tmp_path.iterdir()) == []
