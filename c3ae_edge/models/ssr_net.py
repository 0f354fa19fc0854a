"""SSR-Net (Yang et al., IJCAI 2018): two streams, three stages of soft stagewise regression, 64x64 input.

Layer for layer the Keras reference (stage_num 3,3,3; lambda_local = lambda_d = 1; V = 101), which the
paper counts at 40,915 params; this port counts the same 40,915 (BN as 4 per channel).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from c3ae_edge.models.registry import ModelCfg, PaperRef, register_model


def _stream(cout: int, act: type[nn.Module], pool: type[nn.Module]) -> nn.ModuleList:
    blocks = []
    cin = 3
    for _ in range(4):
        blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 3), nn.BatchNorm2d(cout), act()))
        cin = cout
    return nn.ModuleList(blocks)


class _Stage(nn.Module):
    """One stage: 1x1 convs on both streams, pooled, fused by product into (pred, local delta, delta)."""

    def __init__(self, cx: int, cs: int, pool: int, flat: int, k: int, dropout: float):
        super().__init__()
        self.pool = pool
        self.x_conv = nn.Conv2d(cx, 10, 1)
        self.s_conv = nn.Conv2d(cs, 10, 1)
        self.x_mix = nn.Sequential(nn.Dropout(dropout), nn.Linear(flat, k), nn.ReLU())
        self.s_mix = nn.Sequential(nn.Dropout(dropout), nn.Linear(flat, k), nn.ReLU())
        self.delta = nn.Linear(flat, 1)
        self.feat = nn.Sequential(nn.Linear(k, 2 * k), nn.ReLU())
        self.pred = nn.Sequential(nn.Linear(2 * k, k), nn.ReLU())
        self.local = nn.Sequential(nn.Linear(2 * k, k), nn.Tanh())

    def forward(self, x: torch.Tensor, s: torch.Tensor):
        x = torch.relu(self.x_conv(x))
        s = torch.relu(self.s_conv(s))
        if self.pool > 1:
            x = nn.functional.avg_pool2d(x, self.pool)
            s = nn.functional.max_pool2d(s, self.pool)
        x, s = torch.flatten(x, 1), torch.flatten(s, 1)
        delta = torch.tanh(self.delta(x * s)).squeeze(-1)
        f = self.feat(self.x_mix(x) * self.s_mix(s))
        return self.pred(f), self.local(f), delta


class SSRNet(nn.Module):
    def __init__(
        self,
        stage_num: tuple[int, int, int] = (3, 3, 3),
        lambda_local: float = 1.0,
        lambda_d: float = 1.0,
        v: float = 101.0,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.stage_num, self.lambda_local, self.lambda_d, self.v = stage_num, lambda_local, lambda_d, v
        self.xs = _stream(32, nn.ReLU, nn.AvgPool2d)
        self.ss = _stream(16, nn.Tanh, nn.MaxPool2d)
        # for a 64x64 input: stage1 reads 4x4 maps, stage2 14x14 pooled by 4, stage3 31x31 pooled by 8
        self.stages = nn.ModuleList(
            [
                _Stage(32, 16, 1, 160, stage_num[0], dropout),
                _Stage(32, 16, 4, 90, stage_num[1], dropout),
                _Stage(32, 16, 8, 90, stage_num[2], dropout),
            ]
        )
        for i, k in enumerate(stage_num):  # constants, not state: float so quantisers never see an int64 arange
            self.register_buffer(f"idx{i}", torch.arange(k, dtype=torch.float32), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x, s = img, img
        xl, sl = [], []
        for i in range(4):
            x, s = self.xs[i](x), self.ss[i](s)
            if i < 3:
                x, s = nn.functional.avg_pool2d(x, 2), nn.functional.max_pool2d(s, 2)
            xl.append(x)
            sl.append(s)
        taps = [(xl[3], sl[3]), (xl[1], sl[1]), (xl[0], sl[0])]
        age = denom = None
        for i, (stage, k, (xt, st)) in enumerate(zip(self.stages, self.stage_num, taps)):
            pred, local, delta = stage(xt, st)
            d = float(k) * (1.0 + float(self.lambda_d) * delta)  # float scalars: PT2E lifts int ones to int64 constants
            denom = d if denom is None else denom * d
            term = ((getattr(self, f"idx{i}") + self.lambda_local * local) * pred).sum(-1) / denom
            age = term if age is None else age + term
        return age * self.v


@register_model(
    ModelCfg(
        name="ssr_net",
        family="ssr_net",
        input_shape=(3, 64, 64),
        params=40_915,
        trainable_params=40_531,
        macc=17_078_926,
        conv_macc=17_076_384,
        fp32_bytes=163_660,
        paper=PaperRef(
            "Table 2/3", params=40_915, macc_m=17.6, memory="326.4KB", mae_morph=3.16, cpu_s=0.0233, gpu_s=0.0050
        ),
        description="SSR-Net, two streams, 3x3x3 soft stagewise regression",
    )
)
def ssr_net(dropout: float = 0.2) -> SSRNet:
    return SSRNet(dropout=dropout)
