"""Closed loops around the scene: the orbit about the centre of attention, and the spiral and
lemniscate (figure eight) about the mean source camera, always looking at the subject."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lagernvs.cameras import Cameras

from .common import check_frames, check_positive, common_size, mean_camera, with_intrinsics
from .geometry import center_of_attention, subject_depth, up_direction

__all__ = ["lemniscate", "orbit", "spiral"]

LOOP_RADIUS = 0.1
"""Default spiral / lemniscate radius, as a fraction of the subject's depth."""


def orbit(
    cameras: Cameras,
    num_frames: int = 60,
    degrees: float = 360.0,
    center: Tensor | None = None,
    up: Tensor | None = None,
    radius: float | None = None,
    height: float | None = None,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """Cameras on a circle around ``center`` (default :func:`center_of_attention`), looking at it.

    The circle lies in the plane perpendicular to ``up`` (default :func:`up_direction`) at
    ``height`` above the centre along ``up`` and ``radius`` from the axis (defaults: the
    sources' mean height and horizontal distance). A full circle (``degrees=360``) starts at the
    sources' mean direction; a partial arc is centred on it. Every camera is at the same
    distance from the centre.
    """
    check_frames(num_frames)
    cams = common_size(cameras, image_size)
    centre = center_of_attention(cams) if center is None else torch.as_tensor(center).double()
    axis = up_direction(cams) if up is None else torch.as_tensor(up).double()
    axis = axis / torch.linalg.vector_norm(axis)
    offsets = cams.centers - centre
    heights = offsets @ axis
    horizontal = offsets - heights[:, None] * axis
    radius_value = (
        float(torch.linalg.vector_norm(horizontal, dim=-1).mean())
        if radius is None
        else float(radius)
    )
    height_value = float(heights.mean()) if height is None else float(height)
    if radius_value <= 1e-9:
        raise ValueError(
            "orbit radius is zero (the sources sit on the orbit axis); pass radius= or up="
        )
    first = horizontal.mean(0)
    if torch.linalg.vector_norm(first) < 1e-9:
        first = horizontal[0]
    if torch.linalg.vector_norm(first) < 1e-9:  # every source on the axis: any perpendicular
        helper = torch.eye(3, dtype=axis.dtype)[int(axis.abs().argmin())]
        first = torch.linalg.cross(axis, helper, dim=-1)
    first = first - (first @ axis) * axis
    first = first / torch.linalg.vector_norm(first)
    second = torch.linalg.cross(axis, first, dim=-1)
    span = math.radians(degrees)
    if abs(abs(degrees) - 360.0) < 1e-9:
        angles = torch.arange(num_frames, dtype=torch.float64) * (span / num_frames)
    else:
        angles = torch.linspace(-span / 2, span / 2, num_frames, dtype=torch.float64)
    eyes = (
        centre
        + height_value * axis
        + radius_value * (angles.cos()[:, None] * first + angles.sin()[:, None] * second)
    )
    looks = Cameras.look_at(eyes, centre, up=axis, image_size=cams.image_size)
    return with_intrinsics(looks.c2w, cams)


def _looking_loop(
    cams: Cameras,
    offsets: Tensor,
    center: Tensor | None,
) -> Cameras:
    """Cameras at the mean source camera plus ``offsets`` (T, 3) in its own axes (x right,
    y down, z forward), looking at ``center`` (default: the subject on the mean camera's axis),
    with the mean camera's up and the first source's intrinsics."""
    origin, rotation = mean_camera(cams)
    if center is None:
        focus = origin + subject_depth(cams, origin, rotation) * rotation[:, 2]
    else:
        focus = torch.as_tensor(center, dtype=torch.float64)
    eyes = origin + offsets @ rotation.T
    looks = Cameras.look_at(eyes, focus, up=-rotation[:, 1], image_size=cams.image_size)
    return with_intrinsics(looks.c2w, cams)


def _loop_radius(cams: Cameras, radius: float | None) -> float:
    if radius is not None:
        return check_positive("radius", radius)
    origin, rotation = mean_camera(cams)
    return LOOP_RADIUS * subject_depth(cams, origin, rotation)


def spiral(
    cameras: Cameras,
    num_frames: int = 60,
    radius: float | None = None,
    turns: int = 2,
    center: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """A closed spiral about the mean source camera, looking at the subject.

    The camera circles ``turns`` times in the mean camera's image plane at ``radius`` (default
    0.1 x the subject's depth) while moving once forward and back along its axis by up to
    ``radius``. Frames are evenly spaced in angle and the path is periodic: the frame after the
    last would be frame 0, so the video loops smoothly.
    """
    check_frames(num_frames)
    if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
        raise ValueError(f"turns must be a positive int (a closed spiral), got {turns!r}")
    cams = common_size(cameras, image_size)
    size = _loop_radius(cams, radius)
    angles = 2.0 * math.pi * turns * torch.arange(num_frames, dtype=torch.float64) / num_frames
    offsets = size * torch.stack([angles.cos(), angles.sin(), (angles / turns).sin()], dim=-1)
    return _looking_loop(cams, offsets, center)


def lemniscate(
    cameras: Cameras,
    num_frames: int = 60,
    radius: float | None = None,
    center: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """A figure eight (lemniscate of Gerono) in the mean source camera's image plane, looking at
    the subject.

    The offset is ``radius * (sin t, sin t cos t, 0)`` in the mean camera's axes (x right,
    y down) with ``t`` evenly spaced over one period, so the path starts at the mean camera,
    passes through it again half way, reaches ``radius`` left and right and ``radius / 2`` up
    and down, and loops smoothly. ``radius`` defaults to 0.1 x the subject's depth.
    """
    check_frames(num_frames)
    cams = common_size(cameras, image_size)
    size = _loop_radius(cams, radius)
    angles = 2.0 * math.pi * torch.arange(num_frames, dtype=torch.float64) / num_frames
    offsets = size * torch.stack(
        [angles.sin(), angles.sin() * angles.cos(), torch.zeros_like(angles)], dim=-1
    )
    return _looking_loop(cams, offsets, center)
