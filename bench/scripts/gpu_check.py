"""The GPU check (``bash bench/scripts/gpu_check.sh OUT``; a checkout's script, it reads the committed results): the
default GPU bench, then the fast path (batch-1 latency and large-batch throughput of the fused, compiled and TensorRT
forms), merged beside the committed CPU results, and a summary of the issue's table and goals, all in one folder, in
under five minutes. Installs nothing.

``--device cpu --tiny`` runs the same steps on the CPU in seconds (the tests do): CUDA graphs and CUDA runtimes drop
out, everything else (budgets, row-by-row JSON, parity, the forms, the merge and the summary) runs.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
TOTAL_S = 285  # the whole check, startup of each step included: under five minutes


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]
    time_limit_s: float  # the bench's own --time-limit: no row starts after it
    margin_s: float  # startup, faces, compiling the last row: then SIGTERM (the rows so far stay in the JSON)


def steps(device: str, tiny: bool) -> list[Step]:
    if tiny:
        small = ("--models", "c3ae_plain", "--runs", "20", "--warmup", "2", "--budget", "0.05", "--min-runs", "5")
        return [
            Step("default", (*small, "--batch", "1,4", "--variants", "eager:fp32,fused:fp32"), 20, 60),
            Step("fast_latency", (*small, "--batch", "1", "--variants", "fused-pool:fp32,ort-cpu:fp32"), 20, 60),
            Step("fast_throughput", (*small, "--batch", "64", "--variants", "fused+cl:bf16"), 20, 60),
        ]
    return [
        Step("default", (), 110, 30),
        Step(
            "fast_latency", ("--models", "c3ae_plain,c3ae_full", "--batch", "1", "--variants", "fast-latency"), 45, 30
        ),
        Step(
            "fast_throughput",
            ("--models", "c3ae_plain", "--batch", "4096,16384", "--variants", "fast-throughput"),
            30,
            30,
        ),
    ]


def run_step(step: Step, out: Path, device: str, left_s: float) -> dict:
    """One ``bench run`` in its own process (its log beside its JSON); SIGTERM at its deadline, SIGKILL 20 s later."""
    limit = max(5.0, min(step.time_limit_s, left_s - step.margin_s))
    cmd = [sys.executable, "-m", "c3ae_edge.cli", "bench", "run", "--device", device, *step.args]
    cmd += ["--time-limit", f"{limit:g}", "--json", str(out / f"{step.name}.json")]
    cmd += ["--markdown", str(out / f"{step.name}.md")]
    t = time.time()
    with open(out / f"{step.name}.log", "w") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            rc = p.wait(timeout=limit + step.margin_s)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
    return {"step": step.name, "command": " ".join(cmd[2:]), "rc": rc, "wall_s": round(time.time() - t, 1)}


def merge(out: Path, names: list[str]) -> dict:
    """This check's JSON files and the committed CPU results, merged: Table 3 with its GPU columns."""
    files = [str(out / f"{n}.json") for n in names if (out / f"{n}.json").is_file()]
    files += [str(p) for p in (ROOT / "bench" / "results" / "x86.json",) if p.is_file()]
    cmd = [sys.executable, "-m", "c3ae_edge.cli", "bench", "merge", *files]
    cmd += ["--json", str(out / "merged.json"), "--markdown", str(out / "merged.md")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    return {"step": "merge", "command": " ".join(cmd[2:]), "rc": r.returncode, "stderr": r.stderr[-500:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for every JSON, markdown and log of the check")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true", help="a few forwards of one model (a dry run of the machinery)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    t0, done = time.time(), []
    for step in steps(a.device, a.tiny):
        done.append(run_step(step, a.out, a.device, TOTAL_S - (time.time() - t0)))
        print(f"gpu_check: {step.name}: exit {done[-1]['rc']} in {done[-1]['wall_s']} s", file=sys.stderr)
        if done[-1]["rc"] == 1 and step.name == "default":  # nothing measured (no CUDA): say so, stop
            break
    done.append(merge(a.out, [s["step"] for s in done]))
    from gpu_summary import write_summary  # beside this script

    write_summary(a.out, done, a.device, round(time.time() - t0, 1))
    print(f"gpu_check: wrote {a.out / 'summary.md'} ({round(time.time() - t0)} s)", file=sys.stderr)
    return 0 if all(s["rc"] == 0 for s in done) else 1


if __name__ == "__main__":
    sys.exit(main())
