"""timm-style model registry: ``@register_model`` builders, ``create_model``, ``list_models``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from c3ae_edge.errors import UsageError


@dataclass(frozen=True)
class PaperRef:
    """A row of the paper's Table 2/3 for this architecture (reference only, never our measurement)."""

    table: str
    params: int | None = None
    macc_m: float | None = None
    memory: str | None = None
    mae_morph: float | None = None
    cpu_s: float | None = None
    gpu_s: float | None = None

    @classmethod
    def table23(cls, params: int, macc_m: float, memory: str, mae_morph: float, cpu_s: float, gpu_s: float) -> PaperRef:
        """A peer's row of Tables 2 and 3, in the tables' column order."""
        return cls(
            "Table 2/3", params=params, macc_m=macc_m, memory=memory, mae_morph=mae_morph, cpu_s=cpu_s, gpu_s=gpu_s
        )


@dataclass(frozen=True)
class ModelCfg:
    """Declared metadata of one registered model; tests recompute every number from the module."""

    name: str
    family: str
    input_shape: tuple[int, ...]  # without batch, e.g. (3, 64, 64) or (3, 3, 64, 64) for three crops
    params: int  # Keras-style count: parameters + BN running mean/var
    trainable_params: int
    macc: int  # all conv + linear multiply-accumulates for one image
    conv_macc: int
    fp32_bytes: int  # state-dict tensors as float32
    paper: PaperRef | None = None
    description: str = ""
    weights: str | None = None  # file name under c3ae_edge/weights when pretrained weights ship
    license: str = "Apache-2.0 (code); weights: see MODEL_CARD.md"
    kwargs: dict = field(default_factory=dict)

    @property
    def crops(self) -> int:
        return self.input_shape[0] if len(self.input_shape) == 4 else 1


_REGISTRY: dict[str, tuple[Callable[..., nn.Module], ModelCfg]] = {}


def register_model(cfg: ModelCfg) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if cfg.name in _REGISTRY:
            raise ValueError(f"model {cfg.name!r} registered twice")
        _REGISTRY[cfg.name] = (fn, cfg)
        return fn

    return deco


def list_models(pattern: str | None = None) -> list[str]:
    import fnmatch

    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_model_cfg(name: str) -> ModelCfg:
    if name not in _REGISTRY:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name][1]


def create_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered model, randomly initialised, or with ``pretrained=True`` the weights shipped in the package
    (read with ``weights_only=True``, no network; the model is returned in eval mode). Other keyword arguments go to
    the builder."""
    cfg = get_model_cfg(name)
    path = shipped_weights(name) if pretrained else None  # before building: one clear error for models without
    model = _REGISTRY[name][0](**{**cfg.kwargs, **kwargs})
    model.cfg = cfg  # type: ignore[attr-defined]
    if path is not None:
        from c3ae_edge.models.checkpoint import load_into

        load_into(model, path, name)
        model.eval()
    return model


# The trained weights that ship with the package, beside the code that loads them (c3ae_edge/weights/).
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def shipped_models() -> list[str]:
    """Registered models whose weights ship in the package."""
    return [
        n for n in list_models() if _REGISTRY[n][1].weights and (SHIPPED_WEIGHTS / _REGISTRY[n][1].weights).is_file()
    ]


def shipped_weights(name: str) -> Path:
    """The shipped weights file of a registered model; one UsageError naming the model when none ship."""
    cfg = get_model_cfg(name)
    if not cfg.weights or not (SHIPPED_WEIGHTS / cfg.weights).is_file():
        raise UsageError(
            f"no pretrained weights ship for {name!r} (shipped: {', '.join(shipped_models()) or 'none'}); "
            "train it (c3ae-edge train) and use its checkpoint"
        )
    return SHIPPED_WEIGHTS / cfg.weights
