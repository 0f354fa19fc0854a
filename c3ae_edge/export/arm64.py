"""An emulated Raspberry Pi: a Debian bookworm arm64 root (bench/aarch64/build_root.sh) run under qemu-user, with a
Pi's /proc/cpuinfo and QEMU_CPU set to its core. Where the root exists (and this process may chroot), export runs
the bundle's own self-test there and records the Pi's golden outputs beside the host's.

Each run gets a private mount namespace: a fresh /proc with the Pi cpuinfo bound over /proc/cpuinfo (the guest would
read the x86 host's, and ai-edge-litert segfaults on it), a read-only /sys (XNNPACK's cpuinfo reads it, and without it
silently runs built-in kernels), and the bundle bound read-only at /mnt; the root itself is never written.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

DEFAULT_ROOT = Path("/var/cache/c3ae-edge/arm64-root")
MARKER = ".c3ae-arm64-root"  # written by build_root.sh when the root and both venvs are complete
CPUINFO_IN_ROOT = "etc/c3ae-cpuinfo"  # build_root.sh copies the Pi cpuinfo files here
BOARDS = {"rpi4": ("cortex-a72", "cpuinfo-rpi4.txt"), "rpi5": ("cortex-a76", "cpuinfo-rpi5.txt")}
GUEST_VENVS = {"tflite-runtime": "/opt/tflite-runtime", "ai-edge-litert": "/opt/ai-edge-litert"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def root_path() -> Path:
    return Path(os.environ.get("C3AE_ARM64_ROOT") or DEFAULT_ROOT)


def root_ready(root: Path | None = None) -> bool:
    return ((root or root_path()) / MARKER).is_file()


def cpuinfo(root: Path, board: str) -> Path:
    """The Pi's /proc/cpuinfo: the root's copy, else $C3AE_CPUINFO_DIR (a checkout's ../shared/reference)."""
    name = BOARDS[board][1]
    own = root / CPUINFO_IN_ROOT / name
    if own.is_file():
        return own
    checkout = Path(__file__).resolve().parents[3] / "shared" / "reference"
    return Path(os.environ.get("C3AE_CPUINFO_DIR") or checkout) / name


def usable(root: Path | None = None) -> str | None:
    """None when emulated runs can happen here, else why not (one line)."""
    root = root or root_path()
    if not root_ready(root):
        return f"no complete arm64 root at {root} (bench/aarch64/build_root.sh)"
    if os.geteuid() != 0:
        return "the emulated root needs root (unshare, mount, chroot)"
    if not cpuinfo(root, "rpi4").is_file():
        return f"no Pi cpuinfo files in {root / CPUINFO_IN_ROOT}"
    return None


def ensure_binfmt() -> None:
    """The kernel must hand aarch64 ELF files to qemu (gone after a reboot): register it again, or say why not."""
    if (BINFMT / "qemu-aarch64").is_file() and (BINFMT / "qemu-aarch64").read_text().startswith("enabled"):
        return
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, check=False)
    subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, check=False)
    if not (BINFMT / "qemu-aarch64").is_file():
        raise RuntimeError(
            "qemu-aarch64 is not registered with binfmt_misc (apt-get install qemu-user-static binfmt-support; as root)"
        )


def guest_run(
    root: Path, board: str, runtime: str, mount: Path, argv: list[str], timeout: int = 1800
) -> subprocess.CompletedProcess:
    """``/opt/<runtime>/bin/python ARGV`` in the root, as on a Pi, in /mnt: the host folder ``mount``, read-only."""
    cmd = f"exec {GUEST_VENVS[runtime]}/bin/python " + " ".join(shlex.quote(a) for a in argv)
    return guest_shell(root, board, mount, cmd, read_only=True, timeout=timeout)


def guest_shell(
    root: Path, board: str, mount: Path, command: str, read_only: bool, timeout: int = 1800
) -> subprocess.CompletedProcess:
    """``sh -c COMMAND`` in the root, as on a Pi (its cpuinfo, core, a read-only /sys), in /mnt: the host folder
    ``mount``; a private mount namespace, so the root itself is never written."""
    cpu = BOARDS[board][0]
    ensure_binfmt()
    r, mnt = shlex.quote(str(root)), shlex.quote(str(mount))
    ro = f" && mount -o remount,bind,ro {r}/mnt" if read_only else ""
    script = (
        f"mount -t proc proc {r}/proc && mount --bind {shlex.quote(str(cpuinfo(root, board)))} {r}/proc/cpuinfo && "
        f"mount -t sysfs -o ro sysfs {r}/sys && mount --bind {mnt} {r}/mnt{ro} && "
        f"exec chroot {r} /bin/sh -c " + shlex.quote(f"cd /mnt && {command}")
    )
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": cpu}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def board_of(target) -> str:
    """The Pi a target is for (rpi5 for a target named so, else the Pi 4)."""
    return "rpi5" if "rpi5" in (target.name, *getattr(target, "aliases", ())) else "rpi4"


def record_goldens(bundle: Path, target, log=print) -> dict[str, list[dict]]:
    """The bundle's self-test in the emulated Pi under each runtime the target names: -> {runtime package: the
    self-test rows, each with its raw outputs ("raw") and where they came from ("site")}. A runtime whose guest venv
    cannot run says so in one line and is left out."""
    from c3ae_edge.errors import VerificationError

    root, board = root_path(), board_of(target)
    packages = [p for p in GUEST_VENVS if any(rid.startswith(p + "/") for rid in target.runtimes)]
    out = {}
    for pkg in packages:
        r = guest_run(root, board, pkg, bundle, ["reference_infer.py", "--self-test", "--record", "--runtime", pkg])
        rows = [json.loads(ln)["self_test"] for ln in r.stdout.splitlines() if ln.startswith('{"self_test"')]
        if r.returncode not in (0, 1) or not rows:
            log(f"warning: no emulated {board} goldens under {pkg}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        failed = [x for x in rows if not x["passed"]]
        if failed:
            x = failed[0]
            raise VerificationError(
                f"{x['artifact']} on an emulated {board} under {x['runtime_id']} {x['version']}: max |age - PyTorch| "
                f"{x['max_abs_age_diff_vs_pytorch']} > {x['tolerance_years']} years on the parity faces"
            )
        out[pkg] = rows
    return out
