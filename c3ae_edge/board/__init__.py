"""Scripts that run on the board, copied into bundles or beside them as they are: numpy, Pillow and the runtimes only
(a test checks their imports). ``reference_infer.py`` (bundle check), ``onboard.py`` (the on-board
bench) and ``facefind.py`` (the photo pipeline's face detector)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def board_script(name: str) -> Path:
    """Path of one of these scripts, to copy it somewhere."""
    return Path(str(resources.files(__package__) / name))
