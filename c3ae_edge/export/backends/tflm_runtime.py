"""TFLite Micro's interpreter on this host: the trunk runner (once per crop, head in float as the C library does),
the smallest working arena and TFLM's allocation report. A leaf: the tflm backend and the MCU source generator
(``c3ae_edge.export.mcu``) both use it, and it imports neither."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from c3ae_edge.errors import MissingExtraError, VerificationError
from c3ae_edge.export.backends.common import decode_outputs

SIDECAR = ".head.json"  # the head's weights beside the trunk graph
ALIGN = 16
ARENA_SEARCH_MAX = 4 << 20
# An export runs TFLM on the verification crops twice (the graph's verification, then the C99 engine's bit-exactness
# check): between TFLMBackend.export and the end of bundle_extras, features of that graph are remembered by crop.
_SEEN: dict[tuple[bytes, bytes], np.ndarray] = {}  # (graph sha256, crop sha256) -> features
_REMEMBER: set[bytes] = set()


def remember(flat: bytes, on: bool) -> None:
    """Start (or stop and drop) remembering ``flat``'s features per crop in this process."""
    import hashlib

    key = hashlib.sha256(flat).digest()
    if on:
        _REMEMBER.add(key)
        return
    _REMEMBER.discard(key)
    for k in [k for k in _SEEN if k[0] == key]:
        del _SEEN[k]


def _interp(flat: bytes, arena: int):
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise MissingExtraError("mcu", "tflite_micro") from None
    return runtime.Interpreter.from_bytes(flat, arena_size=arena)


def _probe(flat: bytes, arena: int) -> bool:
    """Does the graph allocate and invoke in ``arena`` bytes? In a forked child: TFLM can crash on tiny arenas."""
    import os

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # TFLM's "failed to allocate" lines
            _interp(flat, arena).invoke()
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0


def _search(flat: bytes) -> int:
    lo, hi = 0, 1024
    while not _probe(flat, hi):
        lo, hi = hi, hi * 2
        if hi > ARENA_SEARCH_MAX:
            return -1
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        lo, hi = (lo, mid) if _probe(flat, mid) else (mid, hi)
    return hi


def smallest_arena(flat: bytes) -> int:
    """The smallest arena (bytes, multiple of 16) in which the graph allocates and invokes, by bisection. The probes
    fork (a tiny arena can crash TFLM), so they run in a fresh single-threaded worker process, not in this one."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        f = Path(td) / "model.tflite"
        f.write_bytes(flat)
        r = subprocess.run([sys.executable, "-m", __name__, "arena", str(f)], capture_output=True, text=True)
    if r.returncode or int(r.stdout.split()[-1]) < 0:
        raise VerificationError(
            f"tflm: no arena up to {ARENA_SEARCH_MAX:,} bytes runs the graph "
            f"({(r.stderr.strip().splitlines() or ['?'])[-1]})"
        )
    return int(r.stdout.split()[-1])


def allocations(flat: bytes, arena: int) -> str:
    """TFLM's RecordingMicroAllocator report (it prints to stderr) for one invocation in ``arena`` bytes."""
    import os
    import tempfile

    it = _interp(flat, arena)
    it.invoke()
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


class TFLMRunner:
    """The trunk under TFLM's reference kernels, invoked once per crop, and the head in float (as the C library
    does)."""

    ARENA = 1 << 20  # generous for the reference run; the export measures the real minimum

    def __init__(self, path: Path):
        path = Path(path)
        self.flat = path.read_bytes()
        self.head = json.loads(path.with_suffix(SIDECAR).read_text())
        self.interp = _interp(self.flat, self.ARENA)
        self.inp, self.out = self.details(self.flat, self.interp)
        self.input_name, self.output_names = "input", ("features",)
        self.meta = {"decode": {"w2": self.head["w2"], "b2": self.head["b2"]}}

    @staticmethod
    def details(flat: bytes, interp=None) -> tuple[dict, dict]:
        it = interp or _interp(flat, TFLMRunner.ARENA)
        return it.get_input_details(0), it.get_output_details(0)

    def _q(self, d: dict) -> tuple[float, int]:
        p = d["quantization_parameters"]
        return float(p["scales"][0]), int(p["zero_points"][0])

    def io(self) -> dict:
        def row(d, name):
            scale, zp = self._q(d)
            return {
                "name": name,
                "shape": [int(v) for v in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "scale": scale,
                "zero_point": zp,
            }

        return {
            "input": {**row(self.inp, "input"), "layout": "NHWC", "invocations_per_face": self.head["crops"]},
            "outputs": [row(self.out, "features")],
        }

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(B, crops, 3, H, W) float -> {"features": (B, crops, h, w, c) int8}, one invocation per crop."""
        x = np.asarray(x, np.float32).reshape(-1, self.head["crops"], *np.shape(x)[-3:])
        q = self.quantize(x)
        feats = self.features(q.reshape(-1, *q.shape[2:]))
        return {"features": feats.reshape(*q.shape[:2], *feats.shape[1:])}

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """(..., 3, H, W) float crops -> the graph's int8 input (..., H, W, 3), as ``raw`` feeds it."""
        scale, zp = self._q(self.inp)
        return np.clip(np.round(np.moveaxis(x, -3, -1) / np.float32(scale)) + zp, -128, 127).astype(np.int8)

    def features(self, q: np.ndarray) -> np.ndarray:
        """int8 crops (N, H, W, 3) -> the trunk's int8 features (N, h, w, c), one invocation per crop not seen
        before: an export verifies the graph and then the C99 engine on the same crops, TFLM runs them once."""
        import hashlib

        q = np.ascontiguousarray(q, np.int8)
        out = np.empty((len(q), *self.out["shape"][1:]), np.int8)
        graph = hashlib.sha256(self.flat).digest()
        for i in range(len(q)):
            key = (graph, hashlib.sha256(q[i].tobytes()).digest())
            if key not in _SEEN:
                self.interp.set_input(q[i][None], 0)
                self.interp.invoke()
                got = np.array(self.interp.get_output(0)[0])
                if graph not in _REMEMBER:
                    out[i] = got
                    continue
                _SEEN[key] = got
            out[i] = _SEEN[key]
        return out

    def age_from_features(self, feats: np.ndarray) -> np.ndarray:
        """int8 features (B, crops, ...) -> ages, with the head in float as c3ae_decode computes it."""
        f = np.asarray(feats).reshape(len(feats), self.head["crops"], -1)
        return decode_outputs({"logits": head_logits(f, self._q(self.out), self.head)}, self.meta)["age"]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return decode_outputs({"logits": head_logits(self.raw(x)["features"], self._q(self.out), self.head)}, self.meta)


def head_logits(feats: np.ndarray, q: tuple[float, int], head: dict) -> np.ndarray:
    """int8 features (B, crops, h, w, c) -> W1 logits in float32, as c3ae_mcu.c computes them."""
    f = (feats.reshape(len(feats), -1).astype(np.float32) - np.float32(q[1])) * np.float32(q[0])
    acc = f @ np.asarray(head["w1_int8"], np.float32).T
    return acc * np.asarray(head["w1_scale"], np.float32) + np.asarray(head["b1"], np.float32)


if __name__ == "__main__":  # the arena-search worker: python -m ... arena MODEL.tflite
    import sys

    print(_search(Path(sys.argv[2]).read_bytes()))
