"""The inference form of a model, for fast forwards on a GPU (and on a CPU): every BatchNorm folded into the
convolution before it, the ReLU / ReLU6 after it applied in the same call (on CUDA, one cuDNN conv + bias + ReLU
kernel where cuDNN takes it), dropout removed, C3AE's 1x1 ``conv5`` folded into the head's W1 (both are linear), and
optionally each 2x2 average pool folded into the 3x3 valid convolution after it (one 6x6 stride-2 convolution: fewer
kernels per forward, 4x the MACs of that convolution).

Every fold is exact in real arithmetic; in float the ages match the eager model to rounding (the tests check them on
real faces). The form is a new module: the model passed in is not changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from c3ae_edge.models.layers import SqueezeExcite

_ACTS = {nn.ReLU: "relu", nn.ReLU6: "relu6"}


class ConvAct(nn.Module):
    """A convolution with its BatchNorm folded in (always a bias) and its activation applied in the same call."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, conv: nn.Conv2d, act: str | None):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride, self.padding = tuple(conv.stride), tuple(conv.padding)
        self.dilation, self.groups = tuple(conv.dilation), conv.groups
        self.act = act
        self.cudnn_relu = False  # set by ``use_cudnn_relu`` once the device has shown it takes the fused op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cudnn_relu and self.act == "relu" and x.is_cuda:
            return torch.cudnn_convolution_relu(
                x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.act == "relu":
            return F.relu(y)
        if self.act == "relu6":
            return F.hardtanh(y, 0.0, 6.0)
        return y

    def extra_repr(self) -> str:
        o, i, kh, kw = self.weight.shape
        return f"{i}->{o}, {kh}x{kw}, stride {self.stride}, groups {self.groups}, act {self.act}"


class FusedSE(nn.Module):
    """Squeeze-and-excitation with its first linear layer and ReLU in one call on CUDA (cuBLASLt's ReLU epilogue:
    one kernel fewer per block)."""

    def __init__(self, se: SqueezeExcite):
        super().__init__()
        self.fc1, self.fc2 = se.fc1, se.fc2
        self.fused_mm = False  # set by ``use_fused_kernels``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        if self.fused_mm and x.is_cuda:
            h = torch._addmm_activation(self.fc1.bias, s, self.fc1.weight.t())
        else:
            h = F.relu(self.fc1(s))
        return x * torch.sigmoid(self.fc2(h))[:, :, None, None]


@dataclass
class FormNotes:
    """What ``inference_form`` folded (reported with every bench row of the form)."""

    bn_folded: int = 0
    act_fused: int = 0
    dropout_removed: int = 0
    conv5_into_w1: bool = False
    pools_into_conv: int = 0
    se_fused: int = 0


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``bn(conv(x))`` as one convolution (eval-mode statistics), computed in float64 and given
    back in the convolution's dtype."""
    dt = conv.weight.dtype
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is None:
        return w.to(dt), b.to(dt)
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return (w * scale[:, None, None, None]).to(dt), bias.to(dt)


def _fuse_list(mods: list[nn.Module], notes: FormNotes) -> list[nn.Module]:
    """Conv2d [+ BatchNorm2d] [+ ReLU/ReLU6] runs -> ConvAct; dropout dropped; other modules fused inside."""
    out: list[nn.Module] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Dropout):
            notes.dropout_removed += 1
            i += 1
            continue
        if not (isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str)):
            out.append(_fuse(m, notes))
            i += 1
            continue
        j = i + 1
        bn = mods[j] if j < len(mods) and isinstance(mods[j], nn.BatchNorm2d) else None
        j += bn is not None
        act = _ACTS.get(type(mods[j])) if j < len(mods) else None
        j += act is not None
        notes.bn_folded += bn is not None
        notes.act_fused += act is not None
        out.append(ConvAct(*fold_bn(m, bn), m, act))
        i = j
    return out


def _fuse(module: nn.Module, notes: FormNotes) -> nn.Module:
    if isinstance(module, nn.Sequential):
        mods = _fuse_list(list(module.children()), notes)
        return mods[0] if len(mods) == 1 else nn.Sequential(*mods)
    if isinstance(module, nn.Dropout):
        notes.dropout_removed += 1
        return nn.Identity()
    if isinstance(module, SqueezeExcite):
        notes.se_fused += 1
        return FusedSE(module)
    for name, child in list(module.named_children()):
        setattr(module, name, _fuse(child, notes))
    return module


