"""Verification of artifacts against PyTorch on real faces, and re-verification of a written bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from c3ae_edge.errors import DataError, VerificationError
from c3ae_edge.export.bundle_check import check_sums
from c3ae_edge.export.parity import predict


def verify_bundle(bundle: str | Path, threads: int | None = 1) -> dict:
    """Recheck checksums, load every artifact, re-run parity on the bundle's stored faces. -> report dict."""
    from c3ae_edge.export import bundle_check
    from c3ae_edge.export.registry import get_backend

    b = Path(bundle)
    if b.name.endswith(".tar.gz") and b.is_file():
        with bundle_check.unpacked(b) as folder:
            try:
                return {**verify_bundle(folder, threads), "bundle": str(b)}
            except VerificationError as e:  # name the archive, not the temporary folder it was unpacked into
                raise VerificationError(str(e).replace(str(folder), f"{b}:{folder.name}")) from None
    if not b.is_dir():
        raise DataError(f"{b}: no such bundle folder")
    files = check_sums(b)
    man = bundle_check.load_manifest(b)
    spec = bundle_check.crop_spec(man, b)
    par = man.parity_set
    crops = bundle_check.load_parity(b, man, len(spec.scales))
    x = spec.normalize(crops)
    if len(spec.scales) == 1:
        x = x[:, 0]
    want = np.asarray(par["pytorch_age"], np.float32)
    backend = get_backend(man.backend)
    rows = []
    for art in man.artifacts:
        for rt in _runtimes(backend, art):
            try:
                rows.append(_recheck(bundle_check.confined(b, art["file"]), art, rt, x, want, threads))
            except (VerificationError, DataError):
                raise
            except Exception as e:  # a file that passed every check but that its runtime cannot load or run
                raise VerificationError(
                    f"{art['file']} under {rt.id}: cannot be run ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''})"
                ) from None
    rep = {"bundle": str(b), "files_checked": len(files), "artifacts": rows, "passed": True}
    if "engine" in man.extras:  # a microcontroller bundle's generated C99 engine, built for this host
        from c3ae_edge.export.engine.verify import verify_engine

        rep["engine"] = verify_engine(b, man, x)
    return rep


def _runtimes(backend, art: dict) -> list:
    """The runtimes this artifact was verified under at export that are usable here (at least the default one)."""
    recorded = [rid for rid, r in art.get("runtimes", {}).items() if r.get("status") == "verified"]
    usable = [rt for rt in backend.runtimes if rt.id in recorded and rt.missing() is None]
    return usable or [backend.runtimes[0]]


def _recheck(path: Path, art: dict, rt, x: np.ndarray, want: np.ndarray, threads: int | None) -> dict:
    """Ages on the parity faces within the artifact's tolerance; raw outputs against the golden ones of this runtime."""
    runner = rt.open(path, threads)
    got = predict(runner, x)
    diff = float(np.abs(got - want).max())
    ok = diff <= art["tolerance_years"]
    row = {
        "file": art["file"],
        "precision": art["precision"],
        "runtime": rt.id,
        "faces": len(x),
        "max_abs_diff_vs_pytorch": round(diff, 6),
        "tolerance_years": art["tolerance_years"],
        "passed": ok,
    }
    if not ok:
        raise VerificationError(
            f"{art['file']} under {rt.id}: max |age - PyTorch age| {diff:.4f} > {art['tolerance_years']} years on the "
            "bundle's parity faces"
        )
    if art.get("golden"):  # after the ages: a file that misses its tolerance is named for that first
        row["golden"] = _golden(runner, rt, art, x)
    return row


def _golden(runner, rt, art: dict, x: np.ndarray) -> dict:
    """Raw outputs against the golden ones recorded for this runtime, its version and this instruction set, bit for
    bit (a difference fails); elsewhere the closest golden's difference, as information ("recorded_here": False)."""
    from c3ae_edge.board.reference_infer import golden_applies, golden_site
    from c3ae_edge.export.crosscheck import compare_golden, runtime_version

    raw = runner.raw(x)
    site = golden_site(getattr(runner, "ran_as", rt.id), runtime_version(rt))
    golden, recorded = art["golden"], art.get("golden_recorded") or {}
    key = next((k for k in golden if golden_applies(k, recorded, site)), None)
    if key is None:
        rows = {k: compare_golden(raw, g) for k, g in golden.items()}
        sized = [k for k in rows if rows[k]["max_diff"] is not None]
        near = min(sized, key=lambda k: rows[k]["max_diff"], default=None)
        return {**(rows[near] if near else {"exact": False, "max_diff": None}), "recorded_here": False, "closest": near}
    g = {**compare_golden(raw, golden[key]), "recorded_here": True, "golden": key}
    if not g["exact"]:
        raise VerificationError(
            f"{art['file']} under {rt.id}: raw outputs differ from the golden outputs recorded for this runtime, "
            f"version and CPU by up to {g['max_diff']} (the artifact or the runtime is not what was exported)"
        )
    return g
