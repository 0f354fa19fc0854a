"""Converter noise stays out of the terminal: Python prints and warnings, and native writes to fd 1/2, are captured
around each conversion step, shown with --verbose, and replayed when the step itself fails."""

from __future__ import annotations

import ctypes
import os
import sys
import warnings

import pytest

from c3ae_edge.errors import DataError
from c3ae_edge.export.quiet import quiet

LIBC = ctypes.CDLL(None)


def _noise(tag: str) -> None:
    print(f"{tag} python stdout")
    print(f"{tag} python stderr", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # what the interpreter's own showwarning does (pytest records warnings instead of printing them)
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(m, c, f, n, line)
        )
        warnings.warn(f"{tag} FutureWarning", FutureWarning, stacklevel=1)
    os.write(1, f"{tag} fd 1\n".encode())
    msg = f"{tag} native fd 2\n".encode()
    LIBC.write(2, msg, len(msg))  # what a C++ library (torchao, TFLite, ORT) does


def test_quiet_captures_python_warnings_and_native_output(capfd):
    with quiet():
        _noise("hidden")
    out, err = capfd.readouterr()
    assert "hidden" not in out + err, out + err


def test_quiet_replays_when_the_converter_fails(capfd):
    with pytest.raises(RuntimeError), quiet():
        _noise("why")
        raise RuntimeError("converter crashed")
    out, err = capfd.readouterr()
    assert "why native fd 2" in err and "why FutureWarning" in err and "why fd 1" in err and "why" not in out


def test_quiet_does_not_replay_for_user_errors(capfd):
    with pytest.raises(DataError), quiet():
        _noise("user")
        raise DataError("x.csv: bad")
    out, err = capfd.readouterr()
    assert "user" not in out + err


def test_verbose_lets_it_through_on_stderr(capfd):
    with quiet(verbose=True):
        print("shown")
    out, err = capfd.readouterr()
    assert "shown" in err and "shown" not in out


def test_onnx_export_wrapper_is_in_eval_mode():
    """Why ONNX said 'Exporting a model while it is in training mode': the export wrapper itself was left in
    training mode (the model inside was in eval). Fixed; the exported bytes did not change (checked by hand)."""
    from c3ae_edge.export.backends.onnx_backend import _Fp16
    from c3ae_edge.export.deploy import DeployModule
    from c3ae_edge.models import create_model

    dm = DeployModule(create_model("c3ae_plain").train())
    assert not dm.training and not dm.model.training and not _Fp16(dm).training
