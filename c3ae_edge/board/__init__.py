"""Scripts that run on the board, copied into bundles or beside them as they are: numpy, Pillow and the runtimes only
(a test checks their imports). ``reference_infer.py`` (bundle check), ``onboard.py`` (the on-board bench),
``stats.py`` (its timing statistics, shared with ``c3ae-edge bench``), ``facefind.py`` and ``blazeface.py`` (the photo
pipeline's face detectors)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

RUNNER_SCRIPTS = ("onboard.py", "stats.py", "facefind.py")  # what travels beside a bundle to run it (write-runner)


def board_script(name: str) -> Path:
    """Path of one of these scripts, to copy it somewhere."""
    return Path(str(resources.files(__package__) / name))
