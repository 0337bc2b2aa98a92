"""The scene every client renders: a pipeline and one encoded scene, shared by all sessions.

The encoder runs once, in :meth:`SceneEngine.encode`; every frame after that is
``pipe.render(encoded, cameras)``, the renderer alone. Deterministic renders of different clients
may run at the same time (they only read the model and the encoded scene). Sampled renders go
through one lock, because the diffusion decoder and its scheduler keep per-call state.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from lagernvs.cameras import Cameras

__all__ = ["SceneEngine"]


class SceneEngine:
    """Renders views of one encoded scene (see the module docstring).

    Args:
        pipe: a :class:`~lagernvs.pipeline.LagerNVSPipeline`.
        encoded: ``pipe.encode(images, cameras)``.
        label: a name for the scene (shown in the page).
    """

    def __init__(self, pipe: Any, encoded: Any, label: str) -> None:
        self.pipe = pipe
        self.encoded = encoded
        self.label = label
        self._sample_lock = threading.Lock()

    @classmethod
    def encode(cls, pipe: Any, images: Any, cameras: Cameras | None, label: str) -> SceneEngine:
        """Encode the source views once (``cameras`` None: unposed input)."""
        return cls(pipe, pipe.encode(images, cameras), label)

    @property
    def patch_size(self) -> int:
        """Rendered sizes are multiples of this."""
        return int(self.pipe.model.config.patch_size)

    @property
    def native_size(self) -> tuple[int, int]:
        """(H, W) the model was trained at."""
        height, width = self.pipe.model.image_size
        return int(height), int(width)

    @property
    def can_sample(self) -> bool:
        """Whether the pipeline holds a diffusion decoder (``mode="sampled"``)."""
        return self.pipe.denoiser is not None and self.pipe.scheduler is not None

    @property
    def posed(self) -> bool:
        return bool(self.encoded.posed)

    def source_cameras(self) -> Cameras:
        """The source cameras in the scene frame. Unposed input only knows the first camera:
        the identity, with the focal length the pipeline assumes (the image width)."""
        if self.encoded.source_cameras is not None:
            return self.encoded.source_cameras
        height, width = self.native_size
        intrinsics = torch.tensor([width, width, width / 2, height / 2], dtype=torch.float64)
        return Cameras(torch.eye(4, dtype=torch.float64), intrinsics, (height, width))

    def source_images(self) -> np.ndarray:
        """(V, H, W, 3) uint8 source images as the model saw them (the first only if unposed)."""
        images = self.encoded.source_images[: len(self.source_cameras())]
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def render(self, cameras: Cameras) -> np.ndarray:
        """(N, H, W, 3) float32 deterministic renders of ``cameras`` (one image size)."""
        height, width = cameras.image_size
        output = self.pipe.render(
            self.encoded, cameras, height=height, width=width, output_type="np"
        )
        return np.asarray(output.images, dtype=np.float32)

    def sample(
        self, cameras: Cameras, count: int, steps: int, guidance: float, seed: int
    ) -> np.ndarray:
        """(count, H, W, 3) float32 samples of the diffusion decoder at one camera."""
        if not self.can_sample:
            raise ValueError(
                "this model has no diffusion decoder, so it cannot sample; load a pipeline saved "
                "with a denoiser (the demo model has one)"
            )
        height, width = cameras.image_size
        with self._sample_lock:
            output = self.pipe.render(
                self.encoded,
                cameras[:1],
                mode="sampled",
                height=height,
                width=width,
                num_samples=count,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator().manual_seed(seed),
                output_type="np",
            )
        return np.asarray(output.images, dtype=np.float32)
