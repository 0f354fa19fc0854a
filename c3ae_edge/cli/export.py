"""``export``, ``verify`` and ``targets`` commands (typer only at import; the work happens in c3ae_edge.export)."""

from __future__ import annotations

import json

import typer


def _backend_help() -> str:
    from c3ae_edge.export.registry import list_backends

    return "; ".join(
        f"{s.name} ({s.suffix}: {'/'.join(s.precisions)}, runs on {'/'.join(s.runtimes)}, pip extra '{s.extra}')"
        for s in list_backends()
    )


def _check_export_args(verify_count: int, seed: int, max_int8_delta: float | None) -> None:
    from c3ae_edge.errors import UsageError

    if verify_count < 1:
        raise UsageError("--verify-count must be >= 1")
    if seed < 0:
        raise UsageError(f"--seed {seed}: must be >= 0")
    if max_int8_delta is not None and not 0 < max_int8_delta <= 10:
        raise UsageError(f"--max-int8-delta {max_int8_delta}: must be in (0, 10] years")


def _signer(sign: str | None):
    if not sign:
        return None
    from c3ae_edge.release.sign import SecretKey, sign_bundle

    secret = SecretKey.load(sign)
    return lambda folder: sign_bundle(folder, secret)


def _print_export(path, json_out: bool, archive: bool) -> None:
    from c3ae_edge.export.manifest import Manifest

    man = Manifest.read(path)
    if json_out:
        arts = [{k: a[k] for k in ("file", "precision", "bytes", "verification")} for a in man.artifacts]
        typer.echo(json.dumps({"bundle": str(path), "artifacts": arts}, indent=1))
    else:
        typer.echo(f"wrote {path}" + (f" and {path}.tar.gz" if archive else ""))


_O = typer.Option
_EXPORT = {
    "target": _O("rpi", "--target", "-t", help="target name (see `c3ae-edge targets`) or path to a board .toml"),
    "model": _O(None, "--model", help="model name (default: the weights' model, c3ae_full)"),
    "weights": _O(None, "--weights", help="weights file (default: the shipped default weights)"),
    "out": _O("exports", "--out", "-o", help="output folder; the bundle is OUT/<model>-<version>-<target>/"),
    "data": _O(None, "--data", help="face data root (default $C3AE_DATA or ../shared/data)"),
    "calibration": _O(
        None, "--calibration", help="your calibration faces: CSV, folder with labels.csv, or folder of chips"
    ),
    "calibration_count": _O(300, "--calibration-count", help="calibration faces (age-stratified, seeded)"),
    "verify_count": _O(500, "--verify-count", help="verification faces from the test split"),
    "seed": _O(0, "--seed"),
    "max_int8_delta": _O(
        None, "--max-int8-delta", help="years of MAE int8 may lose vs fp32 (default: the target's, 0.15)"
    ),
    "allow_degraded": _O(False, "--allow-degraded", help="write the bundle even if int8 loses more than allowed"),
    "archive": _O(False, "--archive", help="also write <bundle>.tar.gz"),
    "json_out": _O(False, "--json", help="print the manifest's verification summary as JSON"),
    "sign": _O(None, "--sign", help="minisign secret key (`c3ae-edge keygen`): sign SHA256SUMS (SHA256SUMS.minisig)"),
    "verbose": _O(False, "--verbose", "-v", help="show the converters' own output (hidden unless a step fails)"),
    "engine": _O(
        None,
        "--engine",
        help="microcontroller targets: c99 (the generated C99 int8 engine, their default) or tflm "
        "(TFLite Micro flatbuffer + C sources)",
    ),
    "allow_unverified_runtime": _O(
        False, "--allow-unverified-runtime", help="with --sign: sign even if a runtime the target names cannot verify"
    ),
    "force": _O(False, "--force", help="replace a signed bundle, or one built from other weights, of the same name"),
}


