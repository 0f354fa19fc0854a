"""Whole-or-nothing file writes: a temporary file in the same folder renamed over the target, so a crash, Ctrl-C
or a full disk leaves the old file (or none), never half a new one; a full disk is one line naming the file."""

from __future__ import annotations

import os
from pathlib import Path

from c3ae_edge.errors import DataError, os_error_line


def write_atomic(path: str | Path, data: bytes | str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"{path}: {os_error_line(e).removeprefix(f'{e.filename}: ')}") from None
    finally:
        tmp.unlink(missing_ok=True)
