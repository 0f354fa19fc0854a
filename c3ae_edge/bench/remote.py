"""``--remote user@host``: copy the on-board runner and a bundle over ssh, run it on the board, bring the JSON back."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from c3ae_edge.errors import DataError, UsageError

SSH_OPTS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]


def _run(cmd: list[str], what: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DataError(f"{what}: timed out after {timeout} s") from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise DataError(f"{what} failed (exit {r.returncode}): {last}")
    return r


def run_remote(host: str, bundle: Path, runs: int, warmup: int, threads: int, python: str = "python3") -> dict:
    """The board's bench document (same schema as ``c3ae-edge bench``); the remote scratch folder is removed
    afterwards."""
    from c3ae_edge.board import onboard

    if not (bundle / "manifest.json").is_file():
        raise UsageError(f"--bundle {bundle}: no manifest.json (not a bundle written by `c3ae-edge export`)")
    if not shutil.which("ssh") or not shutil.which("scp"):
        raise UsageError("--remote needs the ssh and scp clients on this machine")
    rdir = f"/tmp/c3ae-bench-{uuid.uuid4().hex[:8]}"
    _run(["ssh", *SSH_OPTS, host, f"mkdir -p {rdir}"], f"ssh {host}")
    try:
        from c3ae_edge.board import facefind

        _run(
            ["scp", *SSH_OPTS, "-q", "-r", onboard.__file__, facefind.__file__, str(bundle), f"{host}:{rdir}/"],
            f"copying runner and bundle to {host}",
        )
        cmd = (
            f"cd {rdir} && {python} onboard.py {bundle.name} --runs {int(runs)} --warmup {int(warmup)} "
            f"--threads {int(threads)} --json out.json"
        )
        _run(["ssh", *SSH_OPTS, host, cmd], f"running the bench on {host}")
        with tempfile.TemporaryDirectory() as td:
            _run(["scp", *SSH_OPTS, "-q", f"{host}:{rdir}/out.json", td], f"fetching results from {host}")
            doc = json.loads((Path(td) / "out.json").read_text())
    finally:
        subprocess.run(["ssh", *SSH_OPTS, host, f"rm -rf {rdir}"], capture_output=True, timeout=60)
    doc["config"]["remote"] = host
    return doc
