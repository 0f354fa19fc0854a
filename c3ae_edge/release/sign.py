"""minisign-compatible ed25519 keys and signatures (offline), written and checked with ``cryptography``.

Formats (https://jedisct1.github.io/minisign/): public key ``"Ed" + key id (8) + pk (32)``; secret key
``"Ed" + kdf ("Sc" or 0,0) + "B2" + salt (32) + opslimit + memlimit (LE u64) + [key id, seed||pk, blake2b-256 chk]``,
the bracket XOR-ed with libsodium's scrypt stream when encrypted; signature
``"ED" + key id + ed25519(blake2b-512(file))``, then a global signature over ``signature + trusted comment``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from c3ae_edge.errors import DataError, UsageError, VerificationError
from c3ae_edge.export.manifest import Manifest

SIG_NAME = "SHA256SUMS.minisig"
OPSLIMIT, MEMLIMIT = 33554432, 1073741824  # libsodium scryptsalsa208sha256 *_SENSITIVE, minisign's defaults
PASSWORD_ENV = "C3AE_KEY_PASSWORD"
_UNENCRYPTED = "minisign unencrypted secret key (c3ae-edge keygen --unencrypted: NOT protected by a passphrase)"


def _crypto():
    from c3ae_edge.errors import require

    require("cryptography", "release")
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, size: int, what: Path | str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise DataError(
            f"{what}: not a minisign {'key' if size in (42, 158) else 'signature'} file (bad base64 payload)"
        )
    return raw


def minisign_lines(path: Path, n: int) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    if len(lines) < n or not lines[0].startswith("untrusted comment: "):
        raise DataError(f"{path}: not a minisign file (expected 'untrusted comment:' and {n - 1} more line(s))")
    return lines


def key_id_hex(key_id: bytes) -> str:
    """Key id as minisign prints it (little-endian u64, upper-case hex)."""
    return f"{int.from_bytes(key_id, 'little'):016X}"


def _scrypt(password: bytes, salt: bytes, opslimit: int, memlimit: int, length: int) -> bytes:
    """libsodium's crypto_pwhash_scryptsalsa208sha256: (opslimit, memlimit) -> (N, r, p) as its pickparams does."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    opslimit, r = max(opslimit, 32768), 8
    if opslimit < memlimit // 32:
        p, max_n = 1, opslimit // (r * 4)
    else:
        p, max_n = None, memlimit // (r * 128)
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
        n_log2 += 1
    if p is None:
        p = max(1, min((opslimit // 4) // (1 << n_log2), 0x3FFFFFFF) // r)
    return Scrypt(salt=salt, length=length, n=1 << n_log2, r=r, p=p).derive(password)


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes
    pk: bytes
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> PublicKey:
        lines = minisign_lines(Path(path), 2)
        if len(lines[1].strip()) > 100:
            raise UsageError(f"{path}: this is a secret key; pass the public key (.pub)")
        raw = _unb64(lines[1], 42, path)
        if raw[:2] != b"Ed":
            raise DataError(f"{path}: unsupported key algorithm {raw[:2]!r} (minisign Ed25519 keys only)")
        return cls(raw[2:10], raw[10:], str(path))

    @property
    def id(self) -> str:
        return key_id_hex(self.key_id)

    def text(self) -> str:
        return f"untrusted comment: minisign public key {self.id}\n{_b64(b'Ed' + self.key_id + self.pk)}\n"


@dataclass(frozen=True)
class Signature:
    key_id: bytes
    prehashed: bool
    sig: bytes
    trusted_comment: str
    global_sig: bytes

    @classmethod
    def parse(cls, text: str, where: str) -> Signature:
        lines = text.splitlines()
        if (
            len(lines) < 4
            or not lines[0].startswith("untrusted comment: ")
            or not lines[2].startswith("trusted comment: ")
        ):
            raise VerificationError(f"{where}: not a minisign signature")
        raw = _unb64(lines[1], 74, where)
        if raw[:2] not in (b"Ed", b"ED"):
            raise VerificationError(f"{where}: unsupported signature algorithm {raw[:2]!r}")
        return cls(
            raw[2:10],
            raw[:2] == b"ED",
            raw[10:],
            lines[2][len("trusted comment: ") :].strip(),
            _unb64(lines[3], 64, where),
        )

    def text(self, untrusted: str) -> str:
        alg = b"ED" if self.prehashed else b"Ed"
        return (
            f"untrusted comment: {untrusted}\n{_b64(alg + self.key_id + self.sig)}\n"
            f"trusted comment: {self.trusted_comment}\n{_b64(self.global_sig)}\n"
        )

    def fields(self) -> dict[str, str]:
        """``key:value`` pairs of a tab-separated trusted comment."""
        return dict(p.split(":", 1) for p in self.trusted_comment.split("\t") if ":" in p)


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    seed: bytes
    pk: bytes

    @classmethod
    def generate(cls) -> SecretKey:
        from cryptography.hazmat.primitives import serialization as ser

        priv = _crypto().Ed25519PrivateKey.generate()
        seed = priv.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
        pub = priv.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        return cls(os.urandom(8), seed, pub)

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key_id, self.pk)

    def _chk(self) -> bytes:
        return hashlib.blake2b(b"Ed" + self.key_id + self.seed + self.pk, digest_size=32).digest()

    def text(self, password: str | None) -> str:
        """minisign secret key file; ``password=None`` writes it unencrypted (minisign -W) and says so."""
        body = self.key_id + self.seed + self.pk + self._chk()
        if password is None:
            return f"untrusted comment: {_UNENCRYPTED}\n{_b64(b'Ed' + bytes(2) + b'B2' + bytes(48) + body)}\n"
        salt = os.urandom(32)
        stream = _scrypt(password.encode(), salt, OPSLIMIT, MEMLIMIT, len(body))
        head = b"Ed" + b"Sc" + b"B2" + salt + OPSLIMIT.to_bytes(8, "little") + MEMLIMIT.to_bytes(8, "little")
        return (
            "untrusted comment: minisign encrypted secret key\n"
            f"{_b64(head + bytes(a ^ b for a, b in zip(body, stream)))}\n"
        )

    @classmethod
    def load(cls, path: str | Path, password: str | None = None) -> SecretKey:
        """Read a minisign secret key; an encrypted one asks for its passphrase (see ``read_password``)."""
        lines = minisign_lines(Path(path), 2)
        raw = _unb64(lines[1], 158, path)
        if raw[:2] != b"Ed" or raw[4:6] != b"B2":
            raise DataError(f"{path}: unsupported secret key algorithms {raw[:2]!r}/{raw[4:6]!r}")
        body = raw[54:]
        if raw[2:4] == b"Sc":
            pw = password if password is not None else read_password(f"passphrase for {path}: ")
            stream = _scrypt(
                pw.encode(),
                raw[6:38],
                int.from_bytes(raw[38:46], "little"),
                int.from_bytes(raw[46:54], "little"),
                len(body),
            )
            body = bytes(a ^ b for a, b in zip(body, stream))
        elif raw[2:4] != bytes(2):
            raise DataError(f"{path}: unsupported key derivation {raw[2:4]!r}")
        key = cls(body[:8], body[8:40], body[40:72])
        if body[72:] != key._chk() and (raw[2:4] == b"Sc" or any(body[72:])):
            raise UsageError(
                f"{path}: wrong passphrase for this secret key"
                if raw[2:4] == b"Sc"
                else f"{path}: corrupt secret key (checksum)"
            )
        return key

    def sign(self, data: bytes, trusted_comment: str) -> Signature:
        if "\n" in trusted_comment or "\r" in trusted_comment:
            raise UsageError("a trusted comment must be one line")
        priv = _crypto().Ed25519PrivateKey.from_private_bytes(self.seed)
        sig = priv.sign(hashlib.blake2b(data, digest_size=64).digest())
        return Signature(self.key_id, True, sig, trusted_comment, priv.sign(sig + trusted_comment.encode()))


def read_password(prompt: str, confirm: bool = False) -> str:
    """$C3AE_KEY_PASSWORD, else one line of stdin when it is not a terminal (as minisign reads it), else a prompt."""
    pw = os.environ.get(PASSWORD_ENV)
    if pw is None and not sys.stdin.isatty():
        pw = sys.stdin.readline().rstrip("\r\n")
    if pw is None:
        pw = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != pw:
            raise UsageError("the two passphrases differ")
    if not pw:
        raise UsageError(f"empty passphrase (set {PASSWORD_ENV}, or use --unencrypted and say so)")
    return pw


def check(pub: PublicKey, data: bytes, sig_text: str, where: str) -> Signature:
    """Signature and trusted comment are valid for ``data`` under ``pub``; -> the signature (its trusted comment)."""
    from cryptography.exceptions import InvalidSignature

    sig = Signature.parse(sig_text, where)
    if sig.key_id != pub.key_id:
        raise VerificationError(
            f"{where}: signed by key {key_id_hex(sig.key_id)}, not by the trusted key {pub.id} ({pub.source})"
        )
    key = _crypto().Ed25519PublicKey.from_public_bytes(pub.pk)
    msg = hashlib.blake2b(data, digest_size=64).digest() if sig.prehashed else data
    try:
        key.verify(sig.sig, msg)
    except InvalidSignature:
        raise VerificationError(
            f"{where}: signature does not match the signed file (tampered, or re-generated without the key)"
        ) from None
    try:
        key.verify(sig.global_sig, sig.sig + sig.trusted_comment.encode())
    except InvalidSignature:
        raise VerificationError(f"{where}: trusted comment was altered") from None
    return sig


def write_keypair(stem: str | Path, unencrypted: bool, force: bool = False) -> tuple[Path, Path, PublicKey]:
    """``STEM.key`` (mode 600) and ``STEM.pub``; refuses to overwrite unless ``force``, and never writes through a
    symbolic link (``--force`` replaces a pair, not the file a link points at)."""
    sec, pub = Path(f"{stem}.key"), Path(f"{stem}.pub")
    for p in (sec, pub):
        if p.is_symlink():
            raise UsageError(f"{p}: is a symbolic link; refusing to write a key through it (remove the link)")
        if p.exists() and not force:
            raise UsageError(f"{p}: exists (use --force to overwrite a key pair)")
        if p.exists() and not p.is_file():
            raise UsageError(f"{p}: exists and is not a file")
    if not sec.parent.is_dir():
        raise UsageError(f"{sec.parent}: no such folder")
    key = SecretKey.generate()
    text = key.text(None if unencrypted else read_password(f"passphrase for {sec}: ", confirm=True))
    _write_new(sec, text, 0o600)
    _write_new(pub, key.public.text(), 0o644)
    return sec, pub, key.public


def _write_new(path: Path, text: str, mode: int) -> None:
    """A fresh file (O_EXCL, no link followed) renamed over ``path``: the rename replaces a name, never a target."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def trusted_comment(man: Manifest) -> str:
    """What the signature vouches for, tab-separated like minisign's own (``key:value``)."""
    m = man.model
    return "\t".join(
        f"{k}:{v}"
        for k, v in (
            ("model", m["name"]),
            ("version", m["version"]),
            ("target", man.target["name"]),
            ("weights_sha256", m["weights_sha256"]),
            ("build_time", man.build["time"]),
            ("file", "SHA256SUMS"),
        )
    )


def unverified_runtimes(man: Manifest) -> list[str]:
    """ "RUNTIME (status; files)" for each runtime the bundle's artifacts record with a status other than "verified"."""
    seen: dict[tuple[str, str], list[str]] = {}
    for a in man.artifacts:
        for rid, row in (a.get("runtimes") or {}).items():
            status = str(row.get("status")) if isinstance(row, dict) else repr(row)
            if status != "verified":
                seen.setdefault((rid, status), []).append(a["file"])
    return [f"{rid} ({status}; {', '.join(files)})" for (rid, status), files in seen.items()]


def check_signable(bundle: Path, allow_unverified_runtime: bool = False) -> None:
    """``c3ae-edge sign``'s rule, as ``export --sign``'s: the checksums hold, and every runtime the bundle records
    verified it at export (a signature vouches for the bundle), unless ``allow_unverified_runtime``."""
    from c3ae_edge.export.verify import check_sums

    check_sums(bundle)
    gaps = unverified_runtimes(Manifest.read(bundle))
    if gaps and not allow_unverified_runtime:
        raise UsageError(
            f"{bundle}: not signing: it records runtimes that did not verify it at export: {'; '.join(gaps)}; "
            "re-export where they run, or pass --allow-unverified-runtime to sign it anyway"
        )


def sign_bundle(bundle: Path, key: SecretKey) -> Signature:
    """Write ``SHA256SUMS.minisig`` for a bundle whose checksums hold (a tampered bundle is never signed)."""
    from c3ae_edge.export.verify import check_sums

    check_sums(bundle)
    sig = key.sign((bundle / "SHA256SUMS").read_bytes(), trusted_comment(Manifest.read(bundle)))
    tmp = bundle / f".{SIG_NAME}.tmp-{os.getpid()}"
    tmp.write_text(sig.text(f"c3ae-edge signature from key {key.public.id}"))
    os.replace(tmp, bundle / SIG_NAME)
    return sig


def verify_signed_bundle(bundle: Path, pub: PublicKey) -> Signature:
    """The signature over SHA256SUMS first, then every checksum, then the trusted comment against manifest.json."""
    from c3ae_edge.export.verify import check_sums

    sig_file = bundle / SIG_NAME
    if not bundle.is_dir():
        raise DataError(f"{bundle}: no such bundle folder (or bundle .tar.gz)")
    if not sig_file.is_file():
        raise VerificationError(f"{bundle}: no {SIG_NAME} (unsigned bundle)")
    if not (bundle / "SHA256SUMS").is_file():
        raise VerificationError(f"{bundle}: no SHA256SUMS (not a c3ae-edge bundle?)")
    sig = check(pub, (bundle / "SHA256SUMS").read_bytes(), sig_file.read_text(errors="replace"), str(sig_file))
    check_sums(bundle)
    try:
        want = trusted_comment(Manifest.read(bundle))
    except DataError as e:  # a signed bundle whose manifest does not hold: not what was signed
        raise VerificationError(str(e)) from None
    if sig.trusted_comment != want:
        raise VerificationError(
            f"{sig_file}: trusted comment {sig.trusted_comment!r} does not describe this bundle ({want!r})"
        )
    return sig


def verify_with_key(bundle: Path, pub: PublicKey, threads: int | None = 1) -> dict:
    """``verify --key``: the signature over SHA256SUMS first, then every check of ``verify_bundle``; a bundle
    ``.tar.gz`` is unpacked (safely) once and checked the same way. -> verify's report with "signature"."""
    from c3ae_edge.export import bundle_check
    from c3ae_edge.export.verify import verify_bundle

    bundle = Path(bundle)
    if bundle.name.endswith(".tar.gz") and bundle.is_file():
        with bundle_check.unpacked(bundle) as folder:
            try:
                return {**verify_with_key(folder, pub, threads), "bundle": str(bundle)}
            except VerificationError as e:  # name the archive, not the temporary folder
                raise VerificationError(str(e).replace(str(folder), f"{bundle}:{folder.name}")) from None
    sig = verify_signed_bundle(bundle, pub)
    rep = verify_bundle(bundle, threads, signed=True)
    rep["signature"] = {"key_id": pub.id, "trusted_comment": sig.trusted_comment, "passed": True}
    rep["origin"] = f"signed by key {pub.id} ({pub.source})"
    return rep
