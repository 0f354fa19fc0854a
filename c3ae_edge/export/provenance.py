"""What ``verify`` can prove about a bundle without its key, beyond checksums and re-running the artifacts: every file
it can re-derive is re-derived and compared (``export.derived``: C sources, headers, README, the package's scripts),
the detector model against the package's provenance record, manifest sections against what they are computed from.
What it cannot derive is listed as unverified, and without a signature the bundle's origin is unproven."""

from __future__ import annotations

import json
from pathlib import Path

from c3ae_edge.errors import UsageError, VerificationError

UNPROVEN = (
    "origin unproven: no --key, so whoever rewrites a bundle and its checksums can make every check above pass "
    "for files it cannot re-derive; verify --key PUB proves who built it"
)
RECORDS = {
    "parity_crops.npy": "the export's parity faces; parity_set.pytorch_age is the export's record of PyTorch on them",
    "calibration_files.txt": "the faces the int8 graph was calibrated on (the faces are not in the bundle)",
    "manifest.json verification, calibration": "figures measured at export on faces that are not in the bundle",
}


def provenance(b: Path, man, listed: list[str], signed: bool) -> dict:
    """-> {"derived", "copies", "sections", "detector", "unverified", "origin"}; a difference is a
    VerificationError naming the file."""
    from c3ae_edge import __version__
    from c3ae_edge.export import derived
    from c3ae_edge.export.registry import get_backend

    backend = get_backend(man.backend)
    reg = derived.registry(man.to_dict(), backend)
    made_by = man.toolchain.get("c3ae-edge")
    out = {"derived": {}, "copies": {}, "sections": [], "detector": detector_model(b, man)}
    unverified = {}
    if made_by == __version__:
        out["sections"], unverified = _sections(b, man, backend)  # first: the files below are made from them
        chk = derived.check(b, man.to_dict(), backend, listed)
        out["derived"], out["copies"] = chk.generated, chk.copies
        unverified.update(chk.unverified)
    elif not signed:
        raise VerificationError(
            f"{b}: made by c3ae-edge {made_by}, this is {__version__}: its C sources, README and scripts cannot be "
            f"re-derived here (verify it with c3ae-edge {made_by}, or prove its origin with --key)"
        )
    else:
        unverified = {n: f"made by c3ae-edge {made_by}: not re-derived by {__version__}" for n in sorted(reg)}
    covered = {f for a in man.artifacts for f in a.get("files", [a["file"]])} | set(reg) | {"manifest.json"}
    if out["detector"]:
        covered.add(out["detector"]["file"])
    unverified.update({k: v for k, v in RECORDS.items() if k.split()[0] in listed})
    unverified.update({n: "not a file c3ae-edge writes" for n in listed if n not in covered and n not in RECORDS})
    out["unverified"] = unverified
    out["origin"] = "signed" if signed else UNPROVEN
    return out


def detector_model(b: Path, man) -> dict | None:
    """A shipped detector model must be one the package's provenance.json records (by name and sha256)."""
    from c3ae_edge.data.blazeface_detector import provenance as record

    det = man.face_box.get("detector") or {}
    if not isinstance(det, dict) or "files" not in det:
        return None
    name = det["files"].get("model") if isinstance(det["files"], dict) else None
    sha = (det.get("model") or {}).get("sha256")
    prov = record()
    known = prov["files"].get(name) if isinstance(name, str) else None
    if known is None or known["sha256"] != sha:
        raise VerificationError(
            f"{b}: detector model {name!r} (sha256 {str(sha)[:16]}...) is not a model c3ae_edge/data/detectors/"
            "provenance.json records (replaced: refusing)"
        )
    return {"file": name, "sha256": sha, "source": f"{prov['package']} {prov['version']}"}


def _sections(b: Path, man, backend) -> tuple[list[str], dict]:
    """Manifest sections recomputed from what they describe: the detector record, a shipped target's profile, and a
    backend's own (``rederive_sections``: TFLM's arena, flash and ops)."""
    from c3ae_edge.export.bundle_detector import bundle_record

    checked, unverified = [], {}
    det = man.face_box.get("detector") or {}
    if isinstance(det, dict) and det.get("name"):
        if det != json.loads(json.dumps(bundle_record(det["name"]))):  # tuples as JSON lists
            raise VerificationError(f"{b}: manifest.json face_box.detector is not what c3ae-edge records for it")
        checked.append("manifest.json face_box.detector")
    target = _builtin_target(man.target.get("name"), man.target.get("engine"))
    if target is None:
        unverified["manifest.json target"] = "not a shipped target: the profile is the export's record"
    elif {k: v for k, v in target.to_dict().items() if k != "source"} != man.target:
        raise VerificationError(f"{b}: manifest.json target is not the shipped profile {man.target['name']!r}")
    else:
        checked.append("manifest.json target")
    if hasattr(backend, "rederive_sections"):
        from c3ae_edge.export.derived import Source

        more = backend.rederive_sections(Source(b, man.to_dict()))
        checked += more["checked"]
        unverified.update(more["unverified"])
    return checked, unverified


def _builtin_target(name: object, engine: object):
    """The shipped profile ``name`` as export writes it: with the ``--engine`` the manifest records applied."""
    from c3ae_edge.export.targets import builtin, with_engine

    target = builtin().get(name) if isinstance(name, str) else None
    if target is None or not engine or engine == target.engine:
        return target
    try:
        return with_engine(target, engine if isinstance(engine, str) else repr(engine))
    except UsageError:
        return target  # an engine export could not have written: the comparison below names the section
