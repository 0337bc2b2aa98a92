"""What the pipeline hands back: rendered views (:class:`LagerNVSPipelineOutput`) and the encoded
scene that :meth:`~lagernvs.pipeline.LagerNVSPipeline.render` renders from
(:class:`EncodedScene`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from torch import Tensor

from lagernvs.cameras import Cameras
from lagernvs.data.model_inputs import model_frame_poses

__all__ = ["EncodedScene", "LagerNVSPipelineOutput", "LagerNVSScene", "postprocess_images"]


@dataclass
class LagerNVSPipelineOutput(BaseOutput):
    """Rendered views and the cameras they were rendered with.

    Attributes:
        images: T PIL images, a (T, H, W, 3) float32 array in [0, 1] or a (T, 3, H, W) tensor.
        cameras: the T target cameras actually rendered: the given poses, intrinsics adjusted
            to the rendered image size (H, W).
    """

    images: list[PIL.Image.Image] | np.ndarray | Tensor
    cameras: Cameras


@dataclass
class EncodedScene:
    """A scene after the encoder: what :meth:`LagerNVSPipeline.render` needs to render new views.

    Attributes:
        scene_tokens: (1, V, Np, W) encoder output.
        source_images: (V, 3, H, W) the source images as the model saw them (model image size).
        source_cameras: the source cameras after crop/resize to the model image size, in the
            user's world frame; None for unposed input.
        scene_scale: divisor of camera centres in the model's frame (1 when unposed): the
            farthest source camera from the first, times 1.35.
        prepared: the renderer's per-scene cache (e.g. cross-attention keys/values).
    """

    scene_tokens: Tensor
    source_images: Tensor
    source_cameras: Cameras | None
    scene_scale: float
    prepared: Any

    @property
    def posed(self) -> bool:
        return self.source_cameras is not None

    @property
    def num_views(self) -> int:
        return self.scene_tokens.shape[1]

    def model_frame(self, cameras: Cameras) -> Tensor:
        """c2w (T, 4, 4) float32 of ``cameras`` in the model's normalised frame (on the CPU).

        Posed scenes: the reference normalisation of the sources followed by ``cameras``.
        Unposed scenes: ``cameras`` already live in the model's frame.
        """
        if self.source_cameras is None:
            return cameras.c2w.float().cpu()
        return model_frame_poses(self.source_cameras.c2w, cameras.c2w)


LagerNVSScene = EncodedScene
"""The former name of :class:`EncodedScene`, kept so that existing code keeps working."""


def postprocess_images(
    images: Tensor, output_type: str
) -> list[PIL.Image.Image] | np.ndarray | Tensor:
    """Rendered views (T, 3, H, W) in [0, 1] as ``output_type``: ``"pt"`` the tensor, ``"np"``
    a (T, H, W, 3) float32 array, ``"pil"`` PIL images (diffusers' image processor)."""
    images = images.clamp(0.0, 1.0)
    if output_type == "pt":
        return images
    array = VaeImageProcessor.pt_to_numpy(images)
    return array if output_type == "np" else VaeImageProcessor.numpy_to_pil(array)
