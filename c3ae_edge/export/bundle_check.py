"""What ``verify`` may trust in a bundle: nothing until checked. Streaming hashes, SHA256SUMS, a typed manifest,
paths confined to the bundle, no stray files, tolerances capped by what the exporter itself allows, safe archives."""

from __future__ import annotations

import contextlib
import hashlib
import re
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from c3ae_edge.errors import DataError, VerificationError
from c3ae_edge.export.manifest import Manifest

MAX_TEXT_BYTES = 16 << 20  # manifest.json and SHA256SUMS are a few KB; refuse to read a huge one
MAX_ARCHIVE_BYTES = 1 << 30  # unpacked size of a bundle archive
MAX_ARCHIVE_MEMBERS = 256
_HEX64 = re.compile(r"[0-9a-f]{64}")
PULL_MARKER = ".c3ae-pull"  # written by pull and pull.sh into the folders they make; not part of the bundle


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex digest read in chunks: memory stays flat whatever the file size."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def confined(bundle: Path, name: object) -> Path:
    """``bundle / name`` for a plain relative name that stays inside the bundle (no '..', no absolute, no link)."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise VerificationError(f"{bundle}: bad file name {name!r} in the bundle")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or name.startswith("/"):
        raise VerificationError(f"{bundle}: path {name!r} leaves the bundle")
    p = bundle / name
    if p.is_symlink() or not p.resolve().is_relative_to(bundle.resolve()):
        raise VerificationError(f"{bundle}: {name!r} is a link or leaves the bundle")
    return p


def _read_text(p: Path, bundle: Path) -> str:
    if p.is_symlink() or not p.is_file():
        raise VerificationError(f"{bundle}: no {p.name} (not a c3ae-edge bundle?)")
    if p.stat().st_size > MAX_TEXT_BYTES:
        raise VerificationError(f"{p}: {p.stat().st_size:,} bytes, too large for a bundle's {p.name}")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise VerificationError(f"{p}: not UTF-8 text") from None


def check_sums(bundle: Path) -> list[str]:
    """Every file listed in SHA256SUMS matches, no file or folder is unlisted; -> the listed names."""
    bundle = Path(bundle)
    listed: dict[str, str] = {}
    for i, line in enumerate(_read_text(bundle / "SHA256SUMS", bundle).splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or not _HEX64.fullmatch(digest):
            raise VerificationError(f"{bundle}/SHA256SUMS line {i}: not '<sha256>  <name>'")
        confined(bundle, name)
        if "/" in name or name == "SHA256SUMS":
            raise VerificationError(f"{bundle}/SHA256SUMS line {i}: {name!r} is not a top-level bundle file")
        if name in listed:
            raise VerificationError(f"{bundle}/SHA256SUMS line {i}: {name} listed twice")
        listed[name] = digest
    for name, digest in listed.items():
        p = bundle / name
        if not p.is_file():
            raise VerificationError(f"{bundle}: {name} is listed in SHA256SUMS but missing")
        if sha256(p) != digest:
            raise VerificationError(f"{bundle}: checksum mismatch for {name} (tampered or corrupt)")
    extra = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in bundle.iterdir()
        if p.name not in ("SHA256SUMS", "SHA256SUMS.minisig", PULL_MARKER) and p.name not in listed
    )
    if extra:
        raise VerificationError(f"{bundle}: file(s) or folder(s) not in SHA256SUMS: {', '.join(extra)}")
    return sorted(listed)


def _artifact_files(bundle: Path, art: dict, i: int, where: str) -> None:
    """The artifact's files are plain files of this bundle and its digest holds (fields were checked by Manifest)."""
    name = art["file"]
    confined(bundle, name)
    for f in art.get("files", [name]):
        if not confined(bundle, f).is_file():
            raise VerificationError(f"{where} artifacts[{i}]: {f} is missing from the bundle")
    if sha256(bundle / name) != art["sha256"]:
        raise VerificationError(f"{bundle}: {name} does not match its sha256 in manifest.json (swapped or corrupt)")


