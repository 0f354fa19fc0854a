"""The engine built for this host: compile a bundle's C sources with the package's harness and run it."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from c3ae_edge.errors import UsageError, VerificationError

ENGINE_SOURCES = ("c3ae_engine.c", "c3ae_engine_model.c", "c3ae_mcu.c", "c3ae_mcu_model.c")
HOST_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")


def host_cc() -> str | None:
    """$CC, else cc, gcc or clang on PATH."""
    for c in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


def need_cc() -> str:
    cc = host_cc()
    if cc is None:
        raise UsageError(
            "engine c99: no host C compiler (cc, gcc or clang) to build and verify the generated engine; "
            "install one (Debian: gcc) or export with --engine tflm"
        )
    return cc


@dataclass
class HostEngine:
    """A compiled harness (``host_driver.c``) over a folder's engine sources."""

    exe: Path
    crops: int
    size: int
    features: int

    def trunk(self, x: np.ndarray) -> np.ndarray:
        """int8 crops (N, H, W, 3) -> int8 features (N, FEATURES)."""
        x = np.ascontiguousarray(x, np.int8).reshape(-1, self.size, self.size, 3)
        r = _run(self.exe, f"trunk {len(x)}\n".encode() + x.tobytes())
        return np.frombuffer(r, np.int8).reshape(len(x), self.features)

    def frame(self, rgb: np.ndarray, box: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, float]:
        """RGB uint8 frame + box -> (C's int8 crops (CROPS, H, W, 3), the engine's features (CROPS, F), age)."""
        h, w = rgb.shape[:2]
        head = f"frame {w} {h} {box[0]!r} {box[1]!r} {box[2]!r}\n".encode()
        r = _run(self.exe, head + np.ascontiguousarray(rgb, np.uint8).tobytes())
        k = self.crops * self.size * self.size * 3
        q = np.frombuffer(r[:k], np.int8).reshape(self.crops, self.size, self.size, 3)
        f = np.frombuffer(r[k : k + self.crops * self.features], np.int8).reshape(self.crops, self.features)
        return q, f, float(np.frombuffer(r[-4:], np.float32)[0])


def _run(exe: Path, data: bytes) -> bytes:
    r = subprocess.run([str(exe)], input=data, capture_output=True, timeout=600)
    if r.returncode:
        raise VerificationError(f"engine host build: {exe.name} exited {r.returncode} ({r.stderr.decode()[-200:]})")
    return r.stdout


def build_host(folder: Path, out_dir: Path, extra_flags: tuple[str, ...] = ()) -> HostEngine:
    """Compile ``folder``'s engine with the harness into ``out_dir`` (-Werror: generated code must be warning-free)."""
    cc = need_cc()
    drv = out_dir / "host_driver.c"
    drv.write_text(resources.files(__package__).joinpath("host_driver.c").read_text())
    exe = out_dir / "c3ae_engine_host"
    srcs = [str(folder / s) for s in ENGINE_SOURCES]
    cmd = [cc, *HOST_FLAGS, *extra_flags, f"-I{folder}", str(drv), *srcs, "-lm", "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[-300:])
        raise VerificationError(f"engine host build failed ({Path(cc).name}): {first}")
    m = macros(folder / "c3ae_mcu_model.h")
    return HostEngine(exe, m["C3AE_MCU_CROPS"], m["C3AE_MCU_SIZE"], m["C3AE_MCU_FEATURES"])


def macros(header: Path) -> dict[str, int]:
    """The integer #defines of a generated header."""
    import re

    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^#define (\w+) (-?\d+)\b", header.read_text(), re.M)}
