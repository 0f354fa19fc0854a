"""``pull``: pick a release, download it into a temporary folder inside OUT, check every digest and the signature,
then rename it into place, under a lock, refusing downgrades. Nothing lands in OUT unless all of it checked out."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from c3ae_edge.errors import DataError, UsageError, VerificationError
from c3ae_edge.release.sign import PublicKey, Signature, verify_signed_bundle
from c3ae_edge.release.store import Release
from c3ae_edge.release.stores import open_store

RANGE_OPS = ("<", ">", "=", "!", "~")


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


def choose(rels: list[Release], model: str, version: str | None, target: str, where: str) -> Release:
    """The newest release of model/target within ``version`` (exact, range, or None = latest; pre-releases only if
    named)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    mine = [r for r in rels if r.model == model and r.target == target]
    if not mine:
        have = sorted({f"{r.model}/{r.target}" for r in rels}) or ["nothing"]
        raise DataError(f"{where}: no release of {model} for target {target} (it holds: {', '.join(have)})")
    try:
        spec = SpecifierSet(version if version.startswith(RANGE_OPS) else f"=={version}") if version else SpecifierSet()
    except InvalidSpecifier:
        raise UsageError(f"{version!r}: not a version or a version range (e.g. 0.1.0, '>=0.1,<0.2')") from None
    ok = []
    for r in mine:
        with contextlib.suppress(InvalidVersion):
            if spec.contains(
                Version(r.version), prereleases=bool(version and not version.startswith(RANGE_OPS)) or None
            ):
                ok.append((Version(r.version), r))
    if not ok:
        raise DataError(
            f"{where}: no {model} {version} for {target} (versions: {', '.join(sorted({r.version for r in mine}))})"
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


def pull(
    spec: str, target: str, source: str, key: str | Path, out: str | Path, allow_downgrade: bool = False, log=print
) -> Pulled:
    """Resolve, download, check, then atomically install ``OUT/<model>-<target>/``."""
    model, version = parse_spec(spec)
    target = resolve_target(target)
    pub = PublicKey.load(key)
    store = open_store(source)
    out = Path(out)
    final = out / f"{model}-{target}"
    rel = choose(store.releases(pub), model, version, target, store.location)
    prev = _installed_version(final)
    if prev and _is_newer(prev, rel.version) and not allow_downgrade:
        raise UsageError(
            f"{final} holds {model} {prev}, newer than {rel.version}: refusing to downgrade (--allow-downgrade)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out}: cannot create the output folder ({e.strerror})") from None
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
        changed = _install(tmp, final, rel, allow_downgrade, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return Pulled(final, rel, sig, prev, changed)


def _install(tmp: Path, final: Path, rel: Release, allow_downgrade: bool, out: Path) -> bool:
    """Under OUT's lock: re-check the downgrade rule (another pull may have landed) and rename into place."""
    from c3ae_edge.export.bundle import replace_folder

    with open(out / ".c3ae-pull.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        same = _same(tmp, final)
        prev = _installed_version(final)
        if prev and _is_newer(prev, rel.version) and not allow_downgrade:
            raise UsageError(
                f"{final} holds {rel.model} {prev}, newer than {rel.version}: refusing to downgrade (--allow-downgrade)"
            )
        replace_folder(tmp, final)  # even when the same release is there: a locally damaged copy gets repaired
        return not same