def load_manifest(bundle: Path) -> Manifest:
    """manifest.json, parsed and checked: schema, field types, confined paths, artifact digests, capped tolerances."""
    bundle = Path(bundle)
    where = f"{bundle}/manifest.json"
    try:
        man = Manifest.from_json(_read_text(bundle / "manifest.json", bundle), where)
    except DataError as e:  # a bundle that does not hold what it says failed verification
        raise VerificationError(str(e)) from None
    for i, art in enumerate(man.artifacts):
        _artifact_files(bundle, art, i, where)
    for i, f in enumerate(man.bundle_files):  # the detector's files (and any other file the manifest pins)
        if not confined(bundle, f["file"]).is_file():
            raise VerificationError(f"{where} bundle_files[{i}]: {f['file']} is missing from the bundle")
        if sha256(bundle / f["file"]) != f["sha256"]:
            raise VerificationError(
                f"{bundle}: {f['file']} does not match its sha256 in manifest.json (swapped or corrupt)"
            )
    confined(bundle, man.parity_set["file"])
    return man


def crop_spec(man: Manifest, bundle: Path):
    """The manifest's CropSpec, or a verification failure naming the manifest."""
    from c3ae_edge.data.crops import checked_spec

    try:
        return checked_spec(man.crop, f"{bundle}/manifest.json crop")
    except DataError as e:
        raise VerificationError(str(e)) from None


def load_parity(bundle: Path, man: Manifest, scales: int) -> np.ndarray:
    """The stored parity crops (uint8, N x S x H x W x 3), never unpickled, shape checked against the manifest."""
    par = man.parity_set
    p = confined(bundle, par["file"])
    try:
        crops = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise VerificationError(f"{p}: not a plain .npy array ({str(e).splitlines()[0]})") from None
    n = len(par["pytorch_age"])
    if (
        not isinstance(crops, np.ndarray)
        or crops.dtype != np.uint8
        or crops.ndim != 5
        or crops.shape[0] != n
        or crops.shape[1] != scales
        or crops.shape[-1] != 3
    ):
        raise VerificationError(
            f"{p}: shape {getattr(crops, 'shape', None)} {getattr(crops, 'dtype', '')} is not "
            f"({n}, {scales}, H, W, 3) uint8 as manifest.json says"
        )
    return crops


@contextlib.contextmanager
def unpacked(archive: Path) -> Iterator[Path]:
    """A bundle ``.tar.gz`` unpacked into a temporary folder: regular files under one top folder only, no links,
    size- and count-capped, members confined. -> the bundle folder inside it."""
    try:
        tar = tarfile.open(archive, "r:gz")
    except (OSError, tarfile.TarError, EOFError) as e:
        raise VerificationError(f"{archive}: not a readable .tar.gz ({e})") from None
    with tar, tempfile.TemporaryDirectory(prefix="c3ae-verify-") as td:
        try:
            members = _members(archive, tar)
            top = members[0].name.split("/")[0]
            tar.extractall(td, members=members, filter="data")
        except (OSError, tarfile.TarError, EOFError) as e:
            raise VerificationError(f"{archive}: corrupt archive ({e})") from None
        yield Path(td) / top


def _members(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members, total, tops = [], 0, set()
    for m in tar:
        if len(members) >= MAX_ARCHIVE_MEMBERS:
            raise VerificationError(f"{archive}: more than {MAX_ARCHIVE_MEMBERS} members")
        parts = PurePosixPath(m.name).parts
        if not m.isfile():
            raise VerificationError(
                f"{archive}: member {m.name!r} is not a regular file (links and folders are refused)"
            )
        if PurePosixPath(m.name).is_absolute() or ".." in parts or len(parts) != 2:
            raise VerificationError(f"{archive}: member {m.name!r} is not BUNDLE/FILE")
        total += m.size
        if total > MAX_ARCHIVE_BYTES:
            raise VerificationError(f"{archive}: unpacks to more than {MAX_ARCHIVE_BYTES >> 20} MiB")
        tops.add(parts[0])
        members.append(m)
    if not members or len(tops) != 1:
        raise VerificationError(f"{archive}: must hold exactly one bundle folder")
    return members
