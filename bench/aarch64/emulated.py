#!/usr/bin/env python3
"""Run an rpi bundle's reference_infer.py and onboard.py inside the emulated arm64 root, and beside them \
on this x86 host.

    python bench/aarch64/emulated.py BUNDLE [--board rpi4|rpi5] [--json diff.json]

The root comes from ``build_root.sh`` ($C3AE_ARM64_ROOT, default /var/cache/c3ae-edge/arm64-root) and holds two venvs:
/opt/tflite-runtime ("numpy<2" tflite-runtime 2.14.0) and /opt/ai-edge-litert. Under qemu-user the guest reads the
host's /proc/cpuinfo, and ai-edge-litert segfaults in Interpreter() on an x86 one: each run gets a private mount
namespace with a fresh /proc, a Pi cpuinfo bind-mounted over /proc/cpuinfo, a read-only /sys, QEMU_CPU set to the Pi's
core, and the bundle bind-mounted read-only at /mnt (the root itself is never written). Needs root (unshare, mount,
chroot). Latency under emulation is meaningless; the ages are what this compares.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the checkout's c3ae_edge when run as a script
from c3ae_edge.export.arm64 import (  # noqa: E402, F401 - predict_core.py uses guest_shell
    BOARDS,
    GUEST_VENVS,
    guest_run,
    guest_shell,
    root_path,
    root_ready,
)


def host_python(runtime: str) -> Path:
    """The x86 interpreter for a runtime: our own venv for ai-edge-litert; the prepared numpy<2 venv for
    tflite-runtime."""
    if runtime == "ai-edge-litert":
        return Path(sys.executable)
    from c3ae_edge.export import runtime_env

    return runtime_env.folder("tflite-runtime") / "bin" / "python"  # only used when ready (host_problem)


def host_problem(runtime: str) -> str | None:
    """None when the x86 interpreter for ``runtime`` is usable, else one line (a stale venv is never used)."""
    if runtime == "ai-edge-litert":
        return None
    from c3ae_edge.export import runtime_env

    return runtime_env.missing("tflite-runtime")


@dataclass
class RuntimeRun:
    """One runtime on one machine: the self-test of every .tflite artifact and the on-board runner's rows."""

    machine: str
    runtime: str
    self_test: list[dict] = field(default_factory=list)
    onboard: list[dict] = field(default_factory=list)
    error: str | None = None


def _parse(machine: str, runtime: str, st: subprocess.CompletedProcess, ob: subprocess.CompletedProcess) -> RuntimeRun:
    run = RuntimeRun(machine, runtime)
    run.self_test = [
        json.loads(line)["self_test"] for line in st.stdout.splitlines() if line.startswith('{"self_test"')
    ]
    if ob.returncode == 0:
        run.onboard = json.loads(ob.stdout)["results"]
    errs = [
        f"{name} rc {p.returncode}: {p.stderr.strip()[-600:]}"
        for name, p in (("self-test", st), ("onboard", ob))
        if p.returncode not in (0, 1) or (name == "onboard" and p.returncode)
    ]
    run.error = "; ".join(errs) or None
    return run


def stage(bundle: Path, work: Path) -> Path:
    """A folder holding the bundle (with reference_infer.py) and the runner (onboard.py, stats.py, facefind.py), the one
    folder a Pi would have."""
    from c3ae_edge.board import RUNNER_SCRIPTS, board_script

    d = work / "board"
    shutil.copytree(bundle, d / "bundle")
    for name in RUNNER_SCRIPTS:
        shutil.copy(board_script(name), d / name)
    return d


