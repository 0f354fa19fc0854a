"""The one conversion step: a backend's converter writes one artifact, its output captured (``quiet``), Ctrl-C kept
catchable; -> the artifact's files, size and time. ``export`` (c3ae_edge.export.bundle) and the bench
(c3ae_edge.bench.harness) both convert through ``convert``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c3ae_edge.export.quiet import quiet


@dataclass(frozen=True)
class Converted:
    """One artifact written: its path, its files (the artifact, then its sidecar where the format has one), their
    bytes together, and the seconds the step took."""

    path: Path
    files: tuple[str, ...]
    bytes: int
    seconds: float


def artifact_files(backend, path: Path) -> tuple[str, ...]:
    """The artifact's file names: itself, then its sidecar where the format has one (OpenVINO's .bin)."""
    sidecar = backend.spec.options.get("sidecar")
    return (path.name,) + ((path.with_suffix(sidecar).name,) if sidecar else ())


def converted(backend, path: Path, seconds: float = 0.0) -> Converted:
    """The record of an artifact already on disk."""
    files = artifact_files(backend, path)
    return Converted(path, files, sum((path.parent / f).stat().st_size for f in files), seconds)


def convert(
    backend,
    model,
    example: np.ndarray,
    out_dir: Path,
    precision: str,
    calibration: np.ndarray | None,
    options: dict,
    verbose: bool = False,
    fp32: Path | None = None,
) -> Converted:
    """``backend.export`` of ``model`` at ``precision`` into ``out_dir`` (``calibration`` only for int8), its noise
    captured (shown with ``verbose`` or when the step fails). ``fp32``: an fp32 artifact already written; where the
    backend quantises int8 from such a file (``bench.int8_from_fp32``) that is tried first (saves a torch export)."""
    from c3ae_edge import interrupt

    interrupt.check()  # converters' native libraries may reset SIGINT to its default (kill, no cleanup)
    t0 = time.perf_counter()
    cal = calibration if precision == "int8" else None
    with quiet(verbose):
        path = _from_fp32(backend, fp32, out_dir, precision, cal, options) if fp32 is not None else None
        if path is None:
            path = backend.export(model, example[:1], out_dir, precision, cal, options)
    return converted(backend, path, time.perf_counter() - t0)


def _from_fp32(backend, fp32: Path, out_dir: Path, precision: str, cal, options: dict) -> Path | None:
    """The int8 artifact quantised from ``fp32`` (the same int8 the backend writes), or None where it cannot be."""
    make = backend.bench.int8_from_fp32 if backend.bench else None
    if precision != "int8" or make is None or not fp32.exists():
        return None
    dst = out_dir / f"{options['stem']}_int8{backend.spec.suffix}"
    try:
        return make(fp32, dst, cal, options)
    except Exception:  # noqa: BLE001 - the backend's own path follows
        return None
