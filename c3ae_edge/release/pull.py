"""``pull``: pick a release, download it into a temporary folder inside OUT, check every digest and the signature,
then rename it into place, under a lock, refusing downgrades. Nothing lands in OUT unless all of it checked out."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from c3ae_edge.errors import DataError, UsageError, VerificationError
from c3ae_edge.export.bundle_check import PULL_MARKER
from c3ae_edge.release.sign import PublicKey, Signature, verify_signed_bundle
from c3ae_edge.release.store import Release
from c3ae_edge.release.stores import open_store

RANGE_OPS = ("<", ">", "=", "!", "~")
MARKER = PULL_MARKER  # in every folder pull (and pull.sh) made; verify ignores it


@dataclass(frozen=True)
class Pulled:
    path: Path
    release: Release
    signature: Signature
    previous: str | None
    changed: bool


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``MODEL``, ``MODEL:latest``, ``MODEL:0.1.0`` or ``MODEL:>=0.1,<0.2``."""
    model, _, ver = spec.partition(":")
    if not model:
        raise UsageError(f"{spec!r}: expected MODEL[:VERSION] (VERSION: latest, 0.1.0, or a range like '>=0.1,<0.2')")
    return model, (None if ver in ("", "latest") else ver)


def choose(rels: list[Release], model: str, version: str | None, target: str, where: str, pre: bool = False) -> Release:
    """The newest release of model/target within ``version`` (exact, range, or None = latest). Pre-releases
    (``0.2.0rc1``) count for "latest" and ranges only with ``pre``; an exact version names one itself."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    mine = [r for r in rels if r.model == model and r.target == target]
    if not mine:
        have = sorted({f"{r.model}/{r.target}" for r in rels}) or ["nothing"]
        raise DataError(f"{where}: no release of {model} for target {target} (it holds: {', '.join(have)})")
    exact = bool(version) and not version.startswith(RANGE_OPS)
    try:
        spec = SpecifierSet(version if not exact else f"=={version}") if version else SpecifierSet()
    except InvalidSpecifier:
        raise UsageError(f"{version!r}: not a version or a version range (e.g. 0.1.0, '>=0.1,<0.2')") from None
    ok = []
    for r in mine:
        with contextlib.suppress(InvalidVersion):
            v = Version(r.version)
            if (exact or pre or not v.is_prerelease) and spec.contains(v, prereleases=True):
                ok.append((v, r))
    if not ok:
        hint = "" if pre or exact else "; pre-releases only with --pre"
        raise DataError(
            f"{where}: no {model} {version or 'release'} for {target} "
            f"(versions: {', '.join(sorted({r.version for r in mine}))}{hint})"
        )
    return max(ok, key=lambda t: t[0])[1]


def resolve_target(name: str) -> str:
    """A shipped target's alias to its name (rpi -> rpi4); any other name is taken as written."""
    from c3ae_edge.export.targets import builtin

    for t in builtin().values():
        if name == t.name or name in t.aliases:
            return t.name
    return name


