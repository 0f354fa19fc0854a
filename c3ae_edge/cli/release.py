"""``keygen``, ``sign``, ``publish``, ``refresh``, ``releases`` and ``pull``: signed releases (typer only at import).
Each command is a module-level function; ``register`` adds them to the app in one loop."""

from __future__ import annotations

import json
from pathlib import Path

import typer

_DAYS_HELP = "days until the signed listing expires (pulls refuse an expired one: re-sign with `c3ae-edge refresh`)"


def load_key(path: str):
    """A minisign secret key (asks for its passphrase) or public key, told apart by their size."""
    from c3ae_edge.release.sign import PublicKey, SecretKey, minisign_lines

    return PublicKey.load(path) if len(minisign_lines(Path(path), 2)[1].strip()) < 100 else SecretKey.load(path)


def keygen(
    stem: str = typer.Argument(..., help="writes STEM.key and STEM.pub"),
    unencrypted: bool = typer.Option(
        False, "--unencrypted", help="do not encrypt the secret key (CI secrets stores); the file says so"
    ),
    force: bool = typer.Option(False, "--force", help="overwrite an existing pair (never through a symbolic link)"),
) -> None:
    from c3ae_edge.release.sign import write_keypair

    sec, pub, key = write_keypair(stem, unencrypted, force)
    typer.echo(f"wrote {sec} ({'UNENCRYPTED' if unencrypted else 'encrypted'}) and {pub}, key id {key.id}")
    typer.echo(f"minisign -V -P {pub.read_text().splitlines()[1]} -m SHA256SUMS", err=True)


def sign(
    bundle: str = typer.Argument(..., help="bundle folder written by `c3ae-edge export`"),
    key: str = typer.Option(..., "--key", "-k", help="secret key from `c3ae-edge keygen` or `minisign -G`"),
    allow_unverified_runtime: bool = typer.Option(
        False, "--allow-unverified-runtime", help="sign even if the bundle records a runtime that did not verify it"
    ),
) -> None:
    from c3ae_edge.errors import DataError
    from c3ae_edge.release.sign import SecretKey, check_signable, sign_bundle

    if not Path(bundle).is_dir():
        raise DataError(f"{bundle}: no such bundle folder")
    check_signable(Path(bundle), allow_unverified_runtime)  # before the key's passphrase is asked for
    sig = sign_bundle(Path(bundle), SecretKey.load(key))
    typer.echo(f"signed {bundle}/SHA256SUMS: {sig.trusted_comment.replace(chr(9), ' ')}")


def publish(
    bundle: str = typer.Argument(..., help="signed bundle folder"),
    to: str = typer.Option(
        ..., "--to", help="a folder (served by any static web server) or oci://HOST[:PORT]/REPO[:TAG]"
    ),
    key: str = typer.Option(
        ..., "--key", "-k", help="secret key: checks the bundle's signature and signs the store's listing"
    ),
    force: bool = typer.Option(False, "--force", help="replace a release that is already published"),
    expires_days: float = typer.Option(90, "--expires-days", help=_DAYS_HELP),
) -> None:
    import time

    from c3ae_edge.release.stores import open_store

    store = open_store(to)
    t0 = time.perf_counter()
    rel = store.publish(Path(bundle), load_key(key), force=force, days=expires_days)
    typer.echo(
        f"published {rel.name} to {to} ({len(rel.files)} files, {sum(f.size for f in rel.files):,} bytes, "
        f"ref {rel.ref}; listing serial {store.listing.serial}, expires {store.listing.expires}) "
        f"in {time.perf_counter() - t0:.2f}s"
    )


def refresh(
    to: str = typer.Option(..., "--to", help="the store: a folder or oci://HOST[:PORT]/REPO"),
    key: str = typer.Option(..., "--key", "-k", help="the store's secret key"),
    expires_days: float = typer.Option(90, "--expires-days", help=_DAYS_HELP),
) -> None:
    from c3ae_edge.release.stores import open_store

    listing = open_store(to).refresh(load_key(key), expires_days)
    typer.echo(f"re-signed {to}: serial {listing.serial}, signed {listing.signed_at}, expires {listing.expires}")


