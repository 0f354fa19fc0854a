"""Deploy wrappers: the exported graph returns named outputs ("age", "bins") and takes the model's input."""

from __future__ import annotations

import torch
import torch.nn as nn


class DeployModule(nn.Module):
    """Wraps a model for export: cascade models -> (age (B,), bins (B, 12)); peers -> age (B,).

    ``bins_only`` returns the bin distribution alone: a full-integer graph then ends at the softmax and the
    age is decoded in float (age = bins . w2 + b2), which also sidesteps a converter bug on two outputs sharing it.
    ``logits_only`` stops at W1: the host applies softmax and W2 in float (the most accurate full-integer split).
    ``channels_last`` takes images as (..., H, W, C) and permutes inside the graph (TFLite's native layout).
    ``aten_softmax`` spells the head's softmax as ``aten._softmax.default``: the op litert-torch's PT2E
    quantiser recognises for fixed softmax qparams (``torch.softmax`` exports as ``aten.softmax.int``).
    """

    def __init__(
        self,
        model: nn.Module,
        channels_last: bool = False,
        aten_softmax: bool = False,
        bins_only: bool = False,
        logits_only: bool = False,
    ):
        super().__init__()
        self.bins_only, self.logits_only = bins_only, logits_only
        self.model = model.eval()
        self.cascade = bool(getattr(model, "cascade", False))
        self.channels_last = channels_last
        self.aten_softmax = aten_softmax
        self.train(False)  # a new wrapper starts in training mode: exporters warn (and torch.export records the flag)

    def _dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        if hasattr(m, "crops"):  # C3AEFull: fold the crops into the batch
            b = x.shape[0]
            f = m.pool(m.trunk(x.reshape(b * m.crops, 3, 64, 64))).reshape(b, -1)
        else:
            f = torch.flatten(m.trunk(x), 1)
        logits = m.head.w1(f)
        if self.logits_only:
            return logits, logits
        if not self.aten_softmax:
            probs = torch.softmax(logits, dim=-1)
            return m.head.w2(probs).squeeze(-1), probs
        probs = torch.ops.aten._softmax.default(logits, -1, False)
        return m.head.w2(probs).squeeze(-1), probs

    def forward(self, x: torch.Tensor):
        if self.channels_last:
            x = x.movedim(-1, -3)
        if not self.cascade:
            return self.model(x)
        if self.logits_only:
            return self._dist(x)[1]
        age, bins = self._dist(x) if self.aten_softmax else self.model.forward_dist(x)
        return bins if self.bins_only else (age, bins)


def input_shape(model: nn.Module, batch: int = 1, channels_last: bool = False) -> tuple[int, ...]:
    """(B, 3, 64, 64) or (B, 3 crops, 3, 64, 64); channels last moves C to the end."""
    shape = tuple(model.cfg.input_shape)
    if channels_last:
        shape = shape[:-3] + shape[-2:] + shape[-3:-2]
    return (batch, *shape)
