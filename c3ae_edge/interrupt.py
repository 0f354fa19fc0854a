"""Ctrl-C wherever it lands: our SIGINT handler remembers that the signal arrived before it raises KeyboardInterrupt.

Libraries turn the KeyboardInterrupt into their own exception (torch.export raises TorchExportError around it), swallow
it in a bare ``except`` (imports that try an optional module), or reset the handler from native code; raised inside a
native module's import (torch's pybind11 submodules) it aborts the process, so during an import it waits until the
import is done; raised inside a garbage-collector callback or a finaliser (JAX's ``_xla_gc_callback``) Python prints
it as "Exception ignored" and drops it, so it is raised again, silently, once that code is left. So the CLI treats
any failure after a SIGINT as the interrupt, the export checks the flag before each step and before it commits, and
the handler is installed again after each converter.
"""

from __future__ import annotations

import os
import signal
import sys

_arrived = False


def _on_sigint(signum, frame) -> None:
    global _arrived
    _arrived = True
    if _importing(frame):  # raised inside a native module's init, pybind11 calls terminate(): abort, core, exit -6
        _again_soon(signum)
        return
    raise KeyboardInterrupt


def _importing(frame) -> bool:
    """An import is under way in the main thread (its native part may be on the C++ stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _again_soon(signum: int) -> None:
    """The signal once more in 50 ms: the KeyboardInterrupt is raised as soon as no import is under way."""
    import threading

    t = threading.Timer(0.05, os.kill, (os.getpid(), signum))
    t.daemon = True
    t.start()


def _unraisable(info) -> None:
    """A KeyboardInterrupt that Python could not raise (it landed in a gc callback or a ``__del__``): no traceback,
    the signal again in 50 ms; anything else goes to the hook that was there before."""
    if _arrived and isinstance(info.exc_value, KeyboardInterrupt):
        _again_soon(signal.SIGINT)
        return
    _previous_unraisable(info)


_previous_unraisable = sys.unraisablehook


def install() -> None:
    """Put our handler in place (again): a library may have replaced it."""
    if sys.unraisablehook is not _unraisable:
        global _previous_unraisable
        _previous_unraisable = sys.unraisablehook
        sys.unraisablehook = _unraisable
    try:
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: the main thread's handler stays
        pass


def arrived() -> bool:
    """A SIGINT came in since ``install()`` (whatever the code it landed in did with the KeyboardInterrupt)."""
    return _arrived


def check() -> None:
    """Raise KeyboardInterrupt if a SIGINT came in, even if a library swallowed the first one."""
    install()
    if _arrived:
        raise KeyboardInterrupt


def reset() -> None:
    """Forget an earlier SIGINT (a new command in the same process: the tests' in-process runner)."""
    global _arrived
    _arrived = False


def _before_main(signum, frame) -> None:
    os.write(2, b"c3ae-edge: interrupted\n")
    os._exit(130)  # nothing is open yet: no traceback out of a half-finished import


_program = False


def install_early() -> None:
    """While the command line's modules import (before ``install()``): Ctrl-C exits at once, 130, one line. Only for
    the ``c3ae-edge`` program itself (console script or ``python -m c3ae_edge.cli``), never for a host that imports
    the package."""
    global _program
    entry = sys.argv[0] if sys.argv else ""
    _program = entry == "-m" or os.path.basename(entry) == "c3ae-edge"
    if _program:
        try:
            signal.signal(signal.SIGINT, _before_main)
        except ValueError:
            pass


def exit_interrupted() -> None:
    """The ``c3ae-edge`` program ends here after an interrupt without running the interpreter's finalisation: a
    native library interrupted halfway through its import or its work can crash there (SIGSEGV) instead of exiting
    130. Everything of ours was undone while the KeyboardInterrupt unwound; a host that imported us keeps running."""
    if _program:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe: nothing more to say
                pass
        os._exit(130)
