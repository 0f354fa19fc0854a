from __future__ import annotations

import torch

from c3ae_edge.models.twopoint import BIN_CENTRES, cascade_loss, decode, encode


def test_paper_example_68():
    d = encode(torch.tensor([68.0]))[0]
    assert torch.isclose(d[6], torch.tensor(0.2), atol=1e-6)
    assert torch.isclose(d[7], torch.tensor(0.8), atol=1e-6)
    assert float(d.sum()) == 1.0 and int((d > 0).sum()) == 2


def test_weights_valid_and_roundtrip_over_range():
    y = torch.linspace(0, 110, 1101)
    d = encode(y)
    assert (d >= 0).all()
    assert torch.allclose(d.sum(1), torch.ones_like(y), atol=1e-6)
    nz = d > 0
    assert (nz.sum(1) <= 2).all()
    # the non-zeros are adjacent bins
    first = nz.float().argmax(1)
    last = 11 - nz.flip(1).float().argmax(1)
    assert ((last - first) <= 1).all()
    assert torch.allclose(decode(d), y, atol=1e-4)


def test_exact_bin_ages_are_one_hot():
    d = encode(torch.tensor([0.0, 30.0, 110.0]))
    assert torch.equal(d.argmax(1), torch.tensor([0, 3, 11]))
    assert torch.allclose(d.max(1).values, torch.ones(3))


def test_ages_over_110_clamp_to_last_bin():
    assert torch.allclose(decode(encode(torch.tensor([116.0]))), torch.tensor([110.0]))


def test_loss_parts_and_gradients():
    torch.manual_seed(0)
    logits = torch.randn(4, 12, requires_grad=True)
    w1 = torch.randn(12, 8, requires_grad=True)
    probs = torch.softmax(logits, -1)
    age = probs @ BIN_CENTRES
    y = torch.tensor([5.0, 23.0, 47.5, 90.0])
    loss, parts = cascade_loss(age, probs, y, w1, alpha=10.0, l1_w1=0.01)
    expected_kl = float((encode(y) * (torch.log(encode(y).clamp_min(1e-12)) - torch.log(probs))).sum(1).mean())
    assert abs(parts["kl"] - expected_kl) < 1e-4
    assert abs(parts["mae"] - float((age - y).abs().mean())) < 1e-4
    assert abs(float(loss) - (10 * parts["kl"] + parts["mae"] + 0.01 * float(w1.abs().sum()))) < 1e-3
    loss.backward()
    assert logits.grad.abs().sum() > 0 and w1.grad.abs().sum() > 0


def test_perfect_prediction_has_zero_loss():
    y = torch.tensor([12.0, 68.0])
    probs = encode(y)
    loss, parts = cascade_loss(decode(probs), probs, y)
    assert parts["kl"] < 1e-6 and parts["mae"] < 1e-4
