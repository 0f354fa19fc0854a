"""Ctrl-C at several points, a full disk, and two exports racing for one bundle: one line, nothing half-written,
earlier good files untouched."""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, TINY_TARGET, UTK, copy_bundle, face_chip, one_line_error, run_main, snapshot

GOOD_BENCH = ROOT / "bench" / "results" / "x86.json"


@pytest.fixture
def ctrl_c(monkeypatch):
    """``ctrl_c(module, name)``: that function receives a real SIGINT when called (Python's own handler raises)."""
    monkeypatch.setattr(signal, "signal", signal.signal)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)

    def arm(module, name):
        def interrupted(*a, **k):
            signal.raise_signal(signal.SIGINT)
            raise AssertionError("SIGINT did not interrupt")

        monkeypatch.setattr(module, name, interrupted)

    yield arm
    signal.signal(signal.SIGINT, old)


def _interrupted(r):
    one_line_error(r, 130, ())
    assert r.lines[-1] == "c3ae-edge: interrupted", r.err


def _good_files(tmp: Path) -> None:
    (tmp / "keep").mkdir()
    (tmp / "keep" / "report.json").write_text('{"mae": 4.2}\n')


def test_ctrl_c_in_predict(tmp_path, capsys, env, ctrl_c):
    from c3ae_edge import predict

    ctrl_c(predict.AgePredictor, "predict_image")
    _interrupted(run_main(["predict", "--aligned", str(face_chip())], capsys))


def test_ctrl_c_in_evaluate_keeps_the_old_report(tmp_path, capsys, env, ctrl_c):
    from c3ae_edge.train import evaluate

    _good_files(tmp_path)
    before = snapshot(tmp_path)
    ctrl_c(evaluate, "predict_samples")
    _interrupted(
        run_main(
            ["evaluate", "--data", f"utkface:{UTK}", "--limit", "4", "--json", str(tmp_path / "keep" / "report.json")],
            capsys,
        )
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["select", "rewrite", "convert"])
def test_ctrl_c_in_export_leaves_the_old_bundle(where, tmp_path, capsys, env, ctrl_c, tiny_bundle):
    from c3ae_edge.export import calibration, rewrite
    from c3ae_edge.export.backends import onnx_backend

    old = copy_bundle(tiny_bundle, tmp_path / "exports" / "c3ae_full-0.1.0-tiny")
    (tmp_path / "tiny.toml").write_text(TINY_TARGET)
    before = snapshot(tmp_path)
    ctrl_c(
        *{
            "select": (calibration, "select"),
            "rewrite": (rewrite, "apply"),
            "convert": (onnx_backend.BACKEND, "export"),
        }[where]
    )
    r = run_main(
        [
            "export",
            "--target",
            str(tmp_path / "tiny.toml"),
            "--out",
            str(tmp_path / "exports"),
            "--calibration-count",
            "32",
            "--verify-count",
            "3",
            "--json",
        ],
        capsys,
    )
    _interrupted(r)
    assert snapshot(tmp_path) == before and (old / "manifest.json").is_file()


def test_ctrl_c_in_training_keeps_the_checkpoints(tmp_path, capsys, env, ctrl_c, tiny_run):
    from c3ae_edge.train import loop as train

    run = shutil.copytree(tiny_run, tmp_path / "run")
    pts = {p.name: p.read_bytes() for p in run.glob("*.pt")}
    ctrl_c(train, "_train_epoch")
    _interrupted(
        run_main(
            [
                "train",
                "--out",
                str(run),
                "--resume",
                "--model",
                "c3ae_plain",
                "--data",
                f"utkface:{UTK}",
                "--limit",
                "96",
                "--epochs",
                "2",
                "--no-compile",
            ],
            capsys,
        )
    )
    assert {p.name: p.read_bytes() for p in run.glob("*.pt")} == pts
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_ctrl_c_in_bench_merge_writes_nothing(tmp_path, capsys, env, ctrl_c):
    from c3ae_edge.bench import report

    _good_files(tmp_path)
    before = snapshot(tmp_path)
    ctrl_c(report, "plot")
    _interrupted(run_main(["bench", "--merge", str(GOOD_BENCH), "--markdown", str(tmp_path / "keep" / "t.md")], capsys))
    assert snapshot(tmp_path) == before


