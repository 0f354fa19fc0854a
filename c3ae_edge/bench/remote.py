"""``--remote user@host``: copy the on-board runner and a bundle over ssh, run it on the board, bring the JSON back."""

from __future__ import annotations

import shlex
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


def check_host(host: str) -> str:
    """``[user@]host`` for ssh: never an option (``-oProxyCommand=...``), no spaces or control characters."""
    if not host or host.startswith("-") or any(c.isspace() or ord(c) < 32 for c in host) or "@-" in host:
        raise UsageError(f"remote host {host!r}: expected [user@]host (not an option, no spaces)")
    return host


def remote_command(rdir: str, bundle_name: str, runs: int, warmup: int, threads: int, python: str) -> str:
    """The command line the board's shell parses: every value quoted, numbers as integers."""
    q = shlex.quote
    return (
        f"cd {q(rdir)} && {q(python)} onboard.py {q(bundle_name)} --runs {int(runs)} --warmup {int(warmup)} "
        f"--threads {int(threads)} --json out.json"
    )


def run_remote(host: str, bundle: Path, runs: int, warmup: int, threads: int, python: str = "python3") -> dict:
    """The board's bench document (same schema as ``c3ae-edge bench``); the remote scratch folder is removed
    afterwards. Every value the board's shell parses is quoted; ``--`` ends ssh's and scp's options."""
    from c3ae_edge.board import RUNNER_SCRIPTS, board_script

    host = check_host(host)
    if not (bundle / "manifest.json").is_file():
        raise UsageError(f"--bundle {bundle}: no manifest.json (not a bundle written by `c3ae-edge export`)")
    if not shutil.which("ssh") or not shutil.which("scp"):
        raise UsageError("--remote needs the ssh and scp clients on this machine")
    rdir = f"/tmp/c3ae-bench-{uuid.uuid4().hex[:8]}"
    _run(["ssh", *SSH_OPTS, "--", host, f"mkdir -p {shlex.quote(rdir)}"], f"ssh {host}")
    try:
        files = [*(str(board_script(n)) for n in RUNNER_SCRIPTS), str(bundle.resolve())]
        # scp's remote path is parsed by the board's shell too: the folder is quoted there
        _run(["scp", *SSH_OPTS, "-q", "-r", "--", *files, f"{host}:{shlex.quote(rdir)}/"], f"copying to {host}")
        cmd = remote_command(rdir, bundle.resolve().name, runs, warmup, threads, python)
        _run(["ssh", *SSH_OPTS, "--", host, cmd], f"running the bench on {host}")
        with tempfile.TemporaryDirectory() as td:
            src = f"{host}:{shlex.quote(rdir + '/out.json')}"
            _run(["scp", *SSH_OPTS, "-q", "--", src, td], f"fetching results from {host}")
            doc = _read_doc(Path(td) / "out.json", host)
    finally:
        subprocess.run(["ssh", *SSH_OPTS, "--", host, f"rm -rf {shlex.quote(rdir)}"], capture_output=True, timeout=60)
    doc["config"]["remote"] = host
    return doc


def _read_doc(path: Path, host: str) -> dict:
    """The board's JSON, checked like any bench document (one line when it is not one)."""
    from c3ae_edge.bench.report import load_doc

    try:
        return load_doc(path)
    except DataError as e:
        raise DataError(f"results from {host}: {str(e).removeprefix(f'{path}: ')}") from None