def _installed_version(final: Path) -> str | None:
    try:
        return json.loads((final / "manifest.json").read_text())["model"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_newer(a: str, b: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) > Version(b)
    except InvalidVersion:
        return False


def _clean_stale(out: Path) -> None:
    """Temporary folders of pulls that died (SIGKILL, power loss): their pid is gone."""
    for p in out.glob(".pull-*.tmp"):
        with contextlib.suppress(ValueError, IndexError):
            pid = int(p.name.split(".")[-2])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                shutil.rmtree(p, ignore_errors=True)
            except PermissionError:
                pass


def _same(a: Path, b: Path) -> bool:
    try:
        return (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    except OSError:
        return False


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@dataclass(frozen=True)
class PullOptions:
    allow_downgrade: bool = False
    allow_expired: bool = False
    pre: bool = False
    force: bool = False  # replace OUT/<model>-<target> even if it holds files pull did not write


def pull(
    spec: str, target: str, source: str, key: str | Path, out: str | Path, opts: PullOptions | bool = False, log=print
) -> Pulled:
    """Resolve (the listing's serial and expiry checked), download, check, then atomically install
    ``OUT/<model>-<target>/``. ``opts`` may be a bool: allow_downgrade, as before."""
    from c3ae_edge.release import freshness

    opts = opts if isinstance(opts, PullOptions) else PullOptions(allow_downgrade=bool(opts))
    model, version = parse_spec(spec)
    target = resolve_target(target)
    pub = PublicKey.load(key)
    store = open_store(source)
    out = Path(out)
    final = out / f"{model}-{target}"
    rels = store.releases(pub)
    state = freshness.state_file(pub.text().splitlines()[1], store.state_location)
    freshness.check(store.listing, state, f"{store.location} release listing", opts.allow_expired)
    rel = choose(rels, model, version, target, store.location, opts.pre)
    prev = _installed_version(final)
    _check_replace(final, rel, prev, opts)
    made = _made_parents(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out}: cannot create the output folder ({e.strerror})") from None
    try:
        sig, changed = _download_install(store, rel, pub, out, final, opts, log)
    except BaseException:
        for p in made:  # an OUT this pull created stays only with a bundle in it
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    try:
        freshness.remember(store.listing, state)
    except UsageError as e:  # installed and checked: a state folder we cannot write only weakens the next pull
        log(f"note: {e}")
    return Pulled(final, rel, sig, prev, changed)


def _made_parents(out: Path) -> list[Path]:
    made, p = [], out
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    return made


def _download_install(store, rel: Release, pub, out: Path, final: Path, opts: PullOptions, log):
    old_term = None
    with contextlib.suppress(ValueError):  # not the main thread
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)  # a CI timeout cleans up like Ctrl-C
    _clean_stale(out)
    tmp = out / f".pull-{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        log(f"{store.location}: {rel.name} ({len(rel.files)} files, {sum(f.size for f in rel.files):,} bytes)")
        store.fetch(rel, tmp)
        try:
            sig = verify_signed_bundle(tmp, pub)
        except VerificationError as e:  # name the release, not our temporary folder
            raise VerificationError(str(e).replace(str(tmp), f"{store.location.rstrip('/')} {rel.name}")) from None
        f = sig.fields()
        if (f.get("model"), f.get("version"), f.get("target")) != (rel.model, rel.version, rel.target):
            raise VerificationError(
                f"{store.location}: {rel.name} holds a bundle signed as {f.get('model')} {f.get('version')} "
                f"{f.get('target')} (a signed bundle re-labelled: refusing)"
            )
        write_marker(tmp, rel, store)
        changed = _install(tmp, final, rel, opts, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return sig, changed


def write_marker(folder: Path, rel: Release, store) -> None:
    """``MARKER`` in a folder pull made: what it holds and where from (a folder without one is never replaced)."""
    doc = {"pulled": rel.name, "from": store.location, "serial": getattr(store.listing, "serial", None)}
    (folder / MARKER).write_text(json.dumps(doc) + "\n")


def user_files(final: Path) -> list[str]:
    """Files in a pulled folder that pull did not write, or that changed since (against its SHA256SUMS)."""
    from c3ae_edge.export.bundle_check import sha256

    listed = {}
    with contextlib.suppress(OSError):
        for line in (final / "SHA256SUMS").read_text().splitlines():
            digest, _, name = line.partition("  ")
            listed[name] = digest
    out = []
    for p in sorted(final.iterdir()):
        if p.name in (MARKER, "SHA256SUMS", "SHA256SUMS.minisig"):
            continue
        if p.name not in listed or not p.is_file() or p.is_symlink():
            out.append(p.name + ("/" if p.is_dir() else ""))
        elif sha256(p) != listed[p.name]:
            out.append(f"{p.name} (edited)")
    return out


def _check_replace(final: Path, rel: Release, prev: str | None, opts: PullOptions) -> None:
    """Replace only a folder pull made (its marker), holding nothing of the user's; never downgrade unless told."""
    if final.is_symlink() or (final.exists() and not (final / MARKER).is_file()):
        raise UsageError(
            f"{final}: exists and was not made by pull (no {MARKER}); refusing to replace it (move it away)"
        )
    if final.exists() and not opts.force:
        mine = user_files(final)
        if mine:
            raise UsageError(
                f"{final}: holds files pull did not write: {', '.join(mine[:5])}{', ...' if len(mine) > 5 else ''}; "
                "refusing to replace it (move them out, or --force deletes them)"
            )
    if prev and _is_newer(prev, rel.version) and not opts.allow_downgrade:
        raise UsageError(
            f"{final} holds {rel.model} {prev}, newer than {rel.version}: refusing to downgrade (--allow-downgrade)"
        )


def _install(tmp: Path, final: Path, rel: Release, opts: PullOptions, out: Path) -> bool:
    """Under a lock on OUT: re-check what may be replaced (another pull may have landed), then rename into place."""
    from c3ae_edge.export.bundle import replace_folder
    from c3ae_edge.release.index import folder_lock

    with folder_lock(out):
        same = _same(tmp, final)
        _check_replace(final, rel, _installed_version(final), opts)
        replace_folder(tmp, final)  # even when the same release is there: a locally damaged copy gets repaired
        return not same
