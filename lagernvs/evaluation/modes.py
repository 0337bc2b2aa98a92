"""Scores of predictions of what the source views never saw, against K known alternatives.

In the synthetic "modes" family (:mod:`lagernvs.data.synthetic.modes`) every surface point
that a scene's source views do not see has K plausible colours, one per alternative, and the
generator renders them all. A regression renderer predicts their blend there; a sampler that
works lands near one alternative per sample and covers several across samples. These
functions measure that, one value per image like :mod:`lagernvs.quality`:

* distance of a pixel to an alternative: mean absolute RGB difference, in [0, 1] (L1, so that a
  pixel halfway between two colours is not favoured over one on either);
* :func:`mode_error`: mean over the scored pixels of the distance to the *nearest* alternative;
* :func:`chosen_alternative`: the alternative whose mean distance over the scored pixels is the
  smallest (one choice per image, as the alternatives are global per scene);
* :func:`mode_coverage`: the fraction of the K alternatives that some sample chose.

Scored pixels are those of a mask (the unseen ones) where the alternatives differ by more than
``MIN_DIFFERENCE`` from each other (elsewhere every alternative is the same, the truth).

Shapes: predictions (..., 3, H, W), alternatives (..., K, 3, H, W) and masks (..., H, W),
broadcast against each other (e.g. samples (S, T, 3, H, W) against alternatives
(T, K, 3, H, W)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "MIN_DIFFERENCE",
    "alternative_distances",
    "alternatives_differ",
    "chosen_alternative",
    "mode_coverage",
    "mode_error",
    "mode_scores",
]

MIN_DIFFERENCE = 0.05


def alternative_distances(pred: Tensor, alternatives: Tensor) -> Tensor:
    """(..., K, H, W): mean absolute RGB difference of each pixel to each alternative."""
    channels = (pred.shape[-3:-2], alternatives.shape[-3:-2])
    if alternatives.dim() < 4 or channels != ((3,), (3,)):
        raise ValueError(
            f"expected pred (..., 3, H, W) and alternatives (..., K, 3, H, W), got "
            f"{tuple(pred.shape)} and {tuple(alternatives.shape)}"
        )
    return (pred.float().unsqueeze(-4) - alternatives.float()).abs().mean(dim=-3)


def alternatives_differ(alternatives: Tensor, min_difference: float = MIN_DIFFERENCE) -> Tensor:
    """(..., H, W) bool: pixels where every two alternatives differ by more than
    `min_difference` (mean absolute RGB difference)."""
    count = alternatives.shape[-4]
    first, second = torch.triu_indices(count, count, offset=1, device=alternatives.device)
    pairs = alternatives[..., first, :, :, :] - alternatives[..., second, :, :, :]
    return pairs.float().abs().mean(dim=-3).amin(dim=-3) > min_difference


def _scored(alternatives: Tensor, mask: Tensor, like: Tensor) -> Tensor:
    """Float weights (..., H, W) of the scored pixels, broadcast to `like` (..., H, W)."""
    scored = mask.to(torch.bool) & alternatives_differ(alternatives)
    return scored.to(like.dtype).expand_as(like)


def mode_error(pred: Tensor, alternatives: Tensor, mask: Tensor) -> Tensor:
    """(...,) mean distance to the nearest alternative over the scored pixels (NaN if none)."""
    nearest = alternative_distances(pred, alternatives).amin(dim=-3)
    weights = _scored(alternatives, mask, nearest)
    total = weights.sum(dim=(-2, -1))
    error = (nearest * weights).sum(dim=(-2, -1)) / total.clamp_min(1.0)
    return error.masked_fill(total == 0, math.nan)


def chosen_alternative(pred: Tensor, alternatives: Tensor, mask: Tensor) -> Tensor:
    """(...,) long: index of the alternative nearest on average over the scored pixels (-1
    where an image has none)."""
    distances = alternative_distances(pred, alternatives)  # (..., K, H, W)
    weights = _scored(alternatives, mask, distances[..., 0, :, :]).unsqueeze(-3)
    mean = (distances * weights).sum(dim=(-2, -1))  # (..., K); the common divisor is left out
    empty = weights.sum(dim=(-3, -2, -1)) == 0
    return mean.argmin(dim=-1).masked_fill(empty, -1)


def mode_coverage(choices: Tensor, num_modes: int) -> Tensor:
    """(...,): fraction of the `num_modes` alternatives chosen by at least one of the S samples
    of `choices` (S, ...) (from :func:`chosen_alternative`; NaN where no sample chose one)."""
    if choices.dim() < 1 or choices.shape[0] < 1:
        raise ValueError(f"choices must be (S, ...) with S >= 1, got {tuple(choices.shape)}")
    modes = torch.arange(num_modes, device=choices.device).view(-1, *[1] * choices.dim())
    chosen = (choices.unsqueeze(0) == modes).any(dim=1)  # (K, ...)
    coverage = chosen.float().mean(dim=0)
    return coverage.masked_fill((choices < 0).all(dim=0), math.nan)


def mode_scores(
    deterministic: Tensor, alternatives: Tensor, unseen: Tensor, samples: Tensor | None = None
) -> dict[str, Tensor]:
    """Per-target scores (T,) of T views: ``mode_error_deterministic`` of the deterministic
    renders (T, 3, H, W) and, with samples (S, T, 3, H, W), ``mode_error_sampled`` (mean over
    the samples) and ``mode_coverage``, against alternatives (T, K, 3, H, W) in the unseen
    pixels (T, H, W)."""
    scores = {"mode_error_deterministic": mode_error(deterministic, alternatives, unseen)}
    if samples is not None:
        scores["mode_error_sampled"] = mode_error(samples, alternatives, unseen).nanmean(dim=0)
        choices = chosen_alternative(samples, alternatives, unseen)
        scores["mode_coverage"] = mode_coverage(choices, alternatives.shape[-4])
    return scores
