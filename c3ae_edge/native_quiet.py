"""TFLite's native INFO lines ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") written straight to fd 2
when an interpreter is built: kept out of the user's terminal; anything else the runtime writes there comes through."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

NOISE = ("INFO: Created TensorFlow Lite", "INFO: Initialized TensorFlow Lite runtime")


@contextlib.contextmanager
def drop_runtime_info() -> Iterator[None]:
    """fd 2 goes to a temporary file inside the block; afterwards its lines come back to stderr minus ``NOISE``."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [ln for ln in sink.read().decode("utf-8", "replace").splitlines() if not ln.startswith(NOISE)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
