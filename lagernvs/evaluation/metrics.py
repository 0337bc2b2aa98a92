"""Novel-view metrics: per-scene aggregation of PSNR / SSIM / LPIPS-VGG, and FID / KID.

The per-image measures live below (:mod:`lagernvs.quality` for the reference PSNR and SSIM,
:mod:`lagernvs.perceptual` for LPIPS-VGG); this module aggregates them the way the papers do:
scores are averaged over the targets of a scene, then over scenes (:class:`SceneMean`). Masked
scores (seen / unseen regions) give NaN for an empty mask, which :class:`SceneMean` skips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
from torchmetrics.wrappers.abstract import WrapperMetric

from lagernvs.perceptual import INCEPTION_FID, LPIPSVGG
from lagernvs.quality import check_pair, psnr, ssim

__all__ = [
    "LPIPSVGG",
    "NovelViewMetrics",
    "SceneMean",
    "build_fid",
    "build_kid",
    "image_metrics",
    "psnr",
    "ssim",
]


def image_metrics(
    pred: Tensor,
    target: Tensor,
    lpips_net: LPIPSVGG | None = None,
    mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-image PSNR, SSIM and (when a network is given) LPIPS, each shaped (...,)."""
    scores = {"psnr": psnr(pred, target, mask), "ssim": ssim(pred, target, mask)}
    if lpips_net is not None:
        scores["lpips"] = lpips_net(pred, target, mask)
    return scores


class SceneMean(Metric):
    """Mean over the targets of each scene, then over scenes (how the papers aggregate).

    ``update`` takes per-target values shaped (T,) for one scene or (S, T) for S scenes. NaN
    targets (empty masks) are left out of their scene's mean; a scene whose targets are all NaN is
    left out of the average.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    scene_sum: Tensor
    num_scenes: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scene_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_scenes", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, values: Tensor) -> None:
        if values.ndim == 1:
            values = values.unsqueeze(0)
        if values.ndim != 2:
            raise ValueError(
                f"SceneMean.update expects (T,) or (S, T) per-target values, got "
                f"{tuple(values.shape)}"
            )
        scene_means = values.detach().to(torch.float64).nanmean(dim=1)
        valid = ~scene_means.isnan()
        self.scene_sum += scene_means[valid].sum()
        self.num_scenes += valid.sum()

    def compute(self) -> Tensor:
        return self.scene_sum / self.num_scenes


class NovelViewMetrics(WrapperMetric):
    """PSNR / SSIM / LPIPS of rendered target views, aggregated per scene then over scenes.

    ``update(pred, target, mask=None)`` takes (S, T, 3, H, W) batches, one row per scene (or
    (T, 3, H, W) for one scene); ``compute()`` returns ``{"psnr", "ssim"[, "lpips"]}``. Calling
    the metric updates it and returns the batch's per-image scores (for per-scene tables). For
    seen / unseen regions use one instance per mask, sharing the LPIPS network.
    """

    def __init__(self, lpips_net: LPIPSVGG | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lpips_net = lpips_net
        names = ["psnr", "ssim"] + (["lpips"] if lpips_net is not None else [])
        self.scene_means = nn.ModuleDict({name: SceneMean(**kwargs) for name in names})

    def _scores(self, pred: Tensor, target: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        check_pair(pred, target)
        if pred.ndim == 4:
            pred, target = pred.unsqueeze(0), target.unsqueeze(0)
            mask = None if mask is None else mask.unsqueeze(0)
        if pred.ndim != 5:
            raise ValueError(f"expected (S, T, 3, H, W) images, got {tuple(pred.shape)}")
        with torch.no_grad():
            return image_metrics(pred, target, self.lpips_net, mask)

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        for name, values in self._scores(pred, target, mask).items():
            self.scene_means[name].update(values)

    def forward(
        self, pred: Tensor, target: Tensor, mask: Tensor | None = None
    ) -> dict[str, Tensor]:
        scores = self._scores(pred, target, mask)
        for name, values in scores.items():
            self.scene_means[name].update(values)
        return scores

    def compute(self) -> dict[str, Tensor]:
        return {name: metric.compute() for name, metric in self.scene_means.items()}

    def reset(self) -> None:
        super().reset()
        for metric in self.scene_means.values():
            metric.reset()


def _inception_weights(feature: int, metric: str) -> Path:
    """Check what torchmetrics' Inception extractor needs, before it could try a download."""
    path = INCEPTION_FID.require(f"{metric} with Inception features (feature={feature})")
    if not _TORCH_FIDELITY_AVAILABLE:
        raise ModuleNotFoundError(
            f"{metric} with the Inception feature extractor needs the torch-fidelity package "
            "(pip install torch-fidelity), which is not installed; alternatively pass a feature "
            "extractor module as `feature`"
        )
    return path


def build_fid(feature: int | nn.Module = 2048, **kwargs: Any) -> FrechetInceptionDistance:
    """torchmetrics FID on images in [0, 1] (``normalize=True``).

    An int ``feature`` selects the standard Inception-v3 layer, which needs torch-fidelity and the
    weight file ``weights-inception-2015-12-05-6726825d.pth`` in the torch hub cache (checked
    first, with an error naming the file); a module is used as the feature extractor as is.
    """
    if isinstance(feature, nn.Module):
        return FrechetInceptionDistance(feature=feature, normalize=True, **kwargs)
    path = _inception_weights(feature, "FID")
    return FrechetInceptionDistance(
        feature=feature, normalize=True, feature_extractor_weights_path=str(path), **kwargs
    )


def build_kid(feature: int | nn.Module = 2048, **kwargs: Any) -> KernelInceptionDistance:
    """torchmetrics KID on images in [0, 1]; same feature rules as :func:`build_fid`.

    torch-fidelity reads the Inception weights from the torch hub cache, where they are checked.
    """
    if not isinstance(feature, nn.Module):
        _inception_weights(feature, "KID")
    return KernelInceptionDistance(feature=feature, normalize=True, **kwargs)
