"""The timed call per backend: ``forward(x)`` takes the same float32 crops (the model's NCHW / NSCHW layout) for every
backend and does whatever the artifact needs (layout move, input quantisation) inside the timed call. Torch is the
reference here; every artifact backend brings its own forward and options (``Backend.bench``, its module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from c3ae_edge.export.backends.base import Forward

__all__ = ["Forward", "artifact_forward", "output_batch", "runtime_options", "torch_forward"]

# Runtime options, set explicitly and reported with every row (nothing left to a runtime's default).
TORCH_OPTIONS = {"mode": "eager, torch.inference_mode", "intra_op_threads": "= threads", "interop_threads": 1}


def runtime_options(backend: str) -> dict:
    """The options a row of ``backend`` ran with: torch's, or the backend's own (``Backend.bench.options``)."""
    from c3ae_edge.export.registry import get_backend

    return TORCH_OPTIONS if backend == "torch" else _bench(get_backend(backend)).options


def torch_forward(model, threads: int) -> Forward:
    import torch

    torch.set_num_threads(threads)
    model.eval()

    def forward(x: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return forward


def output_batch(out) -> int:
    """Leading dimension of a forward's first output (checks the timed call really computed the whole batch)."""
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    shape = getattr(out, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else 1


def artifact_forward(backend: str, path: Path, threads: int, precision: str, batch: int = 1) -> Forward:
    from c3ae_edge.export.registry import get_backend

    return _bench(get_backend(backend)).forward(path, threads, precision, batch)


def _bench(be):
    if be.bench is None:
        raise ValueError(f"the host bench does not time backend {be.spec.name!r}")
    return be.bench
