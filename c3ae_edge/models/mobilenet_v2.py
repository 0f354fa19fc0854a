"""MobileNet-V2 (Sandler et al., 2018) as in Keras applications, with the paper's (alpha_pw, alpha_exp):
alpha_pw scales every pointwise width, alpha_exp replaces the expansion factor 6. 64x64 in, age out (Dense 1).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from c3ae_edge.models.layers import ConvBNAct, make_divisible
from c3ae_edge.models.registry import ModelCfg, PaperRef, register_model

# (output channels, repeats, first stride); the first block always has expansion 1
_SETTINGS = [(16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: float):
        super().__init__()
        hidden = int(round(cin * expansion))
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNAct(cin, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden), ConvBNAct(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, alpha_pw: float = 1.0, alpha_exp: float = 6.0, last_channels: int = 1280, dropout: float = 0.2):
        super().__init__()
        cin = make_divisible(32 * alpha_pw)
        layers: list[nn.Module] = [ConvBNAct(3, cin, 3, 2)]
        for i, (c, n, s) in enumerate(_SETTINGS):
            cout = make_divisible(c * alpha_pw)
            for j in range(n):
                layers.append(InvertedResidual(cin, cout, s if j == 0 else 1, 1 if i == 0 else alpha_exp))
                cin = cout
        last = make_divisible(last_channels * alpha_pw) if alpha_pw > 1.0 else last_channels
        layers.append(ConvBNAct(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(-1)


@register_model(
    ModelCfg(
        name="mobilenet_v2_050_6",
        family="mobilenet_v2",
        input_shape=(3, 64, 64),
        params=707_505,
        trainable_params=688_961,
        macc=7_825_920,
        conv_macc=7_824_640,
        fp32_bytes=2_830_020,
        paper=PaperRef.table23(518_857, 8.1, "2.5MB", 4.05, 0.0245, 0.0070),
        description="MobileNet-V2 (alpha_pw 0.5, alpha_exp 6)",
        kwargs={"alpha_pw": 0.5, "alpha_exp": 6},
    )
)
def mobilenet_v2_050_6(**kw) -> MobileNetV2:
    return MobileNetV2(**kw)


@register_model(
    ModelCfg(
        name="mobilenet_v2_075_6",
        family="mobilenet_v2",
        input_shape=(3, 64, 64),
        params=1_383_345,
        trainable_params=1_356_705,
        macc=16_963_712,
        conv_macc=16_962_432,
        fp32_bytes=5_533_380,
        paper=PaperRef.table23(1_102_537, 17.7, "4.8MB", 4.10, 0.0394, 0.0080),
        description="MobileNet-V2 (alpha_pw 0.75, alpha_exp 6)",
        kwargs={"alpha_pw": 0.75, "alpha_exp": 6},
    )
)
def mobilenet_v2_075_6(**kw) -> MobileNetV2:
    return MobileNetV2(**kw)
