"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class C3AEError(Exception):
    """Base of every error that is the user's input, not our bug."""

    exit_code = 2


class UsageError(C3AEError):
    """Bad name, option or argument."""


class DataError(C3AEError):
    """Unreadable image, bad CSV, missing files."""


class MissingExtraError(C3AEError):
    """An optional backend is not installed."""

    def __init__(self, extra: str, module: str):
        super().__init__(
            f"this needs the '{extra}' extra ({module} is not installed): pip install 'c3ae-edge[{extra}]'"
        )


class VerificationError(C3AEError):
    """An artifact failed its checksum, parity or accuracy check."""

    exit_code = 3


def os_error_line(e: OSError) -> str:
    """One line for an OSError: 'no space left on device' says so; otherwise the file and the reason."""
    import errno

    where = f"{e.filename}: " if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}no space left on device"
    return f"{where}{e.strerror or e}"


def require(module: str, extra: str):
    """Import an optional dependency or raise a one-line error naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on environment
        raise MissingExtraError(extra, module) from e
