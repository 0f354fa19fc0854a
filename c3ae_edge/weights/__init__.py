"""Checkpoints: the default weights shipped in this folder, and user checkpoints, loaded with no network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from c3ae_edge.data.crops import CropSpec, checked_spec, spec_for
from c3ae_edge.errors import DataError
from c3ae_edge.models.checkpoint import FORMAT, Checkpoint, TrainingMeta, check_model, load_into, load_state
from c3ae_edge.models.registry import SHIPPED_WEIGHTS as WEIGHTS_DIR
from c3ae_edge.models.registry import shipped_models, shipped_weights

__all__ = [
    "FORMAT",
    "WEIGHTS_DIR",
    "Checkpoint",
    "TrainingMeta",
    "atomic_save",
    "checked_spec",
    "load_into",
    "load_model",
    "load_pretrained",
    "pretrained_model",
    "read_checkpoint",
    "save_weights",
    "sha256_file",
    "shipped_models",
    "shipped_path",
    "split_file_for",
]


def shipped_path(model_name: str) -> Path:
    """The shipped weights file of ``model_name`` (one UsageError when none ship)."""
    return shipped_weights(model_name)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict:
    """A weights file or a training checkpoint -> {model, state_dict, crop_spec, meta}; checked for NaN/Inf."""
    return Checkpoint.load(path).to_dict()


def split_file_for(weights_path: str | Path, ck: Checkpoint | dict | None = None) -> Path | None:
    """The split recorded with these weights: the file the weights name (``meta.split_file``, beside them),
    else ``<stem>.split.json``, else ``split.json`` in their folder (a training run)."""
    p = Path(weights_path)
    if ck is None:
        ck = Checkpoint.load(p)
    elif isinstance(ck, dict):
        ck = Checkpoint.from_checkpoint(ck, p)
    named = ck.meta.split_file
    cands = ([p.parent / named] if named else []) + [p.with_suffix(".split.json"), p.parent / "split.json"]
    return next((c for c in cands if c.is_file()), None)


def load_model(weights: str | None = None, model_name: str | None = None):
    """``default``/None -> the shipped weights of ``model_name`` (c3ae_full if none given), else a weights file;
    -> (model in eval mode, CropSpec, Checkpoint). The file is read once."""
    from c3ae_edge.models import create_model

    path = shipped_path(model_name or "c3ae_full") if weights in (None, "default") else Path(weights)
    ck = Checkpoint.load(path)
    check_model(ck.model, model_name, path)
    model = create_model(ck.model)
    load_state(model, ck.state_dict, ck.model, path)
    spec = checked_spec(ck.crop_spec, f"{path} crop_spec") if ck.crop_spec else spec_for(model.cfg.crops)
    if len(spec.scales) != model.cfg.crops:
        raise DataError(
            f"{path}: crop_spec has {len(spec.scales)} scale(s), model {ck.model!r} takes {model.cfg.crops} crop(s)"
        )
    return model.eval(), spec, ck


def load_pretrained(model, name: str) -> None:
    load_into(model, shipped_path(name))
    model.eval()


def pretrained_model(name: str):
    """A registered model with the weights shipped in the package."""
    from c3ae_edge.models import create_model

    return create_model(name, pretrained=True)


def save_weights(
    path: str | Path, model_name: str, state_dict: dict, spec: CropSpec, meta: TrainingMeta | dict
) -> None:
    """A small, self-describing weights file (fp32 tensors, crop spec, training facts)."""
    sd = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    atomic_save(
        {
            "format": FORMAT,
            "model": model_name,
            "state_dict": sd,
            "crop_spec": spec.to_dict(),
            "meta": meta.to_dict() if isinstance(meta, TrainingMeta) else meta,
        },
        path,
    )


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file renamed over ``path``: a crash or a full disk never leaves half a file."""
    import io

    from c3ae_edge.atomic import write_atomic

    buf = io.BytesIO()  # serialise in memory: torch.save on a full disk fails with a cryptic RuntimeError
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())
