"""Training losses: MSE + VGG-19 perceptual loss (LVSM recipe), LPIPS option, weight handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lagernvs.perceptual import CAFFE_MEAN_RGB, VGGPerceptualLoss, vgg19_trunk
from lagernvs.training.losses import LossConfig, RenderLoss


@pytest.fixture(scope="module")
def loss() -> RenderLoss:
    torch.manual_seed(0)
    return RenderLoss(random_features=True)


def _pair(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.rand(*shape)
    return (target + 0.2 * torch.randn(*shape)).clamp(0, 1), target


def test_identical_images_give_zero(loss: RenderLoss) -> None:
    _, target = _pair(1, 2, 3, 16, 16)
    terms = loss(target, target.clone())
    assert set(terms) == {"total", "mse", "perceptual"}
    assert all(value.item() == 0.0 for value in terms.values())


def test_total_is_weighted_sum_and_views_flatten(loss: RenderLoss) -> None:
    pred, target = _pair(2, 2, 3, 16, 16)
    terms = loss(pred, target)
    assert terms["mse"] > 0 and terms["perceptual"] > 0
    expected = 1.0 * terms["mse"] + 0.5 * terms["perceptual"]
    assert torch.allclose(terms["total"], expected)
    flat = loss(pred.flatten(0, 1), target.flatten(0, 1))
    assert torch.allclose(flat["total"], terms["total"], atol=1e-6)


def test_gradient_reaches_prediction_only(loss: RenderLoss) -> None:
    pred, target = _pair(2, 3, 16, 16)
    pred.requires_grad_(True)
    loss.train()
    loss(pred, target)["total"].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert loss.perceptual is not None and not loss.perceptual.training
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())


def test_perceptual_input_term_is_l1_in_unit_range() -> None:
    """With a zeroed trunk only the mapped-input term is left: L1 of x*255 - mean, over 255."""
    perceptual = VGGPerceptualLoss(random_features=True)
    for param in perceptual.parameters():
        param.data.zero_()
    pred, target = _pair(2, 3, 16, 16)
    value = perceptual(pred, target)
    assert value.item() == pytest.approx((pred - target).abs().mean().item(), rel=1e-5)
    mean_colour = torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1).expand(1, 3, 16, 16) / 255
    assert perceptual._features(mean_colour)[0].abs().max() < 1e-4


def test_vgg19_weights_load_from_hub_cache(empty_torch_home: Path) -> None:
    trunk = vgg19_trunk()
    state = {f"features.{key}": value for key, value in trunk.state_dict().items()}
    state["classifier.0.bias"] = torch.zeros(3)  # real files also hold the classifier
    empty_torch_home.mkdir(parents=True)
    torch.save(state, empty_torch_home / "vgg19-dcbb9e9d.pth")
    perceptual = VGGPerceptualLoss()
    loaded = perceptual.blocks.state_dict()
    # keys are <block>.<layer>.<param>, where <layer> keeps torchvision's features index
    for key, value in loaded.items():
        assert torch.equal(value, state[f"features.{key.split('.', 1)[1]}"])
    assert len(loaded) == len(state) - 1


def test_missing_vgg19_weights_fail_at_construction(empty_torch_home: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(empty_torch_home / "vgg19-dcbb9e9d.pth")):
        RenderLoss()
    mse_only = RenderLoss(perceptual_weight=0.0)  # no VGG needed, so no weights needed
    pred, target = _pair(2, 3, 8, 8)
    terms = mse_only(pred, target)
    assert set(terms) == {"total", "mse"}
    assert torch.allclose(terms["total"], ((pred - target) ** 2).mean())


def test_lpips_option_random_features() -> None:
    lpips_loss = RenderLoss(
        LossConfig(perceptual_weight=0.0, lpips_weight=0.3, random_features=True)
    )
    pred, target = _pair(2, 3, 16, 16)
    pred.requires_grad_(True)
    terms = lpips_loss(pred, target)
    assert set(terms) == {"total", "mse", "lpips"}
    assert torch.allclose(terms["total"], terms["mse"] + 0.3 * terms["lpips"])
    terms["total"].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert lpips_loss(target, target.clone())["lpips"].item() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"perceptual_weight": -1.0}, "perceptual_weight"),
        ({"mse_weight": float("nan")}, "mse_weight"),
        ({"lpips_weight": "1"}, "lpips_weight"),
        ({"mse_weight": 0.0, "perceptual_weight": 0.0}, "all loss weights are 0"),
        ({"random_features": 1}, "random_features"),
        ({"perceptual": 0.5}, "unknown loss option"),
    ],
)
def test_bad_config_names_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenderLoss(**kwargs)


def test_bad_shapes(loss: RenderLoss) -> None:
    pred, target = _pair(2, 3, 8, 8)
    with pytest.raises(ValueError, match="differ in shape"):
        loss(pred, target[:1])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        loss(pred[:, :1], target[:, :1])
    with pytest.raises(ValueError, match="at least 16"):
        loss(pred, target)