def _fold_conv5_into_w1(model: nn.Module, notes: FormNotes) -> None:
    """C3AE: the 1x1 conv5 (no activation) and the head's W1 are both linear: one Linear over conv4's features.
    The full model's 2x2 pool sits between them; an average pool commutes with a 1x1 convolution."""
    trunk, head = getattr(model, "trunk", None), getattr(model, "head", None)
    c5, w1 = getattr(trunk, "conv5", None), getattr(head, "w1", None)
    if not (isinstance(c5, nn.Conv2d) and c5.kernel_size == (1, 1) and c5.groups == 1 and isinstance(w1, nn.Linear)):
        return
    k, c, dt = getattr(model, "crops", 1), c5.out_channels, w1.weight.dtype
    w5, b5 = c5.weight.detach().double()[:, :, 0, 0], c5.bias.detach().double()
    v = w1.weight.detach().double().reshape(w1.out_features, k, c, -1)  # features: crop, channel, position
    lin = nn.Linear(k * c5.in_channels * v.shape[-1], w1.out_features, dtype=dt)
    with torch.no_grad():
        lin.weight.copy_(torch.einsum("jkop,oi->jkip", v, w5).reshape(w1.out_features, -1))
        lin.bias.copy_(w1.bias.detach().double() + torch.einsum("jkop,o->j", v, b5))
    lin.requires_grad_(False)
    head.w1, trunk.conv5 = lin, nn.Identity()
    notes.conv5_into_w1 = True


def _pool_then_conv(pool: nn.Module, conv: nn.Module) -> bool:
    if not (isinstance(pool, nn.AvgPool2d) and isinstance(conv, ConvAct)):
        return False
    k, s, p = (pool.kernel_size, pool.stride, pool.padding)
    plain_pool = k in (2, (2, 2)) and s in (2, (2, 2)) and p in (0, (0, 0)) and not pool.ceil_mode
    kh, kw = conv.weight.shape[-2:]
    valid = conv.stride == (1, 1) and conv.padding == (0, 0) and conv.dilation == (1, 1)
    return plain_pool and valid and kh == kw


def _fold_pools(model: nn.Module, notes: FormNotes) -> None:
    """C3AE trunk: AvgPool2d(2) then a k x k valid convolution == one 2k x 2k stride-2 convolution, weights / 4
    (odd sizes too: the pool drops the last row, the wider kernel never reaches it)."""
    trunk = getattr(model, "trunk", None)
    blocks = [getattr(trunk, f"conv{i}", None) for i in range(1, 6)]
    if any(b is None for b in blocks):
        return
    flat = [m for b in blocks for m in (b if isinstance(b, nn.Sequential) else [b])]
    out: list[nn.Module] = []
    for m in flat:
        if out and _pool_then_conv(out[-1], m):
            out.pop()
            w = m.weight.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) / 4
            m.weight = nn.Parameter(w, requires_grad=False)
            m.stride = (2, 2)
            notes.pools_into_conv += 1
        if not isinstance(m, nn.Identity):
            out.append(m)
    model.trunk = nn.Sequential(*out)


def inference_form(model: nn.Module, pool_into_conv: bool = False) -> nn.Module:
    """A folded, fused copy of ``model`` in eval mode, in its dtype (``.cfg`` kept, ``.form_notes``: what was
    folded)."""
    notes = FormNotes()
    m = copy.deepcopy(model).eval()
    _fold_conv5_into_w1(m, notes)
    m = _fuse(m, notes)
    if pool_into_conv:
        _fold_pools(m, notes)
    m.requires_grad_(False)
    if hasattr(model, "cfg"):
        m.cfg = model.cfg
    m.form_notes = notes
    return m.eval()


def use_fused_kernels(form: nn.Module, on: bool) -> int:
    """Turn the CUDA single-kernel calls on or off (cuDNN conv + bias + ReLU in every ConvAct with a ReLU, linear +
    ReLU in every FusedSE); -> how many calls they apply to. Off, the form is plain ops (what torch.compile takes)."""
    n = 0
    for m in form.modules():
        if isinstance(m, ConvAct):
            m.cudnn_relu = on
            n += on and m.act == "relu"
        elif isinstance(m, FusedSE):
            m.fused_mm = on
            n += on
    return n