_VERIFY_HELP = (
    "Recheck a bundle (folder or .tar.gz): checksums, every artifact re-run on its stored faces, every file "
    "it can re-derive re-derived (C sources, headers, README, scripts, detector); the last line says whether its "
    "origin is proven (--key)."
)
_RUNTIMES_HELP = (
    "Runtimes that exports are verified under: which are usable "
    "here; `prepare NAME` builds a runtime's own venv (online, once)."
)


def register(app: typer.Typer) -> None:
    app.command(help="Export a verified artifact bundle for a board. Backends: " + _backend_help())(export)
    app.command(help=_VERIFY_HELP)(verify)
    app.command(help=_RUNTIMES_HELP)(runtimes)
    app.command(help="Target profiles and what each export produces.")(targets)


def export(
    target: str = _EXPORT["target"],
    model: str = _EXPORT["model"],
    weights: str = _EXPORT["weights"],
    out: str = _EXPORT["out"],
    data: str = _EXPORT["data"],
    calibration: str = _EXPORT["calibration"],
    calibration_count: int = _EXPORT["calibration_count"],
    verify_count: int = _EXPORT["verify_count"],
    seed: int = _EXPORT["seed"],
    max_int8_delta: float = _EXPORT["max_int8_delta"],
    allow_degraded: bool = _EXPORT["allow_degraded"],
    archive: bool = _EXPORT["archive"],
    json_out: bool = _EXPORT["json_out"],
    sign: str = _EXPORT["sign"],
    verbose: bool = _EXPORT["verbose"],
    engine: str = _EXPORT["engine"],
    allow_unverified_runtime: bool = _EXPORT["allow_unverified_runtime"],
    force: bool = _EXPORT["force"],
) -> None:
    _export(**locals())


def _export(**o) -> None:
    """``c3ae-edge export``: check the numbers, ask the key's passphrase first, export, print the bundle."""
    from c3ae_edge.export.bundle import ExportRequest, export_bundle

    _check_export_args(o["verify_count"], o["seed"], o["max_int8_delta"])
    signer = _signer(o["sign"])  # the passphrase is asked now, not after minutes of export
    say = (lambda m: None) if o["json_out"] else (lambda m: typer.echo(m, err=True))
    same = (
        "model",
        "weights",
        "out",
        "data",
        "calibration",
        "seed",
        "allow_degraded",
        "archive",
        "verbose",
        "engine",
        "force",
    )
    req = ExportRequest(
        o["target"],
        **{k: o[k] for k in same},
        n_cal=o["calibration_count"],
        n_verify=o["verify_count"],
        max_delta=o["max_int8_delta"],
        signer=signer,
        allow_unverified_runtime=o["allow_unverified_runtime"],
    )
    _print_export(export_bundle(req, log=say), o["json_out"], o["archive"])


def verify(
    bundle: str = typer.Argument(..., help="bundle folder or .tar.gz written by `c3ae-edge export`"),
    json_out: bool = typer.Option(False, "--json"),
    key: str = typer.Option(
        None, "--key", "-k", help="trusted public key: check SHA256SUMS.minisig before anything else"
    ),
) -> None:
    from pathlib import Path

    from c3ae_edge.export.verify import verify_bundle

    if key:
        from c3ae_edge.release.sign import PublicKey, verify_with_key

        rep = verify_with_key(Path(bundle), PublicKey.load(key))
    else:
        rep = verify_bundle(bundle)
    if json_out:
        typer.echo(json.dumps(rep, indent=1))
    else:
        for line in verify_lines(rep):
            typer.echo(line)


