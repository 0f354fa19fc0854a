"""Shared pieces of the adverse-input suite: an in-process CLI runner, folder snapshots, and real inputs to spoil
(a face chip, the shipped weights, one small ONNX bundle, one tiny training run)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import DATA, FGNET, HAVE_DATA, Result, faces_env, run_main  # noqa: F401 - the one in-process runner (tests/conftest.py)
from conftest import FACES as UTK  # the data set's UTKFace, else the embedded chips (same layout)

ROOT = Path(__file__).resolve().parents[2]
TINY_TARGET = 'name = "tiny"\ndescription = "adverse suite"\narch = "any"\nbackend = "onnx"\nprecisions = ["fp32"]\n'


@dataclass
class Case:
    """One adverse input: ``setup(tmp, env) -> argv``; expected exit code and words the one stderr line must hold."""

    id: str
    setup: Callable
    code: int
    needles: tuple[str, ...]
    cwd: bool = False  # run in tmp (files the command may write land there too)
    extra: Callable | None = field(default=None)  # extra check: (tmp, result) -> None


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with its sha256 (folders: 'dir', links: their target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def one_line_error(r: Result, code: int, needles: tuple[str, ...] = ()) -> None:
    assert r.code == code, (r.code, r.err[-2000:])
    assert "Traceback" not in r.err and "internal error" not in r.err, r.err[-2000:]
    assert len(r.lines) == 1, r.err[-2000:]
    for n in needles:
        assert n.lower() in r.lines[0].lower(), (n, r.lines[0])


def run_case(case: Case, tmp: Path, capsys, env: dict) -> Result:
    """Set up, snapshot, run, and check: exit code, one stderr line naming the problem, nothing written or changed."""
    argv = case.setup(tmp, env)
    before = snapshot(tmp)
    r = run_main(argv, capsys, cwd=tmp if case.cwd else None)
    one_line_error(r, case.code, tuple(n.format(tmp=tmp) for n in case.needles))
    assert snapshot(tmp) == before, "the failed command changed files"
    if case.extra:
        case.extra(tmp, r)
    return r


@pytest.fixture
def env(monkeypatch, tmp_path) -> dict:
    faces_env(monkeypatch)
    return {"data": DATA}


# ------------------------------------------------------------------ real inputs


def face_chip() -> Path:
    import csv

    with open(UTK / "labels.csv", newline="") as f:
        row = next(csv.DictReader(f))
    return UTK / row["file"]


def jpeg_claiming(w: int, h: int) -> bytes:
    """A real small JPEG whose frame header claims ``w`` x ``h`` (the data ends long before)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(face_chip()).convert("RGB").resize((64, 64)).save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    i = data.find(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def shipped_weights() -> Path:
    from c3ae_edge.weights import shipped_path

    return shipped_path("c3ae_full")


class Marker:
    """Unpickling this writes a file: proof that a checkpoint ran code."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pwned"))


def malicious_checkpoint(dst: Path, marker: Path) -> Path:
    import torch

    torch.save({"model": "c3ae_full", "state_dict": {}, "x": Marker(str(marker))}, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """One real, verified ONNX fp32 bundle with 3 verification faces (also proves export works with < 8)."""
    from c3ae_edge.export.bundle import export_bundle

    root = tmp_path_factory.mktemp("bundle")
    (root / "tiny.toml").write_text(TINY_TARGET)
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    try:
        path = export_bundle(
            str(root / "tiny.toml"),
            out=root / "out",
            data=str(DATA) if HAVE_DATA else None,
            n_cal=32,
            n_verify=3,
            archive=True,
            log=lambda m: None,
        )
    finally:
        os.environ.pop("SOURCE_DATE_EPOCH", None)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished (tiny) training run: c3ae_plain, 96 faces, one epoch, 2 steps."""
    from c3ae_edge.train.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "run"
    train(
        TrainConfig(
            model="c3ae_plain",
            data=f"utkface:{UTK}",
            out=str(out),
            epochs=1,
            batch_size=16,
            limit=96,
            max_steps=2,
            compile=False,
            ema=0.0,
            threads=2,
        ),
        log=lambda m: None,
    )
    return out


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def resum(bundle: Path) -> None:
    """Regenerate SHA256SUMS as an attacker would after editing a bundle."""
    from c3ae_edge.export.bundle_check import sha256

    names = sorted(p.name for p in bundle.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    (bundle / "SHA256SUMS").write_text("".join(f"{sha256(bundle / n)}  {n}\n" for n in names))
