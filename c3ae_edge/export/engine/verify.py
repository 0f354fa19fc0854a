"""``c3ae-edge verify`` on an engine bundle: build the bundle's own engine sources for this host and run them on the
parity faces against the golden features TFLite Micro gave at export (bit for bit)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from c3ae_edge.errors import VerificationError


def verify_engine(folder: Path, man, x: np.ndarray) -> dict:
    """``x``: the parity faces' normalised crops (N, S, 3, H, W). -> {"runtime", "faces", "exact", ...}."""
    from c3ae_edge.export.engine.host import build_host, host_cc

    art = man.primary_artifact
    golden = (art.get("golden") or {}).get("tflite-micro/reference", {}).get("features")
    if host_cc() is None:
        return {"runtime": "c99-engine/host", "status": "not run: no host C compiler (cc, gcc or clang)"}
    if golden is None:
        raise VerificationError(f"{folder}/manifest.json: no TFLite Micro golden features to check the engine with")
    inp = art["input"]
    q = np.clip(np.round(np.moveaxis(x, -3, -1) / np.float32(inp["scale"])) + inp["zero_point"], -128, 127)
    q = q.astype(np.int8).reshape(-1, *q.shape[-3:])
    with tempfile.TemporaryDirectory() as td:
        got = build_host(folder, Path(td)).trunk(q)
    want = np.asarray(golden["values"], np.int8).reshape(len(q), -1)
    diff = int(np.abs(got.astype(int) - want).max())
    if diff:
        raise VerificationError(f"{folder.name}: the engine's features differ from the golden ones by up to {diff} LSB")
    return {"runtime": "c99-engine/host", "status": "bit-exact", "faces": int(len(x)), "crops": int(len(q))}
