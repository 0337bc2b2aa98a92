"""Rendering losses: MSE plus the LVSM / GS-LRM VGG-19 perceptual loss, LPIPS as an option.

The official recipe trains with ``1.0 * MSE + 0.5 * perceptual``; the perceptual term is the
VGG-19 feature L1 loss of :class:`lagernvs.perceptual.VGGPerceptualLoss` (not LPIPS).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lagernvs.perceptual import LPIPSVGG, VGGPerceptualLoss


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
