"""Rendering losses: MSE plus the LVSM / GS-LRM VGG-19 perceptual loss, LPIPS as an option.

The official recipe trains with ``1.0 * MSE + 0.5 * perceptual``. The perceptual term is not
LPIPS but the feature L1 loss of LVSM / GS-LRM (from Cascaded Refinement Networks):

* images in [0, 1] are mapped Caffe-style, ``x * 255 - mean`` with the ImageNet mean in 0-255
  units ``(123.68, 116.779, 103.939)`` (RGB), then fed to VGG-19 with max pooling replaced by
  average pooling, as the recipe does;
* the loss is the mean absolute difference of the mapped inputs (divisor 1.0) plus those of the
  ReLU outputs after conv1_2, conv2_2, conv3_2, conv4_2 and conv5_2, divided by 2.6, 4.8, 3.7,
  5.6 and 0.15 (published as ``* 10 / 1.5``) so the six terms have similar magnitudes; the sum
  is divided by 255, which makes the input term the L1 distance in [0, 1] units.

Assumption: the recipe's weights are the MatConvNet ``imagenet-vgg-verydeep-19.mat``, trained on
Caffe-style inputs. We use torchvision's ImageNet VGG-19 (``vgg19-dcbb9e9d.pth`` in the torch hub
cache), trained on ``(x - mean) / std`` inputs, and keep the recipe's Caffe-style mapping and
divisors. As the trunk is ReLU convolutions, that input is ~255 * std (about 58) times the
torchvision-normalised one, so features mostly change scale (biases weigh less); the divisors'
balance was set for the MatConvNet weights and cannot be re-measured here without them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lagernvs.evaluation.metrics import LPIPSVGG
from lagernvs.weights import VGG19_IMAGENET, load_vgg_features

CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
INPUT_DIVISOR = 1.0
# (name, end index in torchvision's vgg19().features, divisor)
PERCEPTUAL_LAYERS: tuple[tuple[str, int, float], ...] = (
    ("relu1_2", 4, 2.6),
    ("relu2_2", 9, 4.8),
    ("relu3_2", 14, 3.7),
    ("relu4_2", 23, 5.6),
    ("relu5_2", 32, 1.5 / 10),
)
_VGG19_PLAN = (64, 64, "pool", 128, 128, "pool", 256, 256, 256, 256, "pool")
_VGG19_PLAN += (512, 512, 512, 512, "pool", 512, 512)


def vgg19_trunk() -> nn.Sequential:
    """VGG-19 layers up to relu5_2, indexed like torchvision's ``vgg19().features``.

    Pooling is average pooling (the recipe's choice); it has no weights, so torchvision's
    checkpoint loads unchanged.
    """
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG19_PLAN:
        if item == "pool":
            layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*layers)


class VGGPerceptualLoss(nn.Module):
    """The LVSM / GS-LRM VGG-19 feature L1 loss (see the module docstring), a scalar.

    Weights come from ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``; a missing file raises
    FileNotFoundError naming it, unless ``random_features=True`` (randomly initialised trunk, for
    tests). The trunk is frozen and stays in eval mode; gradients flow to the prediction only.
    """

    def __init__(self, random_features: bool = False) -> None:
        super().__init__()
        trunk = vgg19_trunk()
        if not random_features:
            state = load_vgg_features(
                VGG19_IMAGENET,
                "The VGG-19 perceptual loss (perceptual_weight > 0)",
                hint="Without it set perceptual_weight=0, or random_features=True (tests only).",
            )
            wanted = trunk.state_dict().keys()
            missing = sorted(set(wanted) - set(state))
            if missing:
                raise ValueError(f"VGG-19 checkpoint lacks trunk tensors {missing}")
            trunk.load_state_dict({key: state[key] for key in wanted})
        bounds = [0] + [end for _, end, _ in PERCEPTUAL_LAYERS]
        self.blocks = nn.ModuleList(
            trunk[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)
        )
        self.divisors = tuple(divisor for _, _, divisor in PERCEPTUAL_LAYERS)
        self.register_buffer(
            "mean", torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1), persistent=False
        )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        """Stay in eval mode whatever the surrounding model does."""
        return super().train(False)

    def _features(self, images: Tensor) -> list[Tensor]:
        features = [images * 255.0 - self.mean]
        for block in self.blocks:
            features.append(block(features[-1]))
        return features

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Loss between (N, 3, H, W) images in [0, 1]; H and W must be at least 16."""
        if min(pred.shape[-2:]) < 16:
            raise ValueError(
                f"the VGG perceptual loss pools 4 times, so images need at least 16 pixels per "
                f"side; got {tuple(pred.shape[-2:])} (set perceptual_weight=0 for tiny images)"
            )
        with torch.no_grad():
            target_features = self._features(target)
        total = pred.new_zeros(())
        divisors = (INPUT_DIVISOR, *self.divisors)
        for divisor, p, t in zip(divisors, self._features(pred), target_features, strict=True):
            total = total + (p - t).abs().mean() / divisor
        return total / 255.0


@dataclass(frozen=True)
class LossConfig:
    """Loss weights; the defaults are the official recipe's (MSE 1.0, perceptual 0.5)."""

    mse_weight: float = 1.0
    perceptual_weight: float = 0.5
    lpips_weight: float = 0.0
    random_features: bool = False

    def __post_init__(self) -> None:
        for name in ("mse_weight", "perceptual_weight", "lpips_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"loss.{name} must be a non-negative number, got {value!r}")
        if self.mse_weight + self.perceptual_weight + self.lpips_weight == 0:
            raise ValueError("all loss weights are 0; set loss.mse_weight > 0 or another weight")
        if not isinstance(self.random_features, bool):
            raise ValueError(f"loss.random_features must be a bool, got {self.random_features!r}")


def _flatten_views(images: Tensor, name: str) -> Tensor:
    if images.ndim == 5:
        images = images.flatten(0, 1)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"{name} must be (B, T, 3, H, W) or (N, 3, H, W), got {tuple(images.shape)}"
        )
    return images


class RenderLoss(nn.Module):
    """Weighted sum of MSE, the VGG-19 perceptual loss and (optionally) LPIPS-VGG.

    Built from a :class:`LossConfig` and/or its fields as keyword overrides. Only terms with a
    positive weight are built and returned: ``forward`` gives ``{"total", "mse"[, "perceptual"]
    [, "lpips"]}``, each a scalar averaged over all images. Missing pretrained weights for a
    needed network raise FileNotFoundError here, at construction, unless ``random_features``.
    """

    def __init__(self, config: LossConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        known = {field.name for field in fields(LossConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown loss option(s) {unknown}; valid: {sorted(known)}")
        self.config = replace(config or LossConfig(), **overrides)
        self.perceptual = (
            VGGPerceptualLoss(self.config.random_features)
            if self.config.perceptual_weight > 0
            else None
        )
        self.lpips = (
            LPIPSVGG(pretrained=not self.config.random_features)
            if self.config.lpips_weight > 0
            else None
        )

    def forward(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        if pred.shape != target.shape:
            raise ValueError(
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
            )
        pred, target = _flatten_views(pred, "pred"), _flatten_views(target, "target")
        terms = {"mse": F.mse_loss(pred, target)}
        weights = {"mse": self.config.mse_weight}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(pred, target)
            weights["perceptual"] = self.config.perceptual_weight
        if self.lpips is not None:
            terms["lpips"] = self.lpips(pred, target).mean()
            weights["lpips"] = self.config.lpips_weight
        total = sum(weights[name] * value for name, value in terms.items())
        return {"total": total, **terms}
