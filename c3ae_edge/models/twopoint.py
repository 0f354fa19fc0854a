"""Two-point representation (Eq. 3 of the paper) and the cascade loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

BIN_WIDTH = 10  # K
NUM_BINS = 12  # bins at 0, 10, ..., 110
BIN_CENTRES = torch.arange(NUM_BINS, dtype=torch.float32) * BIN_WIDTH
MAX_AGE = float(BIN_WIDTH * (NUM_BINS - 1))


def encode(age: torch.Tensor, k: int = BIN_WIDTH, num_bins: int = NUM_BINS) -> torch.Tensor:
    """Ages (B,) -> (B, num_bins): weight 1-(y-lo)/K on bin lo=floor(y/K)*K and the rest on the next bin.

    Ages are clamped to [0, (num_bins-1)*K]: UTKFace's few ages over 110 land on the last bin.
    """
    y = age.to(torch.float32).clamp(0, k * (num_bins - 1))
    lo = torch.floor(y / k).long().clamp(max=num_bins - 1)
    frac = y / k - lo.to(y.dtype)  # weight of the upper bin
    hi = (lo + 1).clamp(max=num_bins - 1)
    out = torch.zeros(y.shape[0], num_bins, dtype=torch.float32, device=y.device)
    out.scatter_add_(1, lo[:, None], (1 - frac)[:, None])
    out.scatter_add_(1, hi[:, None], frac[:, None])
    return out


def decode(dist: torch.Tensor, k: int = BIN_WIDTH) -> torch.Tensor:
    """(B, num_bins) -> ages (B,): the expectation over the bin centres (exact inverse of ``encode``)."""
    centres = torch.arange(dist.shape[-1], dtype=dist.dtype, device=dist.device) * k
    return dist @ centres


def cascade_loss(
    age_pred: torch.Tensor,
    probs: torch.Tensor,
    age_true: torch.Tensor,
    w1: torch.Tensor | None = None,
    alpha: float = 10.0,
    l1_w1: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """alpha * KL(target || predicted) + L1(age) + lambda * ||W1||_1; returns the loss and its parts."""
    target = encode(age_true)
    log_p = torch.log(probs.clamp_min(1e-8))
    kl = F.kl_div(log_p, target, reduction="batchmean")
    mae = (age_pred - age_true.to(age_pred.dtype)).abs().mean()
    loss = alpha * kl + mae
    reg = torch.zeros((), device=age_pred.device)
    if w1 is not None and l1_w1 > 0:
        reg = l1_w1 * w1.abs().sum()
        loss = loss + reg
    return loss, {"kl": float(kl.detach()), "mae": float(mae.detach()), "l1_w1": float(reg.detach())}
