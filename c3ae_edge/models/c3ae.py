"""C3AE (Zhang et al., CVPR 2019): the plain model of Table 1, its SE variant, and the full context model.

Param arithmetic (BatchNorm counted as 4 per channel, as the paper and Keras do):

- trunk conv1..conv5: 896 + 3 * 9,248 + 1,056 = 29,696; BN after conv1..conv4: 4 * 128 = 512 -> 30,208
- plain head: W1 4*4*32 -> 12 = 6,156; W2 12 -> 1 = 13.  c3ae_plain = 36,377 (Table 1 exactly).
- SE block, squeeze factor 2, after each of the four BN blocks: 32*16 + 16 + 16*32 + 32 = 1,072 (the
  paper's "32*16*2 = 1024" plus the biases) -> 4 * 1,072 = 4,288.  c3ae_plain_se = 40,665.
- c3ae_full head: the paper's 39.7K cannot hold a W1 over three full 4x4x32 bottlenecks (1,536 * 12 alone
  is 18.4K, which is why the public Keras port lands at 48-54K). We average-pool each crop's 4x4x32
  bottleneck to 2x2x32 = 128 features, concatenate the three crops (384) and map W1: 384 -> 12 = 4,620,
  W2: 12 -> 1 = 13.  c3ae_full = 30,208 + 4,288 + 4,620 + 13 = 39,129, 1.4% under the paper's 39.7K.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from c3ae_edge.models.layers import SqueezeExcite
from c3ae_edge.models.registry import ModelCfg, PaperRef, register_model
from c3ae_edge.models.twopoint import BIN_CENTRES, NUM_BINS

TABLE3 = "Table 2/3"


class C3AETrunk(nn.Module):
    """Table 1 conv1..conv5: 3x3 valid convs with 32 channels, BRA after conv1-3, BN+ReLU after conv4, 1x1 conv5."""

    def __init__(self, channels: int = 32, se: bool = False, se_reduction: int = 2):
        super().__init__()
        c = channels

        def block(cin: int, pool: bool) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(cin, c, 3), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.AvgPool2d(2))
            if se:
                layers.append(SqueezeExcite(c, se_reduction))
            return nn.Sequential(*layers)

        self.conv1 = block(3, True)
        self.conv2 = block(c, True)
        self.conv3 = block(c, True)
        self.conv4 = block(c, False)
        self.conv5 = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x)))))


class CascadeHead(nn.Module):
    """Two-point cascade: features -W1-> softmax over the 12 age bins -W2-> age (W2 starts at the bin centres)."""

    def __init__(self, in_features: int, dropout: float = 0.2):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.w1 = nn.Linear(in_features, NUM_BINS)
        self.w2 = nn.Linear(NUM_BINS, 1)
        with torch.no_grad():
            self.w2.weight.copy_(BIN_CENTRES.view(1, -1))
            self.w2.bias.zero_()

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.softmax(self.w1(self.dropout(feats)), dim=-1)
        return self.w2(probs).squeeze(-1), probs


class C3AEPlain(nn.Module):
    """One 64x64 crop in (B, 3, 64, 64), age out (B,). ``forward_dist`` also returns the bin distribution."""

    cascade = True

    def __init__(self, se: bool = False, dropout: float = 0.2):
        super().__init__()
        self.trunk = C3AETrunk(se=se)
        self.head = CascadeHead(32 * 4 * 4, dropout)

    def forward_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(torch.flatten(self.trunk(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_dist(x)[0]


class C3AEFull(nn.Module):
    """Three context crops in (B, 3 crops, 3, 64, 64); one shared SE trunk runs on the crops folded into the batch."""

    cascade = True

    def __init__(self, se: bool = True, dropout: float = 0.2, crops: int = 3):
        super().__init__()
        self.crops = crops
        self.trunk = C3AETrunk(se=se)
        self.pool = nn.AvgPool2d(2)
        self.head = CascadeHead(crops * 32 * 2 * 2, dropout)

    def forward_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        f = self.pool(self.trunk(x.reshape(b * self.crops, 3, 64, 64)))
        return self.head(f.reshape(b, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_dist(x)[0]


_PLAIN_PAPER = PaperRef(
    TABLE3, params=36_345, macc_m=12.8, memory="197.8KB", mae_morph=3.13, cpu_s=0.0126, gpu_s=0.0029
)


@register_model(
    ModelCfg(
        name="c3ae_plain",
        family="c3ae",
        input_shape=(3, 64, 64),
        params=36_377,
        trainable_params=36_121,
        macc=12_568_972,
        conv_macc=12_562_816,
        fp32_bytes=145_508,
        paper=_PLAIN_PAPER,
        description="C3AE plain model, Table 1 exactly",
        weights="c3ae_plain.pt",
    )
)
def c3ae_plain(dropout: float = 0.2) -> C3AEPlain:
    return C3AEPlain(se=False, dropout=dropout)


@register_model(
    ModelCfg(
        name="c3ae_plain_se",
        family="c3ae",
        input_shape=(3, 64, 64),
        params=40_665,
        trainable_params=40_409,
        macc=12_573_068,
        conv_macc=12_562_816,
        fp32_bytes=162_660,
        paper=PaperRef("Table 4", mae_morph=3.11),
        description="C3AE plain model with SE blocks (squeeze 2), Table 4",
    )
)
def c3ae_plain_se(dropout: float = 0.2) -> C3AEPlain:
    return C3AEPlain(se=True, dropout=dropout)


@register_model(
    ModelCfg(
        name="c3ae_full",
        family="c3ae",
        input_shape=(3, 3, 64, 64),
        params=39_129,
        trainable_params=38_873,
        macc=37_705_356,
        conv_macc=37_688_448,
        fp32_bytes=156_516,
        paper=PaperRef("Table 5", params=39_700, memory="0.25MB", mae_morph=2.78),
        description="C3AE full: shared SE trunk over three context crops + two-point cascade head",
        weights="c3ae_full.pt",
    )
)
def c3ae_full(dropout: float = 0.2) -> C3AEFull:
    return C3AEFull(se=True, dropout=dropout)