def runtimes(
    action: str = typer.Argument("list", help="list | prepare"),
    name: str = typer.Argument(None, help="with prepare: tflite-runtime"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    from c3ae_edge.errors import UsageError
    from c3ae_edge.export import runtime_env
    from c3ae_edge.export.registry import get_backend, list_backends

    if action == "prepare":
        if not name:
            raise UsageError(f"runtimes prepare needs a name: {', '.join(runtime_env.VENVS)}")
        runtime_env.prepare(name, log=lambda m: typer.echo(m, err=True))
        return
    if action != "list":
        raise UsageError(f"unknown action {action!r}: list or prepare")
    rows = [
        {
            "id": rt.id,
            "backend": s.name,
            "delegate": rt.delegate,
            "usable": rt.missing() is None,
            "why_not": rt.missing(),
            "note": rt.note,
        }
        for s in list_backends()
        for rt in get_backend(s.name).runtimes
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        typer.echo(
            f"{r['id']:24s} {r['backend']:9s} {'ready' if r['usable'] else 'NOT READY: ' + r['why_not']}\n    "
            f"{r['note']}"
        )


def targets(json_out: bool = typer.Option(False, "--json")) -> None:
    from c3ae_edge.export.registry import get_backend
    from c3ae_edge.export.targets import builtin

    rows = []
    for t in builtin().values():
        spec = get_backend(t.backend).spec
        files = [f"<model>_{p}{spec.suffix}" for p in t.precisions]
        rows.append({**t.to_dict(), "produces": files, "extra": spec.extra})
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        alias = f" (alias {', '.join(r['aliases'])})" if r["aliases"] else ""
        typer.echo(
            f"{r['name']}{alias}: {r['description']}\n    {r['backend']} {'/'.join(r['precisions'])} -> "
            f"{', '.join(r['produces'])}; {r['runtime']}, {r['threads']} thread(s); verified under "
            f"{', '.join(r['runtimes'])}"
            + (f"; int8 rewrites: {', '.join(r['int8_rewrites'])}" if r["int8_rewrites"] else "")
            + f"; needs c3ae-edge[{r['extra']}]"
        )


def verify_lines(rep: dict) -> list[str]:
    """verify's report as lines: what was checked, what was not re-run or cannot be derived, and last the origin."""
    b, lines = rep["bundle"], []
    if "signature" in rep:
        lines.append(f"{b}: signature OK, trusted comment: {rep['signature']['trusted_comment'].replace(chr(9), ' ')}")
    lines.append(f"{b}: {rep['files_checked']} checksums OK")
    for r in rep["artifacts"]:
        g = r.get("golden")
        gold = (
            ""
            if not g
            else (
                "; golden outputs bit-exact"
                if g.get("recorded_here", True)
                else f"; no golden outputs for this runtime and CPU (closest, {g['closest']}: up to "
                f"{g['max_diff']:g} away, information)"
            )
        )
        lines.append(
            f"  {r['file']} under {r['runtime']}: max |age - PyTorch| {r['max_abs_diff_vs_pytorch']:.4f} <= "
            f"{r['tolerance_years']} years on {r['faces']} faces: OK{gold}"
        )
    eng = rep.get("engine")
    if eng:
        done = eng["status"] == "bit-exact"
        lines.append(
            "  C99 engine (host build): "
            + (f"features bit-exact with the golden ones on {eng['faces']} faces" if done else eng["status"])
        )
    lines += [f"  {n['file']} under {n['runtime']}: NOT re-run here ({n['why']})" for n in rep.get("not_rerun", [])]
    if rep.get("derived"):
        lines.append(f"  re-derived, identical: {', '.join(rep['derived'])}")
    if rep.get("copies"):
        lines.append(f"  identical to c3ae-edge's own copies: {', '.join(rep['copies'])}")
    if rep.get("detector"):
        d = rep["detector"]
        lines.append(f"  detector model {d['file']}: the one provenance.json records ({d['source']})")
    if rep.get("sections"):
        lines.append(f"  recomputed, identical: {', '.join(rep['sections'])}")
    lines += [f"  unverified: {name}: {why}" for name, why in (rep.get("unverified") or {}).items()]
    lines.append(f"{b}: " + rep.get("origin", ""))
    return lines
