"""Source cameras estimated from the photos themselves: ``source_cameras="estimate"``.

A pipeline that holds a camera estimator (the optional ``camera_estimator`` component, a
:class:`~lagernvs.models.camera_estimator.VGGTCameraEstimator`) estimates the cameras of
unposed photos with VGGT and then treats them as posed cameras, as the official viewer does.
They come back in the estimator's convention: the first photo's camera at the origin (identity
pose), the farthest source camera at distance 1/1.35, one shared focal length.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lagernvs.cameras import Cameras
from lagernvs.data.model_inputs import crop_resize_images

if TYPE_CHECKING:
    from lagernvs.models.camera_estimator import VGGTCameraEstimator

__all__ = [
    "ESTIMATE",
    "check_estimator",
    "check_vggt_weights",
    "estimate_source_cameras",
    "load_camera_estimator",
    "wants_estimate",
]

ESTIMATE = "estimate"
"""The ``source_cameras`` value that asks for estimated cameras."""
ESTIMATOR_HINT = (
    "load one with load_pipeline(..., vggt_weights='path/to/VGGT-1B/model.pt') (lagernvs render "
    "--vggt-weights) or pipe.register_modules(camera_estimator=VGGTCameraEstimator."
    "from_vggt_checkpoint(path))"
)


def wants_estimate(source_cameras: Any) -> bool:
    """True for ``source_cameras="estimate"``; a one-line ValueError for any other string."""
    if not isinstance(source_cameras, str):
        return False
    if source_cameras != ESTIMATE:
        raise ValueError(
            f"source_cameras must be Cameras, a Scene, None (unposed) or {ESTIMATE!r}, got "
            f"{source_cameras!r}"
        )
    return True


def check_estimator(estimator: VGGTCameraEstimator | None) -> None:
    """Refuse ``source_cameras="estimate"`` on a pipeline without an estimator, in one line."""
    if estimator is None:
        raise ValueError(
            f"source_cameras={ESTIMATE!r} needs a camera estimator, but this pipeline has none; "
            f"{ESTIMATOR_HINT}, or pass cameras or None (unposed)"
        )


def estimate_source_cameras(
    estimator: VGGTCameraEstimator, frames: list[Tensor]
) -> tuple[list[Tensor], Cameras]:
    """The frames (brought to the first frame's size when sizes differ: VGGT takes one size) and
    their estimated cameras (on the CPU, at that size, relative to the first frame's camera)."""
    size = (int(frames[0].shape[-2]), int(frames[0].shape[-1]))
    same = [f if tuple(f.shape[-2:]) == size else crop_resize_images(f, size) for f in frames]
    views = torch.stack(same).to(estimator.device, torch.float32)
    return same, estimator.estimate_cameras(views).to("cpu")


def check_vggt_weights(path: str | os.PathLike) -> Path:
    """``path`` as a Path when it is an existing file; else a one-line error saying what it is."""
    weights = Path(path)
    if weights.is_dir():
        raise IsADirectoryError(
            f"VGGT weights {weights} is a folder; give the checkpoint file itself "
            "(VGGT-1B's model.pt or model.safetensors)"
        )
    if not weights.is_file():
        raise FileNotFoundError(
            f"VGGT weights {weights} do not exist; give a local VGGT-1B model.pt (nothing is "
            "downloaded)"
        )
    return weights


def load_camera_estimator(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> VGGTCameraEstimator:
    """The VGGT camera estimator of a local VGGT-1B checkpoint (loaded strictly), on ``device``."""
    from lagernvs.models.camera_estimator import VGGTCameraEstimator

    weights = check_vggt_weights(path)
    return VGGTCameraEstimator.from_vggt_checkpoint(weights).to(device)
