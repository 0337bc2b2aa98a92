"""Image-quality metrics for novel view synthesis: PSNR, SSIM, LPIPS-VGG, FID/KID.

Conventions (those of the reference evaluation, checked against its metric fixture):

* images are float tensors in [0, 1] shaped (..., C, H, W); every per-image function returns one
  value per image, shaped (...,), so (S, T, 3, H, W) batches of S scenes with T targets work as is;
* PSNR = -10 log10(MSE over all elements of an image), data range 1, no clamping (torchmetrics);
* SSIM = mean over channels and pixels of the SSIM map with an 11x11 Gaussian window (sigma 1.5)
  and zero padding, so border pixels count (see :func:`ssim_map`);
* LPIPS = lpips v0.1 with the VGG-16 trunk, inputs mapped from [0, 1] to [-1, 1];
* scores are averaged over the targets of a scene, then over scenes (:class:`SceneMean`).

Masked variants restrict a metric to pixels where a per-pixel mask is true (seen / unseen
regions): PSNR from the MSE over masked pixels, SSIM and LPIPS as the mean of their spatial maps
over masked pixels. An empty mask gives NaN, which :class:`SceneMean` skips.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lpips
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
from torchmetrics.wrappers.abstract import WrapperMetric

from lagernvs.weights import INCEPTION_FID, VGG16_IMAGENET, load_vgg_features

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _as_float(x: Tensor) -> Tensor:
    """Promote to at least float32 (bf16/fp16 network outputs are scored in float32)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if pred.ndim < 3:
        raise ValueError(f"images must be shaped (..., C, H, W), got {tuple(pred.shape)}")


def _mask_weights(mask: Tensor, like: Tensor) -> Tensor:
    """Broadcast a (..., H, W) or (..., 1|C, H, W) mask to the shape of ``like`` (float)."""
    lead, hw = like.shape[:-3], like.shape[-2:]
    if mask.shape == (*lead, *hw):
        mask = mask.unsqueeze(-3)
    fits = mask.ndim == like.ndim and mask.shape[:-3] == lead and mask.shape[-2:] == hw
    if not fits or mask.shape[-3] not in (1, like.shape[-3]):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not fit images {tuple(like.shape)}; expected "
            f"{(*lead, *hw)} or {(*lead, 1, *hw)}"
        )
    return mask.to(like.dtype).expand_as(like)


def _image_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of (..., C, H, W) values per image, over all elements or over masked pixels."""
    if mask is None:
        return values.mean(dim=(-3, -2, -1))
    weights = _mask_weights(mask, values)
    return (values * weights).sum(dim=(-3, -2, -1)) / weights.sum(dim=(-3, -2, -1))


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image PSNR in dB for data range 1; with a mask, from the MSE over masked pixels."""
    _check_pair(pred, target)
    pred, target = _as_float(pred), _as_float(target)
    if mask is not None:
        return -10.0 * torch.log10(_image_mean((pred - target).square(), mask))
    flat_pred = pred.reshape(-1, *pred.shape[-3:])
    flat_target = target.reshape(-1, *target.shape[-3:])
    values = peak_signal_noise_ratio(
        flat_pred, flat_target, data_range=1.0, dim=(1, 2, 3), reduction="none"
    )
    return values.reshape(pred.shape[:-3])


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """Normalised 2-D Gaussian window (outer product of the normalised 1-D kernel)."""
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-offsets.square() / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return kernel[:, None] * kernel[None, :]


def ssim_map(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel SSIM map, same shape as the inputs.

    Implemented here because torchmetrics' SSIM pads by reflection and crops the borders, which
    differs from the reference (about 0.1 on its fixture). The reference filters each channel with
    an 11x11 Gaussian (sigma 1.5) using zero padding of 5, so border pixels are kept, with
    C1 = 0.01^2 and C2 = 0.03^2 (data range 1). The five local moments are filtered in one
    depthwise convolution over the whole batch.
    """
    _check_pair(pred, target)
    pred, target = _as_float(pred), _as_float(target)
    channels, height, width = pred.shape[-3:]
    x = pred.reshape(-1, channels, height, width)
    y = target.reshape(-1, channels, height, width)
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    window = gaussian_window().to(x)
    window = window.expand(moments.shape[1], 1, SSIM_WINDOW, SSIM_WINDOW)
    filtered = F.conv2d(moments, window, padding=SSIM_WINDOW // 2, groups=moments.shape[1])
    mu_x, mu_y, e_xx, e_yy, e_xy = filtered.chunk(5, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov_xy = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    numerator = (2 * mu_xy + SSIM_C1) * (2 * cov_xy + SSIM_C2)
    denominator = (mu_xx + mu_yy + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (numerator / denominator).reshape(pred.shape)


def ssim(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image SSIM: mean of :func:`ssim_map` over channels and (masked) pixels."""
    return _image_mean(ssim_map(pred, target), mask)


def _lpips_linear_weights() -> Path:
    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    if not path.is_file():
        raise FileNotFoundError(
            f"the lpips package lacks its linear-layer weights {path}; reinstall it "
            "(pip install --force-reinstall lpips)"
        )
    return path


class LPIPSVGG(nn.Module):
    """LPIPS v0.1 with the VGG-16 trunk, per image and optionally restricted to a mask.

    ``pretrained=True`` loads torchvision's ImageNet VGG-16 from the torch hub cache
    (``vgg16-397923af.pth``) and raises FileNotFoundError naming that file when it is missing;
    nothing is ever downloaded. ``pretrained=False`` keeps a random trunk (tests). The linear
    heads always come from the lpips package. The network is frozen and stays in eval mode, but
    gradients flow to the images, so it also serves as a loss.

    The score is the mean of lpips' spatial map (each layer's distance upsampled to the image
    size); its unmasked mean equals lpips' standard spatially averaged value to ~1e-7.
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        trunk = (
            load_vgg_features(VGG16_IMAGENET, "LPIPS-VGG (pretrained=True)") if pretrained else None
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            net = lpips.LPIPS(
                net="vgg", pretrained=False, pnet_rand=True, spatial=True, verbose=False
            )
        if trunk is not None:
            missing = [key for key in net.net.state_dict() if key.split(".", 1)[1] not in trunk]
            if missing:
                raise ValueError(f"VGG-16 checkpoint lacks trunk tensors {missing}")
            net.net.load_state_dict(
                {key: trunk[key.split(".", 1)[1]] for key in net.net.state_dict()}
            )
        linear = torch.load(_lpips_linear_weights(), map_location="cpu", weights_only=True)
        for index, layer in enumerate(net.lins):
            layer.load_state_dict({"model.1.weight": linear[f"lin{index}.model.1.weight"]})
        self.net = net.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPSVGG:
        """Stay in eval mode (lpips' linear heads contain dropout)."""
        return super().train(False)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-image LPIPS of (..., 3, H, W) images in [0, 1]; returns shape (...,)."""
        _check_pair(pred, target)
        if pred.shape[-3] != 3:
            raise ValueError(f"LPIPS needs RGB images (..., 3, H, W), got {tuple(pred.shape)}")
        lead, dtype = pred.shape[:-3], next(self.net.parameters()).dtype
        flat_pred = pred.to(dtype).reshape(-1, *pred.shape[-3:])
        flat_target = target.to(dtype).reshape(-1, *target.shape[-3:])
        distance = self.net(flat_pred, flat_target, normalize=True)
        return _image_mean(distance.reshape(*lead, 1, *pred.shape[-2:]), mask)


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
        _check_pair(pred, target)
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
