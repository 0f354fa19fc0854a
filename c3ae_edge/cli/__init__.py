"""The ``c3ae-edge`` command line. Heavy imports (torch, backends) happen inside the commands."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from c3ae_edge import interrupt as _interrupt

_interrupt.install_early()  # Ctrl-C while typer, rich and the command modules import

import typer  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="C3AE compact age estimation for embedded boards: models, train, evaluate, predict, export, verify, bench.",
)


def _root() -> None:
    """C3AE compact age estimation for embedded boards."""


# Each command module registers its commands: ``register(app)`` adds module-level functions with ``app.command(...)``
# or a sub-app with ``app.add_typer(...)`` (only typer imported at module level).
COMMAND_MODULES = (
    "c3ae_edge.cli.models",
    "c3ae_edge.cli.train",
    "c3ae_edge.cli.predict",
    "c3ae_edge.cli.export",
    "c3ae_edge.cli.bench",
    "c3ae_edge.cli.release",
    "c3ae_edge.cli.weights",
)


def register_commands(app: typer.Typer) -> None:
    """The root callback and every command module's commands (a module this install lacks is skipped)."""
    import importlib

    app.callback()(_root)
    for mod in COMMAND_MODULES:
        try:
            importlib.import_module(mod).register(app)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


register_commands(app)


# What a command needs beyond the torch-free core: a missing module is one line naming the extra that installs it.
_EXTRA_OF_MODULE = {
    "torch": "train",
    "torchao": "train",
    "scipy": "train",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "openvino": "openvino",
    "litert_torch": "tflite",
    "matplotlib": "bench",
    "tflite_micro": "mcu",
}
_EXTRA_OF_COMMAND = {"export": "export", "bench": "bench"}


def missing_extra_line(e: ModuleNotFoundError, argv: list[str]) -> str | None:
    """The one line for a heavy module this install lacks, naming the extra (None: not one of ours)."""
    mod = (e.name or "").split(".")[0]
    if mod not in _EXTRA_OF_MODULE:
        return None
    cmd = next((a for a in argv[1:] if not a.startswith("-")), "")
    extra = _EXTRA_OF_COMMAND.get(cmd) or _EXTRA_OF_MODULE[mod]
    what = f"`c3ae-edge {cmd}`" if cmd else "this"
    return f"{what} needs the '{extra}' extra ({mod} is not installed): pip install 'c3ae-edge[{extra}]'"


def main() -> None:
    """Console entry: user errors become one line on stderr and a non-zero exit, never a traceback; Ctrl-C is
    "interrupted", exit 130, wherever it lands (c3ae_edge.interrupt: whatever a library made of it)."""
    from c3ae_edge import interrupt

    interrupt.reset()
    interrupt.install()
    try:
        _run()
    finally:
        interrupt.reset()  # the flag belongs to this command (a host may call main() again)


def _run() -> None:
    from c3ae_edge import interrupt

    try:
        rv = app(standalone_mode=False)
    except SystemExit:
        if interrupt.arrived():  # typer's usage error or a library's exit after the signal
            _interrupted()
        raise  # typer's usage errors (bad option) already printed one line; keep their code
    except BaseException as e:
        _fail(e)
    if interrupt.arrived() or rv == 130:  # typer turns KeyboardInterrupt into Exit(130), returned here
        _interrupted()
    if isinstance(rv, int) and rv:  # typer.Exit(code) comes back as a return value here
        sys.exit(rv)


def _interrupted() -> NoReturn:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not turn the exit into a traceback
    print("c3ae-edge: interrupted", file=sys.stderr)
    _interrupt.exit_interrupted()
    sys.exit(130)


def _fail(e: BaseException) -> NoReturn:
    """One line and the exit code for an exception that left a command."""
    from c3ae_edge import interrupt
    from c3ae_edge.errors import C3AEError, os_error_line

    # typer vendors its own click: recognise its exceptions by shape, not by import
    if interrupt.arrived() or isinstance(e, KeyboardInterrupt) or type(e).__name__ == "Abort":
        _interrupted()
    if isinstance(e, C3AEError):
        print(f"c3ae-edge: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    if isinstance(e, OSError):  # a file the user named or a disk that filled: one line, never "internal error"
        print(f"c3ae-edge: error: {os_error_line(e)}", file=sys.stderr)
        sys.exit(1)
    line = missing_extra_line(e, sys.argv) if isinstance(e, ModuleNotFoundError) else None
    if line:
        print(f"c3ae-edge: error: {line}", file=sys.stderr)
        sys.exit(2)
    if hasattr(e, "format_message") and hasattr(e, "exit_code"):
        print(f"c3ae-edge: error: {e.format_message()}", file=sys.stderr)
        sys.exit(e.exit_code or 2)
    if os.environ.get("C3AE_DEBUG") or not isinstance(e, Exception):
        raise e
    print(f"c3ae-edge: internal error: {type(e).__name__}: {e} (set C3AE_DEBUG=1 for the traceback)", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
