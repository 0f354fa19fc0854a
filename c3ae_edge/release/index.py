"""The static store: bundle folders, deterministic ``.tar.gz`` files and a signed ``index.json`` (plus ``index.txt``
for ``pull.sh``) in a folder that any static web server, object store or release page can serve."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from c3ae_edge.errors import DataError, UsageError, VerificationError
from c3ae_edge.release import freshness
from c3ae_edge.release.sign import PublicKey, SecretKey, check
from c3ae_edge.release.store import FileEntry, Release, check_entry, copy_checked, fetch_url, http_get, release_of

SCHEMA = "c3ae-edge-index/1"
INDEX, INDEX_TXT = "index.json", "index.txt"


def version_key(v: str):
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(v), v)
    except InvalidVersion:
        return (-1, None, v)


class StaticStore:
    """A folder (read-write) or an http(s) URL (read-only) holding ``index.json``."""

    def __init__(self, location: str):
        self.location = location
        self.url = location.rstrip("/") + "/" if urlsplit(location).scheme in ("http", "https") else None
        if self.url is None and urlsplit(location).scheme not in ("", "file"):
            raise UsageError(
                f"{location}: unknown store (a folder, an http(s):// URL of a static index, or oci://HOST/REPO[:TAG])"
            )
        self.root = None if self.url else Path(location.removeprefix("file://"))
        self.listing: freshness.Listing | None = None  # of the last index read

    @property
    def state_location(self) -> str:
        """The store as pull.sh names it: the URL without its final slash, or file:// and the resolved folder."""
        return self.url.rstrip("/") if self.url else f"file://{self.root.resolve()}"

    def _read(self, name: str) -> bytes:
        if self.url:
            return http_get(self.url + name)[0]
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            raise DataError(f"{self.root / name}: no such file (not a c3ae-edge release store?)") from None

    def index(self, pub: PublicKey) -> dict:
        """index.json, its signature checked before a byte of it is parsed."""
        where = f"{self.location.rstrip('/')}/{INDEX}"
        data = self._read(INDEX)
        try:
            sig = self._read(INDEX + ".minisig")
        except DataError as e:
            if "HTTP 404" in str(e) or "no such file" in str(e):
                raise VerificationError(f"{where}: no {INDEX}.minisig (unsigned index)") from None
            raise
        check(pub, data, sig.decode(errors="replace"), where + ".minisig")
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise VerificationError(f"{where}: not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise VerificationError(f"{where}: not a {SCHEMA} index")
        self.listing = freshness.read_listing(doc, where)
        return doc

    def releases(self, pub: PublicKey) -> list[Release]:
        try:
            return [_from_entry(e) for e in self.index(pub)["releases"]]
        except (KeyError, TypeError, ValueError) as e:
            raise VerificationError(f"{self.location}: {INDEX} has a malformed release entry ({e!r})") from None

    def fetch(self, rel: Release, dest: Path) -> None:
        folder = check_entry(rel.ref.rstrip("/"), rel.name)
        for f in rel.files:
            name = check_entry(f.name, rel.name)
            if self.url:
                try:
                    fetch_url(f"{self.url}{folder}/{name}", dest / name, f.size, f.sha256)
                except DataError as e:
                    if "HTTP 404" not in str(e):
                        raise
                    raise VerificationError(f"{self.url}{folder}/{name}: missing from the store (HTTP 404)") from None
            else:
                src = self.root / folder / name
                try:
                    with open(src, "rb") as fh:
                        copy_checked(fh, dest / name, f.size, f.sha256, str(src))
                except FileNotFoundError:
                    raise VerificationError(f"{src}: missing from the store") from None

    def publish(
        self,
        bundle: Path,
        key: SecretKey | PublicKey | None,
        tag: str | None = None,
        force: bool = False,
        days: float = freshness.DEFAULT_EXPIRY_DAYS,
    ) -> Release:
        """Copy the bundle in, write its ``.tar.gz`` and ``pull.sh``, re-sign the index with the next serial.
        Atomic per file, under a lock on the store folder (no lock file is left)."""
        from c3ae_edge.export.bundle import make_archive, replace_folder

        key = self._writable(key)
        rel, _ = release_of(bundle, key.public)
        self.root.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.root):
            doc = self.index(key.public) if (self.root / INDEX).exists() else {"schema": SCHEMA, "releases": []}
            old = [
                e
                for e in doc["releases"]
                if (e["model"], e["version"], e["target"]) != (rel.model, rel.version, rel.target)
            ]
            if len(old) != len(doc["releases"]) and not force:
                raise UsageError(
                    f"{self.root}: {rel.name} is already published (releases are immutable; --force replaces it)"
                )
            tmp = self.root / f".{rel.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                tmp.mkdir()
                for f in rel.files:
                    shutil.copyfile(bundle / f.name, tmp / f.name)
                replace_folder(tmp, self.root / rel.name)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            arc = make_archive(self.root / rel.name, _epoch(rel.build_time))
            entry = {
                **rel.to_dict(),
                "path": rel.name + "/",
                "archive": {"file": arc.name, "bytes": arc.stat().st_size, "sha256": _sha(arc.read_bytes())},
            }
            doc["releases"] = sorted([*old, entry], key=lambda e: (e["model"], e["target"], version_key(e["version"])))
            self._sign_index(doc, key, days)
        return rel

    def refresh(self, key: SecretKey | PublicKey | None, days: float = freshness.DEFAULT_EXPIRY_DAYS):
        """Re-sign the index as it is with the next serial and a new expiry (a store must be re-signed before it
        expires, or pulls refuse it as frozen). -> the new Listing."""
        key = self._writable(key)
        with folder_lock(self.root):
            doc = self.index(key.public)
            return self._sign_index(doc, key, days)

    def _writable(self, key) -> SecretKey:
        if self.root is None:
            raise UsageError(f"{self.location}: a static index over HTTP is read-only; publish to the folder it serves")
        if not isinstance(key, SecretKey):
            raise UsageError("a static index needs the secret key (--key KEY.key): it signs index.json")
        return key

    def _sign_index(self, doc: dict, key: SecretKey, days: float) -> freshness.Listing:
        """index.json and index.txt with the next serial, signing time and expiry (in each file and each trusted
        comment), and the pull.sh they name."""
        listing = freshness.next_listing(self.listing, days)
        script = resources.files("c3ae_edge.release").joinpath("pull.sh").read_bytes()
        _atomic(self.root / "pull.sh", script, 0o755)
        doc.update(freshness.fields(listing))
        doc["pull_sh"] = {"file": "pull.sh", "bytes": len(script), "sha256": _sha(script)}
        self._write_signed(INDEX, (json.dumps(doc, indent=1) + "\n").encode(), key, listing)
        head = f"# c3ae-edge index serial {listing.serial} signed {listing.signed_at} expires {listing.expires}\n"
        lines = "".join(
            f"{e['model']} {e['version']} {e['target']} {e['path'].rstrip('/')} {_sums_sha(e)} "
            f"{sum(int(f['bytes']) for f in e['files'])}\n"
            for e in doc["releases"]
        )
        self._write_signed(INDEX_TXT, (head + lines).encode(), key, listing)
        self.listing = listing
        return listing

    def _write_signed(self, name: str, data: bytes, key: SecretKey, listing: freshness.Listing) -> None:
        sig = key.sign(data, f"c3ae-edge release index\tfile:{name}\t{freshness.comment(listing)}")
        _atomic(
            self.root / (name + ".minisig"), sig.text(f"c3ae-edge index signature from key {key.public.id}").encode()
        )
        _atomic(self.root / name, data)


@contextlib.contextmanager
def folder_lock(folder: Path):
    """An exclusive lock on the folder itself (flock on its descriptor): nothing to leave behind or clean up."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _from_entry(e: dict) -> Release:
    files = tuple(FileEntry(f["name"], int(f["bytes"]), f["sha256"]) for f in e["files"])
    s = e.get("signature", {})
    return Release(
        e["model"],
        e["version"],
        e["target"],
        files,
        e["path"],
        e.get("weights_sha256", ""),
        e.get("build_time", ""),
        s.get("trusted_comment", ""),
        s.get("key_id", ""),
    )


def _sums_sha(e: dict) -> str:
    return next(f["sha256"] for f in e["files"] if f["name"] == "SHA256SUMS")


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _epoch(iso: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def _atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