def run_both(d: Path, runtime: str, board: str, root: Path, runs: int = 5) -> tuple[RuntimeRun, RuntimeRun]:
    """(x86 host run, emulated aarch64 run) of one runtime on the staged folder ``d``."""
    st_args = ["bundle/reference_infer.py", "--self-test", "--runtime", runtime]
    ob_args = ["onboard.py", "bundle", "--runs", str(runs), "--warmup", "1", "--runtime", runtime]
    py = str(host_python(runtime))
    host = _parse(
        "x86_64 host",
        runtime,
        *(subprocess.run([py, *a], capture_output=True, text=True, timeout=900, cwd=d) for a in (st_args, ob_args)),
    )
    guest = _parse(
        f"aarch64 emulated {board}", runtime, *(guest_run(root, board, runtime, d, a) for a in (st_args, ob_args))
    )
    return host, guest


def compare(host: RuntimeRun, guest: RuntimeRun) -> list[dict]:
    """Per artifact: max |age(aarch64) - age(x86)| over the parity faces, bit-exactness of the raw outputs, both
    delegates."""
    out = []
    for g in guest.self_test:
        h = next((x for x in host.self_test if x["artifact"] == g["artifact"]), None)
        if h is None:
            continue
        d = max(abs(a - b) for a, b in zip(g["ages"], h["ages"]))
        out.append(
            {
                "runtime": g["runtime"],
                "artifact": g["artifact"],
                "faces": len(g["ages"]),
                "max_abs_age_diff_aarch64_vs_x86": round(d, 6),
                "raw_outputs_identical": g["output_sha256"] == h["output_sha256"],
                "delegate_x86": h["delegate"],
                "delegate_aarch64": g["delegate"],
                "version_x86": h["version"],
                "version_aarch64": g["version"],
                "max_abs_age_diff_vs_pytorch_x86": h["max_abs_age_diff_vs_pytorch"],
                "max_abs_age_diff_vs_pytorch_aarch64": g["max_abs_age_diff_vs_pytorch"],
                "tolerance_years": g["tolerance_years"],
                "passed_x86": h["passed"],
                "passed_aarch64": g["passed"],
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--board", choices=sorted(BOARDS), default="rpi4")
    ap.add_argument("--runtime", choices=[*GUEST_VENVS, "both"], default="both")
    ap.add_argument("--json", type=Path, help="write the runs and the comparison here")
    a = ap.parse_args(argv)
    root = root_path()
    if not root_ready(root):
        print(f"emulated: error: {root}: no complete arm64 root (run bench/aarch64/build_root.sh)", file=sys.stderr)
        return 2
    if not (a.bundle / "manifest.json").is_file():
        print(f"emulated: error: {a.bundle}: no manifest.json (not a c3ae-edge bundle)", file=sys.stderr)
        return 2
    rts = list(GUEST_VENVS) if a.runtime == "both" else [a.runtime]
    missing = [p for rt in rts if (p := host_problem(rt))]
    if missing:
        print(f"emulated: error: no x86 interpreter for the comparison: {'; '.join(missing)}", file=sys.stderr)
        return 2
    runs, rows = [], []
    with tempfile.TemporaryDirectory() as td:
        d = stage(a.bundle, Path(td))
        for rt in rts:
            host, guest = run_both(d, rt, a.board, root)
            runs += [asdict(host), asdict(guest)]
            rows += compare(host, guest)
            for r in (host, guest):
                if r.error:
                    print(f"{r.machine} {rt}: {r.error}", file=sys.stderr)
    for r in rows:
        print(
            f"{r['runtime']:15s} {r['artifact']:28s} delegate x86 {r['delegate_x86']}, aarch64 "
            f"{r['delegate_aarch64']}: max |age aarch64 - age x86| {r['max_abs_age_diff_aarch64_vs_x86']:.4f} years "
            f"over {r['faces']} faces, raw outputs {'identical' if r['raw_outputs_identical'] else 'differ'}; vs "
            f"PyTorch {r['max_abs_age_diff_vs_pytorch_aarch64']:.4f} (tolerance {r['tolerance_years']})"
        )
    if a.json:
        a.json.write_text(
            json.dumps({"board": a.board, "root": str(root), "comparison": rows, "runs": runs}, indent=1) + "\n"
        )
    ok = rows and all(r["passed_aarch64"] and r["passed_x86"] for r in rows) and not any(r.get("error") for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
