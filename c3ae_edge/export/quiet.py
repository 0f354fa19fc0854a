"""Converter noise (Python warnings, prints, logging, and native libraries writing to fd 1/2) kept out of the
user's terminal: captured around each conversion step, shown with ``--verbose`` or when the step fails."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Capture everything written to stdout/stderr inside the block; replay it to stderr when the step fails with
    an unexpected error (a converter's own failure), not for the user's (C3AEError), a full disk or Ctrl-C.
    ``verbose``: let it through to stderr instead (stdout stays ours: converters print progress there)."""
    if verbose:
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    py = io.StringIO()
    with tempfile.TemporaryFile() as native:
        for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            _flush(s)
        saved = [os.dup(1), os.dup(2)]
        failed = False
        try:
            os.dup2(native.fileno(), 1)
            os.dup2(native.fileno(), 2)
            with contextlib.redirect_stdout(py), contextlib.redirect_stderr(py):
                yield
        except Exception as e:
            from c3ae_edge import interrupt
            from c3ae_edge.errors import C3AEError

            # a library's own exception around a Ctrl-C is the interrupt, not a converter failure
            failed = not isinstance(e, (C3AEError, OSError)) and not interrupt.arrived()
            raise
        finally:
            for s in (sys.__stdout__, sys.__stderr__):
                _flush(s)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                native.seek(0)
                text = native.read().decode("utf-8", "replace") + py.getvalue()
                if text.strip():
                    sys.stderr.write("converter output of the failed step:\n" + text.rstrip() + "\n")
                    sys.stderr.flush()


def _flush(stream) -> None:
    with contextlib.suppress(Exception):
        stream.flush()
