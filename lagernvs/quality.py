"""Per-image quality measures: PSNR and SSIM exactly as the reference evaluation computes them.

Shared by training validation, evaluation and the demo. Images are float tensors in [0, 1]
shaped (..., C, H, W); every function returns one value per image, shaped (...,).

* PSNR = -10 log10(MSE over all elements of an image), data range 1, no clamping (torchmetrics);
* SSIM = mean over channels and pixels of the SSIM map with an 11x11 Gaussian window (sigma 1.5)
  and zero padding, so border pixels count (see :func:`ssim_map`).

Masked variants restrict a measure to pixels where a per-pixel mask is true (seen / unseen
regions): PSNR from the MSE over masked pixels, SSIM as the mean of its map over masked pixels.
An empty mask gives NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

__all__ = ["check_pair", "gaussian_window", "image_mean", "psnr", "ssim", "ssim_map"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _as_float(x: Tensor) -> Tensor:
    """Promote to at least float32 (bf16/fp16 network outputs are scored in float32)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def check_pair(pred: Tensor, target: Tensor) -> None:
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


def image_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of (..., C, H, W) values per image, over all elements or over masked pixels."""
    if mask is None:
        return values.mean(dim=(-3, -2, -1))
    weights = _mask_weights(mask, values)
    return (values * weights).sum(dim=(-3, -2, -1)) / weights.sum(dim=(-3, -2, -1))


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image PSNR in dB for data range 1; with a mask, from the MSE over masked pixels."""
    check_pair(pred, target)
    pred, target = _as_float(pred), _as_float(target)
    if mask is not None:
        return -10.0 * torch.log10(image_mean((pred - target).square(), mask))
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
    check_pair(pred, target)
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
    return image_mean(ssim_map(pred, target), mask)
