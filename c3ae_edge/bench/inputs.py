"""What every bench row runs on: real face crops (the same tensors for every backend and device) and the model."""

from __future__ import annotations

import numpy as np

N_TIMING_FACES, N_CALIBRATION_FACES = 32, 32  # 32: the export side's minimum for int8 calibration


def faces(n_crops: int, data: str | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Real face crops, the same tensors for every backend: (timing/parity crops, their ages, calibration crops,
    files)."""
    from c3ae_edge.data import load_dataset
    from c3ae_edge.data.crops import spec_for
    from c3ae_edge.export import default_faces
    from c3ae_edge.export.calibration import face_set, stratified_pick, utkface_root

    root = utkface_root(data, "; pass --data DIR (the folder holding utkface/) or set C3AE_DATA")
    root = root or default_faces.folder()  # no data set here: the 800 embedded UTKFace chips, as export does
    samples = load_dataset(f"utkface:{root}")
    n = N_TIMING_FACES + N_CALIBRATION_FACES
    picked = [samples[i] for i in stratified_pick(np.array([s.age for s in samples]), n, seed)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(picked))
    picked = [picked[i] for i in order]
    fs = face_set(picked, spec_for(n_crops), f"utkface:{root}")
    return (
        fs.x[:N_TIMING_FACES],
        fs.ages[:N_TIMING_FACES],
        fs.x[N_TIMING_FACES:],
        fs.files[:N_TIMING_FACES],
    )


def batch_of(x: np.ndarray, b: int) -> np.ndarray:
    """The first b faces (cycled if b exceeds the set), contiguous float32."""
    idx = np.arange(b) % len(x)
    return np.ascontiguousarray(x[idx], np.float32)


def build_model(name: str, seed: int):
    """(model, weights note): shipped weights where they exist, else seeded initial weights (latency does not depend on
    them)."""
    import torch

    from c3ae_edge.models import create_model
    from c3ae_edge.weights import pretrained_model, shipped_models

    if name in shipped_models():
        return pretrained_model(name).eval(), "shipped weights"
    torch.manual_seed(seed)
    return create_model(name).eval(), "initialised weights (untrained; latency does not depend on the values)"


def input_note(seed: int) -> str:
    return (
        f"{N_TIMING_FACES} real UTKFace crops (stratified by age, seed {seed}); batch b = the first b; int8 "
        f"calibration on {N_CALIBRATION_FACES} other faces"
    )
