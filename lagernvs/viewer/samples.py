"""Samples of the diffusion decoder at one view, and their per-pixel spread as a heat overlay.

"Sample this view" draws K images of the same camera. Where the sources saw the scene the samples
agree; where nothing was seen each sample invents its own content, so the standard deviation
across samples (averaged over RGB, the quantity :func:`lagernvs.diffusion.spread_by_visibility`
reports) is a map of what the model is unsure about. The viewer shows one sample at a time and
can blend that map over it as a heat overlay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lagernvs.viewer.frames import ViewPose

__all__ = ["SPREAD_FULL_SCALE", "SampleSet", "heat_colors", "spread_map"]

SPREAD_FULL_SCALE = 0.1
"""Per-pixel standard deviation shown at full heat (fixed, so maps are comparable)."""


def spread_map(samples: np.ndarray) -> np.ndarray:
    """(H, W) standard deviation over K samples (K, H, W, 3), averaged over RGB; zero for K = 1."""
    if samples.shape[0] < 2:
        return np.zeros(samples.shape[1:3], dtype=np.float32)
    return samples.std(axis=0, ddof=1).mean(axis=-1).astype(np.float32)


def heat_colors(values: np.ndarray) -> np.ndarray:
    """(..., 3) black -> red -> yellow colours of ``values`` in [0, 1] (clipped)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    ramps = np.clip(2.0 * v - np.array([0.0, 1.0, 2.0]), 0.0, 1.0)
    return ramps.astype(np.float32)


@dataclass(frozen=True)
class SampleSet:
    """K samples (K, H, W, 3) float in [0, 1] of the view ``pose``, with their spread (H, W)."""

    images: np.ndarray
    spread: np.ndarray
    pose: ViewPose

    @classmethod
    def from_samples(cls, images: np.ndarray, pose: ViewPose) -> SampleSet:
        images = np.asarray(images, dtype=np.float32)
        return cls(images=images, spread=spread_map(images), pose=pose)

    def __len__(self) -> int:
        return self.images.shape[0]

    def spread_image(self) -> np.ndarray:
        """(H, W, 3) the spread map in heat colours."""
        return heat_colors(self.spread / SPREAD_FULL_SCALE)

    def frame(self, index: int, overlay: bool) -> np.ndarray:
        """(H, W, 3) sample ``index`` (wrapped to the range), with the spread blended over it
        (opacity = the spread relative to :data:`SPREAD_FULL_SCALE`) when ``overlay``."""
        image = self.images[index % len(self)]
        if not overlay:
            return image
        alpha = np.clip(self.spread / SPREAD_FULL_SCALE, 0.0, 1.0)[..., None]
        alpha = 0.25 + 0.75 * alpha  # a faint tint even where the samples agree
        return (1.0 - alpha) * image + alpha * self.spread_image()
