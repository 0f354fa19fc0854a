"""Where the data that ships beside the code lives: the top-level ``targets/`` and ``calibration/`` folders.

A wheel installs them inside the package (``c3ae_edge/targets``, ``c3ae_edge/calibration``: a setuptools
``package-dir`` mapping in pyproject.toml); a checkout, editable or on ``PYTHONPATH``, keeps them at the repository's
top level, next to ``c3ae_edge/``. One copy either way.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
FOLDERS = ("targets", "calibration")


def folder(name: str) -> Path:
    """The shipped folder ``name``: inside the installed package, else beside it in a checkout."""
    if name not in FOLDERS:
        raise ValueError(f"not a shipped folder: {name!r}")
    installed = PACKAGE / name
    return installed if installed.is_dir() else PACKAGE.parent / name


ARTIFACTS = PACKAGE / "weights" / "artifacts"  # the verified artifacts predict runs: ARTIFACTS/<model>/manifest.json
