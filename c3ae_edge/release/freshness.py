"""Rollback and freeze protection for signed release listings, on The Update Framework's rules (its timestamp and
snapshot roles): every listing a store signs (a static ``index.json``/``index.txt``, an OCI registry's release list)
carries a serial that only grows, the time it was signed and an expiry; a client remembers the highest serial it has
seen per store and key and refuses a lower one (a replayed old listing), and refuses an expired one (a frozen store)
unless told. The state is one small file per store and key, shared with ``pull.sh`` (same name, same format)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from c3ae_edge.errors import UsageError, VerificationError

DEFAULT_EXPIRY_DAYS = 90  # TUF's usual lifetime for a targets listing signed offline; `c3ae-edge refresh` re-signs
STATE_ENV = "C3AE_STATE_DIR"


@dataclass(frozen=True)
class Listing:
    """What a signed listing says about itself."""

    serial: int
    signed_at: str  # ISO 8601 UTC
    expires: str  # ISO 8601 UTC; "" for a listing written before serials existed


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def next_listing(previous: Listing | None, days: float) -> Listing:
    """The listing to sign now: serial one above the previous one, signed now, expiring in ``days``."""
    if not (0 < days <= 3660):
        raise UsageError(f"--expires-days {days}: must be in (0, 3660]")
    now = time.time()
    return Listing((previous.serial if previous else 0) + 1, iso(now), iso(now + days * 86400))


def read_listing(doc: dict, where: str) -> Listing:
    """The serial, signing time and expiry of a parsed listing (0 and "" for one written before they existed)."""
    serial, signed, expires = doc.get("serial", 0), doc.get("signed_at", ""), doc.get("expires", "")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise VerificationError(f"{where}: serial {serial!r} is not a non-negative integer")
    for name, v in (("signed_at", signed), ("expires", expires)):
        try:
            if v != "":
                epoch(v)
        except (TypeError, ValueError):
            raise VerificationError(f"{where}: {name} {v!r} is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)") from None
    return Listing(serial, signed, expires)


def fields(listing: Listing) -> dict:
    return {"serial": listing.serial, "signed_at": listing.signed_at, "expires": listing.expires}


def comment(listing: Listing) -> str:
    """The trusted-comment part ``pull.sh`` reads (minisign prints it after checking the signature)."""
    exp = epoch(listing.expires) if listing.expires else ""
    return f"serial:{listing.serial}\tsigned:{epoch(listing.signed_at)}\texpires:{exp}"


def state_dir() -> Path:
    """$C3AE_STATE_DIR, else $XDG_STATE_HOME/c3ae-edge, else ~/.local/state/c3ae-edge (as pull.sh finds it)."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "c3ae-edge"


def state_file(pub_line: str, location: str) -> Path:
    """One file per (public key, store): ``serial-<16 hex of sha256(key line, store)>``, the name pull.sh uses."""
    h = hashlib.sha256(f"{pub_line}\n{location}\n".encode()).hexdigest()[:16]
    return state_dir() / f"serial-{h}"


def seen(path: Path) -> int:
    try:
        text = path.read_text().split()
        return int(text[0]) if text and text[0].isdigit() else 0
    except FileNotFoundError:
        return 0
    except OSError as e:
        raise UsageError(f"{path}: cannot read the pull state ({e.strerror})") from None


def check(listing: Listing, state: Path, where: str, allow_expired: bool, now: float | None = None) -> None:
    """Refuse a listing older than the newest one seen from this store and key, or one past its expiry."""
    high = seen(state)
    if listing.serial < high:
        raise VerificationError(
            f"{where}: serial {listing.serial} is lower than {high}, seen before from this store and key "
            "(a replayed old listing: rollback refused)"
        )
    if allow_expired:
        return
    if not listing.expires:
        raise VerificationError(
            f"{where}: no serial or expiry (written before c3ae-edge signed them; re-sign it with `c3ae-edge "
            "refresh`, or --allow-expired)"
        )
    if (now if now is not None else time.time()) > epoch(listing.expires):
        raise VerificationError(
            f"{where}: expired at {listing.expires} (a frozen store? re-sign it with `c3ae-edge refresh`, or "
            "--allow-expired)"
        )


def remember(listing: Listing, state: Path) -> None:
    """Record ``listing.serial`` if it is the highest seen (under a lock on the state folder)."""
    try:
        state.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(state.parent, os.O_RDONLY)
    except OSError as e:
        raise UsageError(f"{state.parent}: cannot keep the pull state ({e.strerror}); set {STATE_ENV}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if listing.serial > seen(state):
            tmp = state.with_name(f".{state.name}.tmp-{os.getpid()}")
            tmp.write_text(f"{listing.serial}\n")
            os.replace(tmp, state)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
