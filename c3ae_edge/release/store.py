"""What every release store offers (the ``Store`` protocol), the ``Release`` record, and checked downloads."""

from __future__ import annotations

import hashlib
import http.client
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from c3ae_edge.errors import DataError, UsageError, VerificationError
from c3ae_edge.export.manifest import Manifest
from c3ae_edge.release.sign import SIG_NAME, PublicKey, SecretKey, Signature, key_id_hex, verify_signed_bundle

SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$")
CHUNK = 1 << 16


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Release:
    """One published bundle: what it is, the files it holds (with sizes and digests), where the store keeps it."""

    model: str
    version: str
    target: str
    files: tuple[FileEntry, ...]
    ref: str
    weights_sha256: str = ""
    build_time: str = ""
    trusted_comment: str = ""
    key_id: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return f"{self.model}-{self.version}-{self.target}"

    def file(self, name: str) -> FileEntry:
        return next(f for f in self.files if f.name == name)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "version": self.version,
            "target": self.target,
            "path": self.ref,
            "weights_sha256": self.weights_sha256,
            "build_time": self.build_time,
            "files": [{"name": f.name, "bytes": f.size, "sha256": f.sha256} for f in self.files],
            "signature": {"file": SIG_NAME, "key_id": self.key_id, "trusted_comment": self.trusted_comment},
            **self.extra,
        }


class Store(Protocol):
    """A place releases are published to and pulled from. Its listing (static index, OCI release list) is signed
    with a serial, a signing time and an expiry (``release.freshness``)."""

    location: str
    listing: object  # freshness.Listing of the last listing read or written
    state_location: str  # the store as the pull state (and pull.sh) names it

    def releases(self, pub: PublicKey) -> list[Release]:
        """Every release, its signed listing checked under ``pub`` (sets ``listing``)."""

    def fetch(self, rel: Release, dest: Path) -> None:
        """Download every file of ``rel`` into the empty folder ``dest``, each checked against its size and digest."""

    def publish(self, bundle: Path, key: SecretKey | PublicKey | None, tag: str | None = None) -> Release:
        """Add a signed bundle and re-sign the listing with the next serial."""

    def refresh(self, key: SecretKey | PublicKey | None, days: float):
        """Re-sign the listing as it is with the next serial and a new expiry."""


def release_of(bundle: Path, pub: PublicKey | None) -> tuple[Release, Signature]:
    """A signed bundle folder as a Release (its signature checked first when ``pub`` is given)."""
    if not bundle.is_dir():
        raise DataError(f"{bundle}: no such bundle folder")
    if not (bundle / SIG_NAME).is_file():
        raise UsageError(f"{bundle}: not signed (no {SIG_NAME}); sign it first: c3ae-edge sign {bundle} --key KEY")
    if pub is None:  # no key to check the signature with: the checksums must hold all the same
        from c3ae_edge.export.verify import check_sums

        check_sums(bundle)
    sig = (
        verify_signed_bundle(bundle, pub)
        if pub
        else Signature.parse((bundle / SIG_NAME).read_text(), str(bundle / SIG_NAME))
    )
    man = Manifest.read(bundle)
    listed = [line.partition("  ")[2] for line in (bundle / "SHA256SUMS").read_text().splitlines()]
    files = tuple(
        FileEntry(n, (bundle / n).stat().st_size, hashlib.sha256((bundle / n).read_bytes()).hexdigest())
        for n in sorted([*listed, "SHA256SUMS", SIG_NAME])
    )
    m, target = man.model, man.target["name"]
    rel = Release(
        m["name"],
        m["version"],
        target,
        files,
        f"{m['name']}-{m['version']}-{target}",
        m["weights_sha256"],
        man.build["time"],
        sig.trusted_comment,
        key_id_hex(sig.key_id),
    )
    return rel, sig


def check_entry(name: str, where: str) -> str:
    """A file name from a listing stays inside the bundle folder."""
    if not SAFE_NAME.match(name) or name in (".", ".."):
        raise VerificationError(f"{where}: refusing file name {name!r} (not a plain file name)")
    return name


class _Redirect(urllib.request.HTTPRedirectHandler):
    """Registries redirect blob downloads to storage hosts: credentials stay with the registry's host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def opener(url: str):
    """urllib opener; loopback addresses never go through a proxy."""
    host = urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
    return urllib.request.build_opener(*handlers, _Redirect())


def http_get(url: str, headers: dict | None = None, limit: int = 16 << 20, timeout: float = 60) -> tuple[bytes, dict]:
    """GET a small document (index, manifest), at most ``limit`` bytes."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener(url).open(req, timeout=timeout) as r:
            body = r.read(limit + 1)
            hdrs = {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        raise DataError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DataError(f"{url}: {getattr(e, 'reason', e)}") from None
    if len(body) > limit:
        raise VerificationError(f"{url}: larger than {limit} bytes")
    return body, hdrs


def copy_checked(src, dest: Path, size: int, sha256: str, where: str) -> None:
    """Stream ``src`` (a binary file object) into ``dest``: refuse more than ``size`` bytes, fewer, or another
    digest."""
    h, n = hashlib.sha256(), 0
    try:
        with open(dest, "xb") as f:
            while chunk := src.read(min(CHUNK, size + 1 - n)):
                n += len(chunk)
                if n > size:
                    raise VerificationError(f"{where}: larger than the {size:,} bytes its listing says (tampered)")
                h.update(chunk)
                f.write(chunk)
    except http.client.IncompleteRead as e:
        raise VerificationError(f"{where}: download truncated ({n + len(e.partial):,} of {size:,} bytes)") from None
    except (OSError, http.client.HTTPException) as e:
        if isinstance(e, FileExistsError):
            raise
        raise VerificationError(f"{where}: download failed after {n:,} of {size:,} bytes ({e})") from None
    if n < size:
        raise VerificationError(f"{where}: truncated ({n:,} of {size:,} bytes)")
    if h.hexdigest() != sha256:
        raise VerificationError(
            f"{where}: sha256 {h.hexdigest()[:16]}... is not the listed {sha256[:16]}... (tampered or corrupt)"
        )


def fetch_url(url: str, dest: Path, size: int, sha256: str, headers: dict | None = None) -> None:
    """Download one file with ``copy_checked``'s checks."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener(url).open(req, timeout=60) as r:
            copy_checked(r, dest, size, sha256, url)
    except urllib.error.HTTPError as e:
        raise DataError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DataError(f"{url}: {e.reason}") from None