def test_ctrl_c_in_verify(tmp_path, capsys, env, ctrl_c, tiny_bundle):
    from c3ae_edge.export import bundle_check

    ctrl_c(bundle_check, "sha256")
    _interrupted(run_main(["verify", str(tiny_bundle)], capsys))


@pytest.mark.slow  # a real converter run in a child process
def test_real_sigint_during_a_real_export(tmp_path):
    """A real Ctrl-C (SIGINT to the process) while the converter runs: 'interrupted', exit 130, nothing left."""
    (tmp_path / "tiny.toml").write_text(TINY_TARGET)
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "c3ae_edge.cli",
            "export",
            "--target",
            str(tmp_path / "tiny.toml"),
            "--out",
            str(tmp_path / "out"),
            "--calibration-count",
            "32",
            "--verify-count",
            "3",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    first = p.stderr.readline()  # "faces: ..." is logged right before the conversion starts
    assert first.startswith("faces:"), first
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    assert p.wait(60) == 130, rest
    assert rest.strip().splitlines() == ["c3ae-edge: interrupted"], rest
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ------------------------------------------------------------------ a full disk


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a filesystem with no space (and no inodes) left: a tiny tmpfs when this machine lets us mount one,
    else every write under it fails with ENOSPC (simulated). Callers may put files there first via ``fill``."""
    root = tmp_path / "full"
    root.mkdir()
    mounted = (
        bool(shutil.which("mount"))
        and not os.environ.get("C3AE_TEST_NO_MOUNT")
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=64", "tmpfs", str(root)], capture_output=True
        ).returncode
        == 0
    )

    def fill():
        if mounted:
            with open(root / ".ballast", "wb", buffering=0) as f, pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 4096)
            k = 0
            with pytest.raises(OSError):
                while True:
                    (root / f".inode{k}").touch()
                    k += 1
        else:
            _simulate_enospc(monkeypatch, root)

    yield root, fill
    if mounted:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _simulate_enospc(monkeypatch, root: Path) -> None:
    import builtins

    real_open, real_mkdir = builtins.open, os.mkdir

    def under(p) -> bool:
        try:
            return Path(os.fsdecode(p)).resolve().is_relative_to(root.resolve())
        except (TypeError, ValueError):
            return False

    def fake_open(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and under(file):
            raise OSError(errno.ENOSPC, "No space left on device", os.fsdecode(file))
        return real_open(file, mode, *a, **k)

    def fake_mkdir(p, *a, **k):
        if under(p):
            raise OSError(errno.ENOSPC, "No space left on device", os.fsdecode(p))
        return real_mkdir(p, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def _no_space(r, code: int = 2):
    one_line_error(r, code, ("no space left",))


def test_disk_full_evaluate_json(full_disk, capsys, env):
    root, fill = full_disk
    (root / "report.json").write_text('{"old": true}\n')
    fill()
    before = snapshot(root)
    _no_space(
        run_main(["evaluate", "--data", f"utkface:{UTK}", "--limit", "4", "--json", str(root / "report.json")], capsys)
    )
    assert snapshot(root) == before


def test_disk_full_bench_merge(full_disk, capsys, env):
    root, fill = full_disk
    (root / "t.md").write_text("old table\n")
    fill()
    before = snapshot(root)
    _no_space(
        run_main(
            ["bench", "--merge", str(GOOD_BENCH), "--markdown", str(root / "t.md"), "--json", str(root / "m.json")],
            capsys,
        ),
        1,
    )
    assert snapshot(root) == before


def test_disk_full_train_keeps_the_run(full_disk, capsys, env, tiny_run):
    root, fill = full_disk
    run = shutil.copytree(tiny_run, root / "run")
    fill()
    before = snapshot(root)
    _no_space(
        run_main(
            [
                "train",
                "--out",
                str(run),
                "--force",
                "--model",
                "c3ae_plain",
                "--data",
                f"utkface:{UTK}",
                "--limit",
                "96",
                "--epochs",
                "1",
                "--max-steps",
                "1",
                "--no-compile",
            ],
            capsys,
        )
    )
    assert snapshot(root) == before


def test_disk_full_export(full_disk, capsys, env, tmp_path):
    root, fill = full_disk
    (tmp_path / "tiny.toml").write_text(TINY_TARGET)
    fill()
    before = snapshot(root)
    _no_space(
        run_main(
            [
                "export",
                "--target",
                str(tmp_path / "tiny.toml"),
                "--out",
                str(root / "exports"),
                "--calibration-count",
                "32",
                "--verify-count",
                "3",
                "--json",
            ],
            capsys,
        )
    )
    assert snapshot(root) == before


# ------------------------------------------------------------------ two exports, one bundle


def _committer(args) -> str:
    src, out, rounds = args
    from c3ae_edge.errors import UsageError
    from c3ae_edge.export.bundle import replace_folder

    lost = 0
    for i in range(rounds):
        tmp = Path(out) / f".c3ae_full-0.1.0-tiny.tmp-{os.getpid()}-{i}"
        shutil.copytree(src, tmp)
        try:
            replace_folder(tmp, Path(out) / "c3ae_full-0.1.0-tiny")
        except UsageError as e:
            assert "at the same time" in str(e) and "\n" not in str(e)
            lost += 1
        shutil.rmtree(tmp, ignore_errors=True)
    return lost


def test_two_exports_racing_for_one_bundle(tmp_path, tiny_bundle):
    """Two processes commit bundles to one --out 40 times each: every commit either lands whole or fails with one
    clear line; the bundle left is complete and checks out; no temporary or old folders stay behind."""
    import multiprocessing as mp

    from c3ae_edge.export.bundle_check import check_sums, load_manifest

    out = tmp_path / "exports"
    out.mkdir()
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_committer, [(str(tiny_bundle), str(out), 40)] * 2)
    assert [p.name for p in out.iterdir()] == ["c3ae_full-0.1.0-tiny"]
    check_sums(out / "c3ae_full-0.1.0-tiny")
    load_manifest(out / "c3ae_full-0.1.0-tiny")


def test_ctrl_c_during_an_import_waits_for_the_import(tmp_path: Path):
    """A SIGINT that lands while a module imports (torch's native submodules abort the process when a
    KeyboardInterrupt is raised inside their init) is raised once the import is done: the import finishes, the
    interrupt follows at once, nothing runs on for long."""
    (tmp_path / "slow_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.3)\n"
        "print('import finished', flush=True)\n"
    )
    main = (
        "import sys, time\n"
        "from c3ae_edge import interrupt\n"
        "interrupt.install()\n"
        "try:\n"
        "    import slow_import\n"
        "    time.sleep(120)\n"
        "    print('not interrupted')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted after the import', interrupt.arrived())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    r = subprocess.run([sys.executable, "-c", main], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["import finished", "interrupted after the import True"], r.stdout


def test_ctrl_c_in_a_gc_callback_is_raised_once_that_code_is_left(tmp_path: Path):
    """A SIGINT that lands inside a garbage-collector callback (JAX registers one: seen 2 s into a real export)
    cannot be raised there: Python prints "Exception ignored ... Traceback" and drops it. It is raised again, without
    a traceback, in the code that runs next."""
    main = (
        "import gc, os, signal, time\n"
        "from c3ae_edge import interrupt\n"
        "interrupt.install()\n"
        "def cb(phase, info):\n"
        "    if phase == 'start' and cb in gc.callbacks:\n"
        "        gc.callbacks.remove(cb)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        sum(range(100000))\n"
        "gc.callbacks.append(cb)\n"
        "try:\n"
        "    gc.collect()\n"
        "    time.sleep(5)\n"
        "    print('lost', interrupt.arrived())\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', interrupt.arrived())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", main], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["interrupted True"], (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
