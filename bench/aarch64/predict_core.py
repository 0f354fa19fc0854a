#!/usr/bin/env python3
"""The torch-free wheel (``pip install c3ae-edge``, no extras) in the emulated arm64 root: installed offline from
aarch64 wheels, then ``c3ae-edge predict`` on real photos, its output beside the x86 host's.

    python bench/aarch64/predict_core.py WHEEL PHOTO... [--board rpi4] [--json out.json]

The root comes from build_root.sh (emulated.py finds it, registers qemu and fakes the Pi's /proc/cpuinfo and /sys);
it is never written: the venv lives in a host folder bind-mounted at /mnt. The core's aarch64 wheels are downloaded
on the host once (pip download, into $C3AE_ARM64_WHEELS, default ~/.cache/c3ae-edge/arm64-core-wheels). Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import emulated  # noqa: E402

TAGS = [f"manylinux_{t}_aarch64" for t in ("2_17", "2_24", "2_26", "2_27", "2_28", "2_31", "2_34", "2_35", "2_36")]


def wheels(wheel: Path) -> Path:
    """aarch64 / Python 3.11 wheels of everything ``pip install WHEEL`` needs (downloaded once, then cached)."""
    dst = Path(os.environ.get("C3AE_ARM64_WHEELS") or Path.home() / ".cache" / "c3ae-edge" / "arm64-core-wheels")
    dst.mkdir(parents=True, exist_ok=True)
    plat = [a for t in [*TAGS, "manylinux2014_aarch64"] for a in ("--platform", t)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", *plat, "--python-version", "3.11"]
    subprocess.run([*cmd, "--implementation", "cp", "-d", str(dst), str(wheel)], check=True, timeout=1800)
    return dst


def guest(root: Path, board: str, work: Path, command: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    """``sh -c COMMAND`` in the root, as on a Pi, with the host folder ``work`` writable at /mnt."""
    return emulated.guest_shell(root, board, work, command, read_only=False, timeout=timeout)


def run(wheel: Path, photos: list[Path], board: str = "rpi4") -> dict:
    root = emulated.root_path()
    if not emulated.root_ready(root):
        raise SystemExit(f"{root}: no emulated arm64 root (sudo bench/aarch64/build_root.sh)")
    found = wheels(wheel)
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        shutil.copytree(found, work / "wheels")
        shutil.copy(wheel, work / "wheels" / wheel.name)  # this build, not a cached one of the same version
        (work / "photos").mkdir()
        for p in photos:
            shutil.copy(p, work / "photos" / p.name)
        names = " ".join(f"photos/{p.name}" for p in photos)
        install = guest(
            root,
            board,
            work,
            f"python3 -m venv core && core/bin/pip install -q --no-index --find-links wheels wheels/{wheel.name} && "
            "core/bin/python -c 'import torch' 2>/dev/null && echo TORCH || echo no-torch",
        )
        if install.returncode:
            raise SystemExit(f"install in the root failed: {install.stderr.strip()[-1500:]}")
        pred = guest(root, board, work, f"core/bin/c3ae-edge predict {names} --json -v")
    host = subprocess.run(
        [sys.executable, "-m", "c3ae_edge.cli", "predict", *map(str, photos), "--json"], capture_output=True, text=True
    )
    return _compare(install, pred, host)


def _compare(install, pred, host) -> dict:
    def faces(out: str) -> list:
        return [f for ln in out.splitlines() for f in json.loads(ln).get("faces", [])]

    g, h = faces(pred.stdout), faces(host.stdout)
    box = [max(abs(x - y) for x, y in zip(a["box"], b["box"])) for a, b in zip(g, h)]
    return {
        "torch_importable_in_root": install.stdout.strip().endswith("TORCH"),
        "predict_rc": pred.returncode,
        "runtime_line": pred.stderr.strip().splitlines()[:1],
        "faces_aarch64": len(g),
        "faces_x86": len(h),
        "max_abs_age_diff_aarch64_vs_x86": max((abs(a["age"] - b["age"]) for a, b in zip(g, h)), default=None),
        "max_box_diff_px": max(box, default=None),
        "stderr_tail": pred.stderr.strip()[-600:] if pred.returncode else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path)
    ap.add_argument("photos", type=Path, nargs="+")
    ap.add_argument("--board", choices=sorted(emulated.BOARDS), default="rpi4")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = run(a.wheel.resolve(), [p.resolve() for p in a.photos], a.board)
    text = json.dumps(res, indent=1) + "\n"
    if a.json:
        a.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
