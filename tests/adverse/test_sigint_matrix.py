"""A real Ctrl-C at several moments into real exports (`--target rpi`, `--target gpu`): wherever the signal lands
(imports, the model, the faces, a converter, a verification runtime), the user sees one line, "interrupted", exit 130,
and no bundle or temporary folder is left. C3AE_SIGINT_REPEATS=N runs each moment N times side by side (default 2).

    C3AE_SIGINT_REPEATS=5 .venv/bin/python -m pytest tests/adverse/test_sigint_matrix.py -s   # prints the counts
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# seconds of CPU time after the process starts (imports, model, faces), and of wall time after its "faces:" line (the
# converters and the verification runtimes, on a machine of any speed)
MOMENTS = (0.5, 1.0, 2.0, 5.0, "faces+1")
OURS = re.compile(r"(faces: |warning: not verified under |c3ae_full_\w+\.\w+: [\d,]+ bytes|  under )")
REPEATS = int(os.environ.get("C3AE_SIGINT_REPEATS", "2"))
COUNTS: Counter = Counter()


@dataclass
class Outcome:
    code: int | None  # None: still running long after the signal (the Ctrl-C was swallowed), killed
    lines: list[str]
    left: list[str]  # what the export left in its output folder

    @property
    def clean(self) -> bool:
        """Exit 130, the last line "interrupted", before it only the export's own progress lines, nothing left."""
        ours = all(OURS.match(ln) for ln in self.lines[:-1])
        return self.code == 130 and self.lines[-1:] == ["c3ae-edge: interrupted"] and ours and not self.left


def interrupt_export(target: str, after: float | str, out: Path, grace: float = 90.0) -> Outcome:
    """``c3ae-edge export --target TARGET`` in a child process, SIGINT once it has run ``after`` seconds of CPU time
    (or, for "faces+S", S seconds after it logged the faces it selected)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "c3ae_edge.cli", "export", "--target", target, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    head = ""
    if isinstance(after, str):
        while not head.startswith("faces:") and p.poll() is None:
            head = p.stderr.readline()
        assert head.startswith("faces:"), head
        after = float(after.removeprefix("faces+"))
    if head:  # the converters are at work: wall time from here
        time.sleep(after)
    else:
        cpu_wait(p.pid, after)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=grace)
        code = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        code = None
    left = sorted(str(q.relative_to(out)) for q in out.rglob("*")) if out.exists() else []
    lines = [ln for ln in (head + err).splitlines() if ln.strip()]
    return Outcome(code, lines, left)


def cpu_wait(pid: int, seconds: float) -> None:
    """Until process ``pid`` has run ``seconds`` of CPU time (the same point in its work on an idle or a busy machine:
    on a loaded one, half a second of wall time can still be the interpreter's own start, before any of our code)."""
    stat, tick = Path(f"/proc/{pid}/stat"), os.sysconf("SC_CLK_TCK")
    if not stat.exists():
        return time.sleep(seconds)
    while True:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process is gone
            return
        if (int(fields[11]) + int(fields[12])) / tick >= seconds:
            return
        time.sleep(0.01)


def _kind(o: Outcome) -> str:
    if o.clean:
        return "interrupted"
    if o.code is None:
        return "swallowed (still running)"
    if o.code < 0:
        return f"killed by signal {-o.code}"
    if any("internal error" in ln for ln in o.lines):
        return "internal error"
    return f"exit {o.code}" + (" with files left" if o.left else "")


@pytest.mark.parametrize("target", ["rpi", "gpu"])
@pytest.mark.parametrize("after", MOMENTS)
def test_ctrl_c_at_any_moment_of_an_export(target: str, after: float | str, tmp_path: Path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(REPEATS) as pool:  # the repeats run side by side: each lands somewhere else
        seen = list(pool.map(lambda i: interrupt_export(target, after, tmp_path / f"out{i}"), range(REPEATS)))
    for o in seen:
        COUNTS[(target, after, _kind(o))] += 1
    print(f"\nSIGINT {after} s into export --target {target}: {dict(Counter(_kind(o) for o in seen))}")
    for o in seen:
        assert not any("internal error" in ln or "Traceback" in ln for ln in o.lines), o.lines[-20:]
        assert o.clean, (o.code, o.lines[-20:], o.left)
