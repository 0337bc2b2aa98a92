"""The K samples of each target view: their layout, seeds, diversity and unseen crops.

Helpers of the extrapolation benchmark (:mod:`lagernvs.evaluation.extrapolation`): samples are
(T, K, 3, H, W) per evaluation sample, images in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "pairwise_lpips",
    "sample_generator",
    "sample_spread",
    "samples_by_target",
    "unseen_crops",
]


def sample_generator(seed: int, position: int) -> torch.Generator:
    """CPU generator of one sample, derived from (seed, sample position): reproducible on any
    number of processes and across resumed runs."""
    state = np.random.SeedSequence([seed, position]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def samples_by_target(images: Tensor, num_targets: int, num_samples: int) -> Tensor:
    """Sampled-mode output -> (T, K, 3, H, W).

    Accepts (T, K, 3, H, W), or (T * K, 3, H, W) with each target's K samples consecutive
    (the diffusers ``num_images_per_prompt`` layout, targets playing the prompts).
    """
    if images.dim() == 5 and images.shape[:2] == (num_targets, num_samples):
        return images
    if images.dim() == 4 and images.shape[0] == num_targets * num_samples:
        return images.unflatten(0, (num_targets, num_samples))
    raise ValueError(
        f"sampled mode returned images of shape {tuple(images.shape)}; expected "
        f"({num_targets} targets x {num_samples} samples, 3, H, W) or "
        f"({num_targets * num_samples}, 3, H, W)"
    )


def pairwise_lpips(lpips_net: torch.nn.Module, samples: Tensor) -> Tensor:
    """(T,) mean LPIPS over all pairs of the K samples (T, K, 3, H, W) of each target."""
    num_samples = samples.shape[1]
    if num_samples < 2:
        return samples.new_full((samples.shape[0],), math.nan)
    first, second = torch.triu_indices(num_samples, num_samples, offset=1, device=samples.device)
    with torch.inference_mode():
        return lpips_net(samples[:, first], samples[:, second]).mean(dim=1)


def sample_spread(samples: Tensor, mask: Tensor | None = None) -> Tensor:
    """(T,) per-pixel standard deviation across the K samples, averaged over channels and
    (masked, (T, H, W)) pixels; NaN where a mask is empty."""
    spread = samples.float().std(dim=1, correction=0).mean(dim=1)  # (T, H, W)
    if mask is None:
        return spread.mean(dim=(-2, -1))
    weights = mask.to(spread)
    return (spread * weights).sum(dim=(-2, -1)) / weights.sum(dim=(-2, -1))


def unseen_crops(
    views: Tensor, truth: Tensor, unseen: Tensor, min_fraction: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Half-size windows of views and truth (T, 3, H, W) around unseen pixels (T, H, W).

    Per target, the window with the most unseen pixels, kept when at least ``min_fraction`` of
    it is unseen: (N, 3, H/2, W/2) crops of the views and of the truth, N <= T.
    """
    height, width = views.shape[-2] // 2, views.shape[-1] // 2
    fraction = torch.nn.functional.avg_pool2d(unseen.float()[:, None], (height, width), stride=1)
    best, where = fraction.flatten(1).max(dim=1)
    columns = fraction.shape[-1]
    boxes = [
        (t, *divmod(int(where[t]), columns))
        for t in range(len(views))
        if float(best[t]) >= min_fraction
    ]

    def crop(images: Tensor) -> Tensor:
        if not boxes:
            return images.new_zeros(0, images.shape[-3], height, width)
        return torch.stack([images[t, :, r : r + height, c : c + width] for t, r, c in boxes])

    return crop(views), crop(truth)
