"""The model family: registry, exact Table 1 numbers, declared metadata recomputed, shapes and gradients."""

from __future__ import annotations

import pytest
import torch

from c3ae_edge.errors import UsageError
from c3ae_edge.models import create_model, get_model_cfg, list_models
from c3ae_edge.models.profile import count_params, profile_model

TABLE3 = [
    "c3ae_plain",
    "ssr_net",
    "mobilenet_v2_050_6",
    "mobilenet_v2_075_6",
    "shufflenet_v2_050_1",
    "shufflenet_v2_075_1",
]


def test_registry_has_paper_models():
    names = list_models()
    for n in TABLE3 + ["c3ae_full", "c3ae_plain_se"]:
        assert n in names
    assert list_models("c3ae_*") == ["c3ae_full", "c3ae_plain", "c3ae_plain_se"]


def test_unknown_model_is_a_user_error():
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        create_model("nope")


@pytest.mark.parametrize("name", list_models())
def test_declared_metadata_matches_module(name):
    """torchvision-style: the declared numbers are recomputed from the module itself."""
    model = create_model(name)
    prof = profile_model(model)
    cfg = get_model_cfg(name)
    assert (prof.params, prof.trainable_params, prof.macc, prof.conv_macc, prof.fp32_bytes) == (
        cfg.params,
        cfg.trainable_params,
        cfg.macc,
        cfg.conv_macc,
        cfg.fp32_bytes,
    )
    assert prof.trainable_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_forward_shapes_and_gradients(name):
    model = create_model(name)
    x = torch.randn(2, *get_model_cfg(name).input_shape)
    age = model(x)
    assert age.shape == (2,) and torch.isfinite(age).all()
    age.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_c3ae_plain_is_table1_exactly():
    prof = profile_model(create_model("c3ae_plain"))
    assert prof.params == 36_377
    assert prof.conv_macc == 12_562_816
    convs = [lc for lc in prof.layers if lc.kind == "Conv2d"]
    assert [lc.macc for lc in convs] == [3_321_216, 7_750_656, 1_327_104, 147_456, 16_384]
    assert [lc.params for lc in convs] == [896, 9_248, 9_248, 9_248, 1_056]
    assert [lc.output_shape for lc in convs] == [(32, 62, 62), (32, 29, 29), (32, 12, 12), (32, 4, 4), (32, 4, 4)]
    bns = [lc for lc in prof.layers if lc.kind == "BatchNorm2d"]
    assert [lc.params for lc in bns] == [128] * 4
    linears = [lc for lc in prof.layers if lc.kind == "Linear"]
    assert [lc.params for lc in linears] == [6_156, 13]
    assert [lc.output_shape for lc in linears] == [(12,), (1,)]


def test_c3ae_full_param_budget_and_shared_trunk():
    model = create_model("c3ae_full")
    params, _ = count_params(model)
    assert abs(params - 39_700) / 39_700 <= 0.03
    # one trunk: the three crops share every conv weight, so the trunk counts once
    assert sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d)) == 5
    assert profile_model(model).conv_macc == 3 * 12_562_816
    # crops folded into the batch == the shared trunk run on each crop separately, features concatenated
    model.eval()
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        feats = torch.cat([torch.flatten(model.pool(model.trunk(x[:, k])), 1) for k in range(3)], 1)
        age_ref, probs_ref = model.head(feats)
        age, probs = model.forward_dist(x)
    assert torch.allclose(age, age_ref, atol=1e-5) and torch.allclose(probs, probs_ref, atol=1e-6)
    assert model.head.w1.in_features == 3 * 128


def test_se_blocks_cost_the_paper_amount():
    plain, _ = count_params(create_model("c3ae_plain"))
    se, _ = count_params(create_model("c3ae_plain_se"))
    assert se - plain == 4 * (32 * 16 * 2 + 16 + 32)


def test_ssr_net_matches_keras_count():
    assert profile_model(create_model("ssr_net")).params == 40_915


@pytest.mark.parametrize("name", ["shufflenet_v2_050_1", "shufflenet_v2_075_1"])
def test_shufflenet_close_to_table2(name):
    cfg = get_model_cfg(name)
    assert abs(profile_model(create_model(name)).params - cfg.paper.params) / cfg.paper.params < 0.02


def test_cascade_models_expose_distribution():
    model = create_model("c3ae_full").eval()
    age, probs = model.forward_dist(torch.randn(3, 3, 3, 64, 64))
    assert probs.shape == (3, 12)
    assert torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(age, probs @ model.head.w2.weight.view(-1) + model.head.w2.bias)


def _face_batch(spec) -> torch.Tensor:
    """Four real faces (embedded UTKFace chips) through the model's crop spec."""
    import numpy as np
    from PIL import Image

    from c3ae_edge import shipped
    from c3ae_edge.data.crops import aligned_box

    chips = sorted((shipped.folder("calibration") / "images").iterdir())[:4]
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in chips]
    return torch.from_numpy(np.stack([spec.model_input(im, aligned_box(im.shape[1], im.shape[0])) for im in imgs]))


def test_two_models_ship_weights():
    from c3ae_edge.models import shipped_models

    assert shipped_models() == ["c3ae_full", "c3ae_plain"]  # the parametrised test below covers both paths


@pytest.mark.parametrize("name", list_models())
def test_create_model_pretrained_timm_style(name):
    """``create_model(name, pretrained=True)`` loads the shipped weights in eval mode (the same ages as the CLI's
    loader on real faces); a model without shipped weights is one UsageError naming it and what ships."""
    from c3ae_edge.models import shipped_models
    from c3ae_edge.weights import load_model, shipped_path

    if name not in shipped_models():
        with pytest.raises(UsageError) as e:
            create_model(name, pretrained=True)
        msg = str(e.value)
        assert "\n" not in msg and f"no pretrained weights ship for {name!r}" in msg, msg
        assert "shipped: c3ae_full, c3ae_plain" in msg
        return
    model = create_model(name, pretrained=True)
    assert not model.training and model.cfg.name == name
    saved = torch.load(shipped_path(name), map_location="cpu", weights_only=True)["state_dict"]
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(create_model(name).state_dict()[next(iter(saved))], next(iter(saved.values())))
    ref, spec, _ = load_model(None, name)
    x = _face_batch(spec)
    with torch.no_grad():
        ages, want = model(x), ref(x)
    assert torch.equal(ages, want) and bool(((ages > 1) & (ages < 100)).all()), ages
