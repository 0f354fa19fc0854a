"""Verification of artifacts against PyTorch on real faces, and re-verification of a written bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from c3ae_edge.errors import DataError, VerificationError
from c3ae_edge.export.bundle_check import check_sums
from c3ae_edge.export.parity import predict


def verify_bundle(bundle: str | Path, threads: int | None = 1, signed: bool = False) -> dict:
    """Recheck checksums, load every artifact, re-run parity on the bundle's stored faces, and re-derive every file
    that can be (``provenance``). ``signed``: the caller checked the signature, so a bundle of another c3ae-edge
    version (whose files this version cannot re-derive) is listed as unverified instead of refused. -> report."""
    from c3ae_edge.export import bundle_check

    b = Path(bundle)
    if b.name.endswith(".tar.gz") and b.is_file():
        with bundle_check.unpacked(b) as folder:
            try:
                return {**verify_bundle(folder, threads, signed), "bundle": str(b)}
            except VerificationError as e:  # name the archive, not the temporary folder it was unpacked into
                raise VerificationError(str(e).replace(str(folder), f"{b}:{folder.name}")) from None
    if not b.is_dir():
        raise DataError(f"{b}: no such bundle folder")
    files = check_sums(b)
    man = bundle_check.load_manifest(b)
    rows, not_rerun, x = _rerun(b, man, threads)
    from c3ae_edge.export.provenance import provenance

    prov = provenance(b, man, files, signed)
    extra = {}
    if "engine" in man.extras:  # after provenance: a C source that differs is named before the engine is built
        from c3ae_edge.export.engine.verify import verify_engine

        extra["engine"] = verify_engine(b, man, x)
    return {
        "bundle": str(b),
        "files_checked": len(files),
        "artifacts": rows,
        "not_rerun": not_rerun,
        **extra,
        **prov,
        "passed": True,
    }


def _rerun(b: Path, man, threads: int | None) -> tuple[list, list, np.ndarray]:
    """Every artifact under every runtime it was verified under at export that is usable here; -> (rows, what was
    recorded verified but cannot be re-run here with why, the parity faces' normalised crops)."""
    from c3ae_edge.export import bundle_check
    from c3ae_edge.export.registry import get_backend

    spec = bundle_check.crop_spec(man, b)
    crops = bundle_check.load_parity(b, man, len(spec.scales))
    x = spec.normalize(crops)
    if len(spec.scales) == 1:
        x = x[:, 0]
    want = np.asarray(man.parity_set["pytorch_age"], np.float32)
    backend = get_backend(man.backend)
    rows, not_rerun = [], []
    for art in man.artifacts:
        runtimes, skipped = _runtimes(backend, art)
        not_rerun += [{"file": art["file"], "runtime": rid, "why": why} for rid, why in skipped]
        for rt in runtimes:
            try:
                rows.append(_recheck(bundle_check.confined(b, art["file"]), art, rt, x, want, threads, man))
            except (VerificationError, DataError):
                raise
            except Exception as e:  # a file that passed every check but that its runtime cannot load or run
                raise VerificationError(
                    f"{art['file']} under {rt.id}: cannot be run ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''})"
                ) from None
    return rows, not_rerun, x


def _runtimes(backend, art: dict) -> tuple[list, list]:
    """The runtimes this artifact was verified under at export that are usable here (at least the default one), and
    (id, why) of those recorded verified that are not."""
    recorded = [rid for rid, r in art.get("runtimes", {}).items() if r.get("status") == "verified"]
    by_id = {rt.id: rt for rt in backend.runtimes}
    usable = [by_id[rid] for rid in recorded if rid in by_id and by_id[rid].missing() is None]
    skipped = [(rid, by_id[rid].missing() if rid in by_id else "unknown to this c3ae-edge") for rid in recorded]
    skipped = [(rid, why) for rid, why in skipped if why]
    skipped += [
        (rid, f"not verified at export either: {str(r.get('status', '?')).removeprefix('not verified: ')}")
        for rid, r in art.get("runtimes", {}).items()
        if isinstance(r, dict) and r.get("status") != "verified"
    ]
    return usable or [backend.runtimes[0]], skipped


def _recheck(path: Path, art: dict, rt, x: np.ndarray, want: np.ndarray, threads: int | None, man) -> dict:
    """Ages on the parity faces within the artifact's tolerance; raw outputs against the golden ones of this runtime;
    the manifest's record of the artifact (input, outputs, decoding, weights) against the artifact itself."""
    runner = rt.open(path, threads)
    _same_as_artifact(path, art, runner, man)
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


def _same_as_artifact(path: Path, art: dict, runner, man) -> None:
    """What manifest.json (and so c3ae_model.h) says of an artifact is what the artifact says of itself: input and
    output tensors (shapes, quantisation) and the metadata embedded at export (weights, crop, decoding)."""
    io = runner.io()
    for key in ("input", "outputs"):
        if _plain(io[key]) != _plain(art[key]):
            raise VerificationError(f"{path.parent}: manifest.json's {key} of {art['file']} is not the artifact's own")
    meta = getattr(runner, "meta", None) or {}
    dec = meta.get("decode") or {}
    checks = {
        "decode": ({k: _f32(v) for k, v in dec.items()}, {k: _f32(man.output["decode"].get(k)) for k in dec}),
        "weights_sha256": (meta.get("weights_sha256"), man.model["weights_sha256"]),
        "crop": (meta.get("crop"), man.crop),
        "model": (meta.get("model"), man.model["name"]),
    }
    for key, (embedded, recorded) in checks.items():
        if embedded and _plain(embedded) != _plain(recorded):
            raise VerificationError(
                f"{path.parent}: manifest.json's {key} differs from the one embedded in {art['file']} at export"
            )


def _f32(v):
    """Numbers as float32 (the metadata keeps 9 significant digits, the manifest full doubles of the same floats)."""
    try:
        return np.asarray(v, np.float32).tolist()
    except (TypeError, ValueError):
        return v


def _plain(v):
    """JSON-comparable: tuples as lists, numpy scalars as Python numbers."""
    import json

    return json.loads(json.dumps(v, default=lambda o: o.item() if hasattr(o, "item") else list(o)))
