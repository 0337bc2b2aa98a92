"""How samples of the diffusion decoder vary: across frames of a video (:func:`flicker`) and
across samples of one view, split by what the source views saw (:func:`spread_by_visibility`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["flicker", "spread_by_visibility"]


def flicker(frames: Tensor) -> Tensor:
    """Mean absolute difference between consecutive frames: (..., F, 3, H, W) -> (...).

    Frames in [0, 1] along a camera path; lower is steadier. Compare ``same_noise`` on and off
    for the same path to report the reduction.
    """
    if frames.dim() < 4 or frames.shape[-4] < 2:
        raise ValueError(
            f"flicker needs frames (..., F, 3, H, W) with F >= 2, got {tuple(frames.shape)}"
        )
    return (frames[..., 1:, :, :, :] - frames[..., :-1, :, :, :]).abs().mean(dim=(-4, -3, -2, -1))


def spread_by_visibility(samples: Tensor, seen: Tensor) -> dict[str, float]:
    """Per-pixel spread across samples, averaged over seen and over unseen pixels.

    Args:
        samples: (K, ..., 3, H, W) K samples of the same views (K >= 2).
        seen: (..., H, W) bool, True where a source view sees the target pixel.

    Returns:
        ``{"spread_seen", "spread_unseen"}``: the standard deviation over the K samples, averaged
        over RGB, then over the pixels of each kind (NaN when there are none).
    """
    if samples.dim() < 4 or samples.shape[0] < 2:
        raise ValueError(
            f"samples must be (K, ..., 3, H, W) with K >= 2, got {tuple(samples.shape)}"
        )
    if tuple(seen.shape) != tuple(samples.shape[1:-3]) + tuple(samples.shape[-2:]):
        raise ValueError(
            f"seen must be (..., H, W) = {tuple(samples.shape[1:-3] + samples.shape[-2:])}, "
            f"got {tuple(seen.shape)}"
        )
    spread = samples.float().std(dim=0).mean(dim=-3)
    seen = seen.to(torch.bool)
    return {
        "spread_seen": float(spread[seen].mean()) if seen.any() else math.nan,
        "spread_unseen": float(spread[~seen].mean()) if (~seen).any() else math.nan,
    }
