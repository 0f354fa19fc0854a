"""A weights file as typed data: model, tensors, crop spec and training facts (the file format is unchanged:
a torch.save dict {format, model, state_dict, crop_spec, meta}, loaded with weights_only=True), and loading one into
a model. It sits with the models so that ``create_model(name, pretrained=True)`` reads the shipped weights without
the weights stage (which builds on the models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from c3ae_edge.errors import DataError, UsageError

FORMAT = "c3ae-edge-weights/1"


@dataclass(frozen=True)
class TrainingMeta:
    """The checkpoint's "meta" table: what training recorded. Keys this package does not read stay in ``extra``."""

    epoch: int | None = None
    val_mae: float | None = None
    data: str | None = None
    seed: int | None = None
    config: dict | None = None
    split_file: str | None = None  # a file beside the weights (a plain name, never a path)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The table as saved: the set fields in declaration order, then the others."""
        known = {k: getattr(self, k) for k in _META if getattr(self, k) is not None}
        return {**known, **self.extra}

    @classmethod
    def from_dict(cls, d: object, where: str) -> TrainingMeta:
        if not isinstance(d, dict):
            raise DataError(f"{where}: not a c3ae-edge checkpoint ('meta' and 'crop_spec' must be tables)")
        for key, typ in _META.items():
            v = d.get(key)
            if v is not None and (not isinstance(v, typ) or isinstance(v, bool)):
                raise DataError(f"{where}: meta.{key} is {type(v).__name__}, not {_name(typ)}")
        name = d.get("split_file")
        if name is not None and (not name or "/" in name or "\\" in name or name in (".", "..")):
            raise DataError(f"{where}: meta.split_file {name!r} is not a file name beside the weights")
        return cls(**{k: d[k] for k in _META if k in d}, extra={k: v for k, v in d.items() if k not in _META})


_META = {"epoch": int, "val_mae": (int, float), "data": str, "seed": int, "config": dict, "split_file": str}


def _name(typ) -> str:
    return typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)


@dataclass(frozen=True)
class Checkpoint:
    """A checked weights file. ``crop_spec`` is the raw table (None: the model's default crops)."""

    path: str
    model: str
    state_dict: dict
    crop_spec: dict | None = None
    meta: TrainingMeta = field(default_factory=TrainingMeta)
    format: str | None = None

    @classmethod
    def from_checkpoint(cls, ck: object, path: str | Path) -> Checkpoint:
        """What torch.load gave, checked: a model name, tensors only, finite floats, tables for meta and crop_spec."""
        p = Path(path)
        if not isinstance(ck, dict) or "state_dict" not in ck or "model" not in ck:
            raise DataError(f"{p}: not a c3ae-edge checkpoint (no 'model'/'state_dict')")
        sd = ck["state_dict"]
        if (
            not isinstance(ck["model"], str)
            or not isinstance(sd, dict)
            or not all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in sd.items())
        ):
            raise DataError(f"{p}: not a c3ae-edge checkpoint ('model' must name a model, 'state_dict' hold tensors)")
        if not isinstance(ck.get("meta", {}), dict) or not isinstance(ck.get("crop_spec") or {}, dict):
            raise DataError(f"{p}: not a c3ae-edge checkpoint ('meta' and 'crop_spec' must be tables)")
        bad = [k for k, t in sd.items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise DataError(f"{p}: weights contain NaN/Inf ({', '.join(bad[:3])})")
        meta = TrainingMeta.from_dict(ck.get("meta") or {}, str(p))
        fmt = ck.get("format")
        return cls(str(p), ck["model"], sd, ck.get("crop_spec"), meta, fmt if isinstance(fmt, str) else None)

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: no such weights file")
        try:
            ck = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a corrupt file
            raise DataError(f"{p}: not a readable checkpoint ({type(e).__name__})") from None
        return cls.from_checkpoint(ck, p)

    def to_dict(self) -> dict:
        """The file's table (what read_checkpoint returned before this type)."""
        d = {"format": self.format} if self.format else {}
        return {
            **d,
            "model": self.model,
            "state_dict": self.state_dict,
            "crop_spec": self.crop_spec,
            "meta": self.meta.to_dict(),
        }


def load_into(model, path: str | Path, model_name: str | None = None) -> Checkpoint:
    """Read a weights file (checked) into ``model``; ``model_name`` must match the file's model when given."""
    ck = Checkpoint.load(path)
    check_model(ck.model, model_name, path)
    load_state(model, ck.state_dict, ck.model, path)
    return ck


def check_model(name: str, model_name: str | None, path) -> None:
    if model_name and name != model_name:
        raise UsageError(f"{path} holds {name!r} weights, not {model_name!r}")


def load_state(model, state_dict: dict, name: str, path) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise DataError(f"{path}: weights do not fit model {name!r} ({str(e).splitlines()[0]})") from None
