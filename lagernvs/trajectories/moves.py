"""Camera-relative moves of the mean source camera: dolly (in and back), straight moves along its
own axes, zooms (focal length only) and the dolly zoom (the subject keeps its image size).

Distances are in the units of the source cameras; the defaults are fractions of the subject's
depth (:func:`~lagernvs.trajectories.geometry.subject_depth`), so they suit any scene scale.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lagernvs.cameras import Cameras

from .common import (
    check_frames,
    check_positive,
    common_size,
    mean_camera,
    poses,
    timeline,
    with_intrinsics,
)
from .geometry import center_of_attention, subject_depth

__all__ = ["MOVES", "dolly", "dolly_zoom", "move", "zoom_in", "zoom_out"]

MOVES: dict[str, tuple[float, float, float]] = {
    "left": (-1.0, 0.0, 0.0),
    "right": (1.0, 0.0, 0.0),
    "up": (0.0, -1.0, 0.0),
    "down": (0.0, 1.0, 0.0),
    "forward": (0.0, 0.0, 1.0),
    "back": (0.0, 0.0, -1.0),
}
"""Move directions in the camera's own axes (OpenCV: x right, y down, z forward)."""
MOVE_DISTANCE = 0.25
"""Default move distance, as a fraction of the subject's depth."""
DOLLY_ZOOM_DISTANCE = -0.5
"""Default dolly-zoom travel (negative: away from the subject), as a fraction of its depth."""


def dolly(
    cameras: Cameras,
    num_frames: int = 60,
    distance: float | None = None,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """The mean source camera moves ``distance`` along its optical axis and back, smoothly.

    Positive distances move forward (dolly in), negative ones backward. The default is half
    the distance from the mean camera to the :func:`center_of_attention`.
    """
    check_frames(num_frames)
    cams = common_size(cameras, image_size)
    centre, rotation = mean_camera(cams)
    if distance is None:
        distance = 0.5 * float(torch.linalg.vector_norm(center_of_attention(cams) - centre))
    u = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    offsets = float(distance) * 0.5 * (1.0 - torch.cos(2.0 * math.pi * u))
    centres = centre + offsets[:, None] * rotation[:, 2]
    return with_intrinsics(poses(centres, rotation), cams)


def move(
    cameras: Cameras,
    num_frames: int = 60,
    direction: str = "right",
    distance: float | None = None,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """The mean source camera translates ``distance`` towards ``direction`` (a key of
    :data:`MOVES`, in its own axes), eased, without turning; the last frame is exactly
    ``distance`` away. The default distance is 0.25 x the subject's depth."""
    check_frames(num_frames)
    if direction not in MOVES:
        raise ValueError(f"unknown move direction {direction!r}; choose one of {', '.join(MOVES)}")
    cams = common_size(cameras, image_size)
    centre, rotation = mean_camera(cams)
    if distance is None:
        distance = MOVE_DISTANCE * subject_depth(cams, centre, rotation)
    step = check_positive("distance", distance)
    axis = rotation @ torch.tensor(MOVES[direction], dtype=torch.float64)
    centres = centre + (step * timeline(num_frames, True))[:, None] * axis
    return with_intrinsics(poses(centres, rotation), cams)


def _zoom(cams: Cameras, num_frames: int, gain: float) -> Cameras:
    """The mean source camera, still, its focal lengths scaled from 1 to ``gain`` (eased,
    geometrically); principal point and pose unchanged."""
    centre, rotation = mean_camera(cams)
    scales = gain ** timeline(num_frames, True)
    intrinsics = cams.fxfycxcy[0].repeat(num_frames, 1)
    intrinsics[:, :2] *= scales[:, None]
    return with_intrinsics(poses(centre.expand(num_frames, 3), rotation), cams, intrinsics)


def _zoom_factor(factor: float) -> float:
    value = check_positive("zoom factor", factor)
    if value <= 1.0:
        raise ValueError(f"zoom factor must be > 1 (2: twice the focal length), got {factor!r}")
    return value


def zoom_in(
    cameras: Cameras,
    num_frames: int = 60,
    factor: float = 2.0,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """The mean source camera zooms in: its focal length grows to ``factor`` times (> 1)."""
    check_frames(num_frames)
    return _zoom(common_size(cameras, image_size), num_frames, _zoom_factor(factor))


def zoom_out(
    cameras: Cameras,
    num_frames: int = 60,
    factor: float = 2.0,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """The mean source camera zooms out: its focal length shrinks to 1 / ``factor`` (> 1)."""
    check_frames(num_frames)
    return _zoom(common_size(cameras, image_size), num_frames, 1.0 / _zoom_factor(factor))


def dolly_zoom(
    cameras: Cameras,
    num_frames: int = 60,
    distance: float | None = None,
    center: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """The "vertigo" shot: the mean source camera moves ``distance`` along its optical axis
    (positive: towards the subject) while its focal length follows the distance to the subject,
    so the subject keeps its size in the image and the background stretches or shrinks.

    The subject is ``center`` (default: the centre of attention), at depth ``d`` along the
    axis; the focal length at travel ``s`` is ``f * (d - s) / d``. The default ``distance`` is
    ``-0.5 d`` (move back to 1.5 d while zooming in to 1.5 f), which stays within what the
    sources saw; ``distance`` must stay below ``d``.
    """
    check_frames(num_frames)
    cams = common_size(cameras, image_size)
    centre, rotation = mean_camera(cams)
    if center is None:
        depth = subject_depth(cams, centre, rotation)
    else:
        depth = float((torch.as_tensor(center, dtype=torch.float64) - centre) @ rotation[:, 2])
        if depth <= 0:
            raise ValueError("dolly-zoom center must be in front of the mean source camera")
    travel = DOLLY_ZOOM_DISTANCE * depth if distance is None else float(distance)
    if not math.isfinite(travel) or travel >= depth:
        raise ValueError(
            f"dolly-zoom distance {travel:.4g} must be a finite number below the subject's depth "
            f"{depth:.4g} (the camera cannot pass the subject)"
        )
    offsets = travel * timeline(num_frames, True)
    centres = centre + offsets[:, None] * rotation[:, 2]
    intrinsics = cams.fxfycxcy[0].repeat(num_frames, 1)
    intrinsics[:, :2] *= ((depth - offsets) / depth)[:, None]
    return with_intrinsics(poses(centres, rotation), cams, intrinsics)
