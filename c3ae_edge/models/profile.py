"""Params, MACC and memory counted from the module itself (forward hooks), per layer and in total."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn


@dataclass
class LayerCount:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macc: int


@dataclass
class ModelProfile:
    params: int  # parameters + BN running mean/var (the paper's and Keras' way)
    trainable_params: int
    macc: int  # conv + linear multiply-accumulates for one sample
    conv_macc: int
    fp32_bytes: int  # every float tensor of the state dict stored as float32
    layers: list[LayerCount] = field(default_factory=list)

    def to_dict(self, layers: bool = False) -> dict:
        d = asdict(self)
        if not layers:
            d.pop("layers")
        return d


def count_params(model: nn.Module) -> tuple[int, int]:
    """(Keras-style params, trainable params): BN running statistics count, ``num_batches_tracked`` does not."""
    trainable = sum(p.numel() for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return trainable + stats, trainable


def _own_params(m: nn.Module) -> int:
    n = sum(p.numel() for p in m.parameters(recurse=False))
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
        n += m.running_mean.numel() + m.running_var.numel()
    return n


def profile_model(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> ModelProfile:
    """Run one sample through ``model`` and count MACC of every Conv2d and Linear (bias adds excluded)."""
    shape = input_shape or model.cfg.input_shape  # type: ignore[attr-defined]
    layers: list[LayerCount] = []
    hooks = []

    def hook(name: str):
        def fn(m: nn.Module, inp, out):
            if isinstance(m, nn.Conv2d):
                macc = out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, nn.Linear):
                macc = out.numel() * m.in_features
            else:
                macc = 0
            layers.append(LayerCount(name, type(m).__name__, tuple(out.shape[1:]), _own_params(m), macc))

        return fn

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            hooks.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params, trainable = count_params(model)
    fp32 = 4 * sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    conv = sum(lc.macc for lc in layers if lc.kind == "Conv2d")
    return ModelProfile(params, trainable, sum(lc.macc for lc in layers), conv, fp32, layers)
