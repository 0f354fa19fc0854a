"""ShuffleNet-V2 (Ma et al., 2018) after the Keras port the paper used, with the paper's (alpha_ra, alpha_fa):
alpha_ra is the bottleneck ratio of every unit's branch, alpha_fa scales the stage widths (24, 116, 232, 464).
Stages repeat 3, 7, 3 units after a stride-2 unit; 1x1 conv to 1024; global pooling; Dense 1 for the age.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from c3ae_edge.models.registry import ModelCfg, PaperRef, register_model


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _branch(cin: int, cmid: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cmid, 1),
        nn.BatchNorm2d(cmid),
        nn.ReLU(inplace=True),
        nn.Conv2d(cmid, cmid, 3, stride, 1, groups=cmid),
        nn.BatchNorm2d(cmid),
        nn.Conv2d(cmid, cmid, 1),
        nn.BatchNorm2d(cmid),
        nn.ReLU(inplace=True),
    )


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, out_channels: int, ratio: float, stride: int):
        super().__init__()
        self.stride = stride
        self.split = (cin // 2, cin - cin // 2)  # (kept, processed) halves of a stride-1 unit
        mid = int(out_channels * ratio)
        if stride == 1:
            self.branch = _branch(cin - cin // 2, mid, 1)
        else:
            self.branch = _branch(cin, mid, 2)
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cin, 3, 2, 1, groups=cin),
                nn.BatchNorm2d(cin),
                nn.Conv2d(cin, mid, 1),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, x = torch.split(x, self.split, dim=1)
            out = torch.cat([self.branch(x), keep], 1)
        else:
            out = torch.cat([self.branch(x), self.shortcut(x)], 1)
        return channel_shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(
        self, alpha_ra: float = 1.0, alpha_fa: float = 1.0, repeats: tuple[int, ...] = (3, 7, 3), dropout: float = 0.2
    ):
        super().__init__()
        widths = [int(c * alpha_fa) for c in (24, 116, 232, 464)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        )
        units: list[nn.Module] = []
        cin = widths[0]
        for out_c, n in zip(widths[1:], repeats):
            units.append(ShuffleUnit(cin, out_c, alpha_ra, 2))
            cin = 2 * int(out_c * alpha_ra)
            for _ in range(n):
                units.append(ShuffleUnit(cin, out_c, alpha_ra, 1))
                cin = int(out_c * alpha_ra) + cin // 2
        self.units = nn.Sequential(*units)
        last = 1024 if alpha_ra < 2 else 2048
        self.last = nn.Sequential(nn.Conv2d(cin, last, 1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last(self.units(self.stem(x)))
        return self.head(x.amax(dim=(2, 3))).squeeze(-1)


@register_model(
    ModelCfg(
        name="shufflenet_v2_050_1",
        family="shufflenet_v2",
        input_shape=(3, 64, 64),
        params=1_274_683,
        trainable_params=1_260_599,
        macc=11_746_656,
        conv_macc=11_745_632,
        fp32_bytes=5_098_732,
        paper=PaperRef.table23(1_284_087, 12.7, "5.9MB", 3.83, 0.0228, 0.0080),
        description="ShuffleNet-V2 (alpha_ra 0.5, alpha_fa 1)",
        kwargs={"alpha_ra": 0.5, "alpha_fa": 1.0},
    )
)
def shufflenet_v2_050_1(**kw) -> ShuffleNetV2:
    return ShuffleNetV2(**kw)


@register_model(
    ModelCfg(
        name="shufflenet_v2_075_1",
        family="shufflenet_v2",
        input_shape=(3, 64, 64),
        params=2_463_045,
        trainable_params=2_441_943,
        macc=23_578_192,
        conv_macc=23_577_168,
        fp32_bytes=9_852_180,
        paper=PaperRef.table23(2_473_043, 26.1, "10.7MB", 3.63, 0.0295, 0.0082),
        description="ShuffleNet-V2 (alpha_ra 0.75, alpha_fa 1)",
        kwargs={"alpha_ra": 0.75, "alpha_fa": 1.0},
    )
)
def shufflenet_v2_075_1(**kw) -> ShuffleNetV2:
    return ShuffleNetV2(**kw)
