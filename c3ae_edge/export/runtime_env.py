"""Runtimes that cannot live beside our stack, each in its own small virtual environment, prepared once, explicitly.

tflite-runtime 2.14 (what `pip install tflite-runtime` gives a Raspberry Pi OS Bookworm user) needs numpy<2, while
the converters need numpy 2. ``c3ae-edge runtimes prepare`` builds the venv with the package set the bundle README
tells a Pi user to install, and writes a stamp (``c3ae-runtime.json``) naming what it installed, last: a venv without
a stamp, with other requirements, or missing a stamped package is not used (one line says how to fix it). Export and
verify never download anything themselves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from c3ae_edge.errors import UsageError

STAMP = "c3ae-runtime.json"


@dataclass(frozen=True)
class VenvRuntime:
    name: str  # folder name under the runtimes root
    requirements: tuple[str, ...]  # what the bundle README tells a Pi user to pip install (firmware.pi_install)
    probe: str  # Python code that must run in the venv


VENVS = {
    "tflite-runtime": VenvRuntime(
        "tflite-runtime-2.14",
        ("numpy<2", "Pillow", "tflite-runtime==2.14.0"),  # what reference_infer.py and onboard.py import
        "import numpy, PIL.Image, tflite_runtime, tflite_runtime.interpreter; "
        "assert tflite_runtime.__version__ == '2.14.0', tflite_runtime.__version__; "
        "assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__",
    ),
}


@dataclass(frozen=True)
class VenvState:
    """One runtime venv as found: ``state`` is ready, missing, incomplete or stale; ``problem`` says why (one line)."""

    key: str
    folder: Path
    state: str
    problem: str | None = None
    installed: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def line(self) -> str | None:
        """None when ready, else one line ending with the command that fixes it."""
        if self.ready:
            return None
        if self.state == "missing":
            return f"{self.key} is not prepared (run `c3ae-edge runtimes prepare {self.key}`, once, online)"
        return f"{self.key} venv at {self.folder} is {self.state}: {self.problem} (run `{fix_command(self.key)}`)"


def fix_command(key: str) -> str:
    return f"c3ae-edge runtimes prepare {key}"


def root() -> Path:
    """$C3AE_RUNTIMES, else $XDG_CACHE_HOME/c3ae-edge/runtimes (~/.cache/c3ae-edge/runtimes)."""
    if os.environ.get("C3AE_RUNTIMES"):
        return Path(os.environ["C3AE_RUNTIMES"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "c3ae-edge" / "runtimes"


def folder(key: str) -> Path:
    return root() / VENVS[key].name


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_infos(venv: Path) -> dict[str, str]:
    """{normalised distribution name: version} from the venv's *.dist-info folders (no interpreter run)."""
    out = {}
    for site in venv.glob("lib/python3*/site-packages"):
        for d in site.glob("*.dist-info"):
            name, _, ver = d.name.removesuffix(".dist-info").partition("-")
            out[_norm(name)] = ver
    return out


def _read_stamp(venv: Path) -> dict | None:
    try:
        doc = json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("installed"), dict) else None


def state(key: str) -> VenvState:
    """What is there for ``key``: missing, incomplete (no stamp, or a stamped package gone), stale (prepared for
    other requirements) or ready. Reads files only."""
    v, where = VENVS[key], folder(key)
    if not (where / "bin" / "python").is_file():
        return VenvState(key, where, "missing")
    stamp = _read_stamp(where)
    if stamp is None:
        return VenvState(key, where, "incomplete", f"no {STAMP} (made by hand, by an older c3ae-edge, or interrupted)")
    if list(stamp.get("requirements") or []) != list(v.requirements):
        was = " ".join(stamp.get("requirements") or []) or "nothing recorded"
        return VenvState(key, where, "stale", f"prepared for {was}, this c3ae-edge needs {' '.join(v.requirements)}")
    have = _dist_infos(where)
    gone = [f"{n} {ver}" for n, ver in stamp["installed"].items() if have.get(_norm(n)) != ver]
    if gone:
        return VenvState(key, where, "incomplete", f"{', '.join(gone)} no longer installed as stamped")
    return VenvState(key, where, "ready", installed=dict(stamp["installed"]))


def python(key: str) -> Path | None:
    """The venv's interpreter when the venv is ready (stamped, complete, current), else None."""
    return folder(key) / "bin" / "python" if state(key).ready else None


def missing(key: str) -> str | None:
    """None when ready, else the one line that says what is wrong and how to prepare it."""
    return state(key).line()


_INSTALLED = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() "
    "if d.metadata['Name'] not in ('pip', 'setuptools', 'wheel')}, sort_keys=True))"
)


def prepare(key: str, log=print) -> Path:
    """Create (or repair) the venv, install its pinned requirements, probe it, stamp it; -> its interpreter."""
    from c3ae_edge import __version__
    from c3ae_edge.atomic import write_atomic

    if key not in VENVS:
        raise UsageError(f"unknown runtime {key!r}; known: {', '.join(VENVS)}")
    v, where = VENVS[key], folder(key)
    exe, now = where / "bin" / "python", state(key)
    if now.ready:
        log(f"{key}: ready at {where} ({_versions(now.installed)})")
        return exe
    log(f"{key}: {'creating' if now.state == 'missing' else f'repairing ({now.state}: {now.problem})'} {where}")
    (where / STAMP).unlink(missing_ok=True)  # an interrupted repair must not look ready
    where.parent.mkdir(parents=True, exist_ok=True)
    works = exe.is_file() and subprocess.run([str(exe), "-m", "pip", "--version"], capture_output=True).returncode == 0
    steps = [
        *([] if works else [[sys.executable, "-m", "venv", "--clear", str(where)]]),  # repair in place when it runs
        [str(exe), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *v.requirements],
        [str(exe), "-c", v.probe],
        [str(exe), "-c", _INSTALLED],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), cwd=where.parent)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise UsageError(f"{key}: preparing {where} failed at `{' '.join(cmd[:3])}`: {last}")
    installed = json.loads(r.stdout)
    stamp = {"runtime": key, "requirements": list(v.requirements), "installed": installed, "prepared_by": __version__}
    write_atomic(where / STAMP, json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    log(f"{key}: ready at {where} ({_versions(installed)})")
    return exe


def _versions(installed: dict[str, str]) -> str:
    return ", ".join(f"{n} {v}" for n, v in sorted(installed.items(), key=lambda kv: kv[0].lower()))


def _clean_env() -> dict[str, str]:
    """This environment without the variables that would let the runtime venv see our packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def package_only(where: Path) -> Path:
    """A folder holding only a link to this c3ae_edge package, to put on a runtime venv's PYTHONPATH: the venv then
    sees our code and its own packages, never the ones installed beside c3ae_edge. -> ``where``."""
    import c3ae_edge

    where.mkdir(parents=True, exist_ok=True)
    (where / "c3ae_edge").symlink_to(Path(c3ae_edge.__file__).resolve().parent, target_is_directory=True)
    return where