def releases(
    source: str = typer.Option(..., "--from", help="folder, http(s) URL of a static index, or oci://HOST[:PORT]/REPO"),
    key: str = typer.Option(..., "--key", "-k", help="trusted public key"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    from c3ae_edge.release.sign import PublicKey
    from c3ae_edge.release.stores import open_store

    rels = open_store(source).releases(PublicKey.load(key))
    if json_out:
        typer.echo(json.dumps([r.to_dict() for r in rels], indent=1))
        return
    for r in rels:
        typer.echo(
            f"{r.model} {r.version} {r.target}  {len(r.files)} files, {sum(f.size for f in r.files):,} bytes  "
            f"built {r.build_time}  key {r.key_id}  ({r.ref})"
        )


def pull(
    spec: str = typer.Argument(
        ..., help="MODEL[:VERSION]; VERSION: latest (default), 0.1.0, or a range like '>=0.1,<0.2'"
    ),
    target: str = typer.Option(..., "--target", "-t", help="board target (rpi4, x86, ...)"),
    source: str = typer.Option(..., "--from", help="folder, http(s) URL of a static index, or oci://HOST[:PORT]/REPO"),
    key: str = typer.Option(..., "--key", "-k", help="trusted public key (minisign format)"),
    out: str = typer.Option(..., "--out", "-o", help="folder; the bundle lands in OUT/<model>-<target>/"),
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade", help="replace a newer installed version"),
    allow_expired: bool = typer.Option(False, "--allow-expired", help="accept a store listing past its expiry"),
    pre: bool = typer.Option(False, "--pre", help="let pre-releases (0.2.0rc1) count for latest and ranges"),
    force: bool = typer.Option(
        False, "--force", help="replace OUT/<model>-<target> even if it holds files pull did not write (deleted)"
    ),
) -> None:
    import time

    from c3ae_edge.release.pull import PullOptions
    from c3ae_edge.release.pull import pull as do_pull
    from c3ae_edge.release.sign import key_id_hex

    t0 = time.perf_counter()
    opts = PullOptions(allow_downgrade, allow_expired, pre, force)
    try:
        p = do_pull(spec, target, source, key, out, opts, log=lambda m: typer.echo(m, err=True))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (a CI timeout): the temporary folder is already gone
        typer.echo(f"c3ae-edge: pull interrupted: nothing was installed in {out}", err=True)
        raise SystemExit(130) from None  # not typer.Exit(130): the entry point would add its own line
    r = p.release
    was = "" if not p.previous else (f" (was {p.previous})" if p.changed else " (already there; re-checked)")
    typer.echo(
        f"pulled {r.model} {r.version} {r.target} -> {p.path}{was}: signature by key "
        f"{key_id_hex(p.signature.key_id)} and {len(r.files)} digests OK in {time.perf_counter() - t0:.2f}s"
    )


COMMANDS = (
    (
        keygen,
        "Make a minisign-compatible ed25519 key pair: STEM.key (secret, passphrase-encrypted with scrypt) and "
        "STEM.pub.",
    ),
    (
        sign,
        "Sign a bundle's SHA256SUMS (writes SHA256SUMS.minisig; trusted comment: model, version, target, weights, "
        "build time).",
    ),
    (
        publish,
        "Publish a signed bundle: --to DIR (static index: folder, .tar.gz, signed index.json) or --to "
        "oci://HOST[:PORT]/REPO[:TAG]; the store's listing is re-signed with the next serial and an expiry.",
    ),
    (refresh, "Re-sign a store's listing (static index or OCI release list) with the next serial and a new expiry."),
    (releases, "List the releases in a store (the signed listing checked under --key)."),
    (
        pull,
        "Pull a signed release into OUT/<model>-<target>/: the listing's serial and expiry, every digest and the "
        "signature checked before anything lands.",
    ),
)


def register(app: typer.Typer) -> None:
    for fn, text in COMMANDS:
        app.command(help=text)(fn)
