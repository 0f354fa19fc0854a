"""The engine on the instruction sets it targets: flash sizes from the cross compilers, and the bundle's self-test
firmware run under QEMU through its own Makefile (the figures a firmware engineer gets from ``make qemu-m4``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from c3ae_edge.export.engine.host import ENGINE_SOURCES

SIZE_FLAGS = ("-std=c99", "-Os", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-Werror")
RUN_TIMEOUT = 300  # seconds per firmware run (a few faces take ~10 s under QEMU on a 2-core CI machine)


@dataclass(frozen=True)
class Core:
    name: str
    make_target: str
    cc: str
    size: str
    flags: tuple[str, ...]
    qemu: str
    machine: str
    packages: str  # Debian packages that bring the toolchain and the emulator


CORES = (
    Core(
        "cortex-m4",
        "qemu-m4",
        "arm-none-eabi-gcc",
        "arm-none-eabi-size",
        ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
        "qemu-system-arm",
        "mps2-an386",
        "gcc-arm-none-eabi picolibc-arm-none-eabi qemu-system-arm",
    ),
    Core(
        "cortex-m7",
        "qemu-m7",
        "arm-none-eabi-gcc",
        "arm-none-eabi-size",
        ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
        "qemu-system-arm",
        "mps2-an500",
        "gcc-arm-none-eabi picolibc-arm-none-eabi qemu-system-arm",
    ),
    Core(
        "rv32imc",
        "qemu-rv32",
        "riscv64-unknown-elf-gcc",
        "riscv64-unknown-elf-size",
        ("-march=rv32imc", "-mabi=ilp32"),
        "qemu-system-riscv32",
        "virt",
        "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc",
    ),
)
BY_NAME = {c.name: c for c in CORES}


def compiler_missing(core: Core) -> str | None:
    if not shutil.which(core.cc) or not shutil.which(core.size):
        return f"{core.cc} is not installed (Debian: {core.packages})"
    if core.cc.startswith("riscv") and not has_picolibc(core.cc):  # no C library headers without it
        return f"picolibc for {core.cc} is not installed (Debian: {core.packages})"
    return None


def has_picolibc(cc: str) -> bool:
    specs = subprocess.run([cc, "-print-file-name=picolibc.specs"], capture_output=True, text=True).stdout
    return os.path.isabs(specs.strip())


def run_missing(core: Core) -> str | None:
    """Why the self-test cannot run for ``core`` here (one line naming what to install), or None."""
    why = compiler_missing(core)
    if why:
        return why
    if not has_picolibc(core.cc):
        return f"picolibc for {core.cc} is not installed (Debian: {core.packages})"
    for tool in (core.qemu, "make"):
        if not shutil.which(tool):
            return f"{tool} is not installed (Debian: {core.packages if tool != 'make' else 'make'})"
    return None


def section_sizes(size: str, obj: Path) -> dict[str, int]:
    """``size -A``: bytes of an object's .text*, .rodata*, .data*, .bss* sections (RISC-V small data included)."""
    out = subprocess.run([size, "-A", str(obj)], capture_output=True, text=True, check=True).stdout
    sums = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            key = parts[0][1:].split(".")[0]
            if key in sums:
                sums[key] += int(parts[1])
            elif key == "srodata":
                sums["rodata"] += int(parts[1])
            elif key in ("sdata", "sbss"):
                sums["data" if key == "sdata" else "bss"] += int(parts[1])
    return sums


def flash(folder: Path, core: Core) -> dict:
    """Each engine source compiled at -Os for ``core`` (warnings are errors): sections per file and in total;
    flash = .text + .rodata + .data (the initialised data's load image)."""
    from c3ae_edge.errors import VerificationError

    files = {}
    libc = ["--specs=picolibc.specs"] if has_picolibc(core.cc) else []  # its headers (newlib's are found alone)
    with tempfile.TemporaryDirectory() as td:
        for src in ENGINE_SOURCES:
            obj = Path(td) / (src + ".o")
            cmd = [core.cc, *core.flags, *SIZE_FLAGS, *libc, "-c", str(folder / src), "-o", str(obj)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                lines = r.stderr.strip().splitlines() or ["?"]
                first = next((ln for ln in lines if "error" in ln), lines[0])
                raise VerificationError(f"{src}: {core.cc} ({core.name}, -Os) failed: {first}")
            files[src] = section_sizes(core.size, obj)
    total = {k: sum(f[k] for f in files.values()) for k in ("text", "rodata", "data", "bss")}
    return {"files": files, "total": total, "flash": total["text"] + total["rodata"] + total["data"]}


def compiler_version(cc: str) -> str:
    return subprocess.run([cc, "-dumpversion"], capture_output=True, text=True).stdout.strip()


def selftest(folder: Path, core: Core, build: Path | None = None, timeout: int = RUN_TIMEOUT) -> dict:
    """``make -C folder <core target>`` (outputs in ``build``); -> {"lines": per-face rows, "summary": last line}."""
    from c3ae_edge.errors import VerificationError

    with tempfile.TemporaryDirectory() as td:
        b = build or Path(td)
        cmd = ["make", "-s", "-C", str(folder), f"BUILD={b}", core.make_target]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VerificationError(f"engine self-test on {core.name}: no result within {timeout} s") from None
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    try:
        rows = [json.loads(ln) for ln in lines]
    except json.JSONDecodeError:
        rows = []
    if not rows or "core" not in rows[-1]:
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise VerificationError(f"engine self-test on {core.name} failed (exit {r.returncode}): {tail[0][:200]}")
    return {"lines": rows[:-1], "summary": rows[-1], "exit": r.returncode}
