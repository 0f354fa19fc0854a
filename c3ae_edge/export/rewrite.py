"""Model rewrites applied before an int8 export: by a target (``int8_rewrites`` in its TOML) or as bench rows
(``variant``).

``dwpool``: every ``nn.AvgPool2d(k)`` becomes a depthwise k x k convolution with fixed weights 1/k^2 and stride k.
Identical in float; in int8 the pool then quantises into a depthwise int8 convolution (OpenVINO runs the stock u8
AvgPool at ~3x the cost of the fp32 one on this CPU; the TFLite XNNPACK delegate does not take int8 AVERAGE_POOL_2D,
which splits the graph into several partitions with the pools on the reference kernels in between).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class PoolAsDepthwise(nn.Module):
    """Average pooling spelt as a depthwise convolution (no padding, stride = kernel)."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.k, self.channels = k, channels
        self.register_buffer("weight", torch.full((channels, 1, k, k), 1.0 / (k * k)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, self.k, 0, 1, self.channels)


def _simple(pool: nn.AvgPool2d) -> int | None:
    """The kernel size if the pool is the plain k x k / stride k / no padding kind, else None."""
    k = (
        pool.kernel_size
        if isinstance(pool.kernel_size, int)
        else (pool.kernel_size[0] if pool.kernel_size[0] == pool.kernel_size[1] else None)
    )
    s = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
    pad = pool.padding if isinstance(pool.padding, int) else max(pool.padding)
    return k if k and s == k and pad == 0 and not pool.ceil_mode else None


def has_pools(model: nn.Module) -> bool:
    return any(isinstance(m, nn.AvgPool2d) and _simple(m) for m in model.modules())


def pools_as_depthwise(model: nn.Module, example: np.ndarray) -> nn.Module:
    """A copy of ``model`` with each plain ``nn.AvgPool2d`` replaced (channel counts found by one forward)."""
    m = copy.deepcopy(model).eval()
    chans: dict[str, int] = {}
    hooks = [
        mod.register_forward_hook(lambda mod, i, o, n=n: chans.__setitem__(n, i[0].shape[1]))
        for n, mod in m.named_modules()
        if isinstance(mod, nn.AvgPool2d) and _simple(mod)
    ]
    with torch.inference_mode():
        m(torch.from_numpy(example[:1]))
    for h in hooks:
        h.remove()
    for name, c in chans.items():
        parent = m.get_submodule(name.rsplit(".", 1)[0]) if "." in name else m
        setattr(parent, name.rsplit(".", 1)[-1], PoolAsDepthwise(c, _simple(m.get_submodule(name))))
    if hasattr(model, "cfg"):
        m.cfg = model.cfg
    return m


VARIANTS = {"dwpool": (has_pools, pools_as_depthwise)}


def apply(model: nn.Module, names: tuple[str, ...] | list[str], example: np.ndarray) -> tuple[nn.Module, list[str]]:
    """``model`` with each named rewrite that applies to it -> (model, the names applied)."""
    done = []
    for n in names:
        applies, rewrite = VARIANTS[n]
        if applies(model):
            model, done = rewrite(model, example), done + [n]
    return model, done
