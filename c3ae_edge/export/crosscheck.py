"""Export-time verification of one artifact under every runtime its target names, with golden outputs.

An int8 graph is only as good as the kernels that run it: the same file can be exact on one CPU or runtime and years
off on another (int16 saturation on AVX2, other rounding in reference kernels). So each artifact is measured under
each runtime a board may use, on the same faces, and every figure lands in the manifest beside the CPU it came from.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from c3ae_edge.board.reference_infer import golden_outputs  # one format, on the board and here
from c3ae_edge.export.parity import judge, measure, predict, tolerance

INT8_ISAS = (
    ("amx_int8", "amx"),
    ("avx512_vnni", "avx512-vnni"),
    ("avx_vnni", "avx-vnni"),
    ("avx512bw", "avx512"),
    ("avx2", "avx2"),
    ("i8mm", "neon-i8mm"),
    ("asimddp", "neon-dotprod"),
    ("asimd", "neon"),
    ("neon", "neon"),
)


def cpu() -> dict:
    """This CPU's model and the best integer dot-product ISA its flags show (what picks the int8 kernels)."""
    from c3ae_edge.board.onboard import cpu_info

    c = cpu_info()
    flags = set(c["flags"])
    isa = next((name for flag, name in INT8_ISAS if flag in flags), "generic")
    return {"model": c["model"], "int8_isa": isa, "flags": c["flags"]}


def runtime_version(rt) -> str | None:
    """The version of the runtime package behind ``rt`` (its own answer first), or None."""
    if rt.version:
        return rt.version()
    try:
        return metadata.version(rt.package)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class Faces:
    """Verification faces (model input), their labels and PyTorch ages; the parity faces' inputs."""

    x: np.ndarray
    ages: np.ndarray
    ref: np.ndarray
    parity_x: np.ndarray


def runtimes_for(backend, target) -> list:
    by_id = {r.id: r for r in backend.runtimes}
    return [by_id[i] for i in (target.runtimes or (backend.runtimes[0].id,))]


def verify_artifact(
    backend,
    target,
    path: Path,
    precision: str,
    faces: Faces,
    bars: dict,
    allow_degraded: bool,
    log=print,
    hush=contextlib.nullcontext,
) -> dict:
    """-> {"runtimes": {id: row}, "golden": {id: outputs}, "golden_recorded": {id: where they hold bit for bit},
    "verification": primary row, "tolerance_years": float, "io"}.
    A runtime that is not usable here is recorded as "not verified: <why>" (one log line); at least one must run.
    ``hush()`` wraps opening and running a runtime (their native log lines)."""
    from c3ae_edge.board.reference_infer import golden_site
    from c3ae_edge.errors import VerificationError

    rows, golden, recorded, measured, io = {}, {}, {}, [], None
    for rt in runtimes_for(backend, target):
        why = rt.missing()
        row = {
            "package": rt.package,
            "version": None if why else runtime_version(rt),
            "delegate": rt.delegate,
            "note": rt.note,
        }
        if why:
            log(f"warning: not verified under {rt.id}: {why}")
            rows[rt.id] = {**row, "status": f"not verified: {why}"}
            continue
        with hush():
            runner = rt.open(path, 1)
            io = io or runner.io()
            ages, raw = predict(runner, faces.x), runner.raw(faces.parity_x)
        m = measure(ages, faces.ref, faces.ages)
        res = judge(precision, m, bars, allow_degraded, where=f"{path.name} under {rt.id}")
        rows[rt.id] = {**row, "status": "verified", "verification": {**m, **res}}
        golden[rt.id] = golden_outputs(raw)
        recorded[rt.id] = golden_site(getattr(runner, "ran_as", rt.id), row["version"])  # where they are bit-exact
        measured.append(m)
    if not measured:
        raise VerificationError(f"{path.name}: no runtime of target {target.name} is usable here ({', '.join(rows)})")
    primary = next(r for r in rows.values() if r["status"] == "verified")
    return {
        "runtimes": rows,
        "golden": golden,
        "golden_recorded": recorded,
        "verification": primary["verification"],
        "io": io,
        "tolerance_years": tolerance(precision, max(m["max_abs_diff_vs_pytorch"] for m in measured)),
    }


def compare_golden(raw: dict[str, np.ndarray], want: dict) -> dict:
    """Re-run outputs vs recorded golden: bit-exact?, and the largest difference (quantisation steps for integers)."""
    worst, exact = 0.0, True
    for name, g in want.items():
        ref = np.asarray(g["values"], dtype=g["dtype"]).reshape(g["shape"])
        got = np.asarray(raw[name])
        if got.shape != ref.shape:
            return {"exact": False, "max_diff": None, "note": f"{name}: shape {list(got.shape)} != {g['shape']}"}
        d = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        exact &= (
            bool((got == ref).all())
            if np.issubdtype(ref.dtype, np.integer)
            else bool((got.astype(np.float32) == ref.astype(np.float32)).all())
        )
        worst = max(worst, float(d.max()) if d.size else 0.0)
    return {"exact": exact, "max_diff": worst}


def once(log):
    """``log`` that prints each distinct message once (a missing runtime is said once per export, not per artifact)."""
    seen: set[str] = set()

    def say(msg: str) -> None:
        if msg not in seen:
            seen.add(msg)
            log(msg)

    return say
