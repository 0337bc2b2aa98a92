"""What every camera path shares: argument checks, timing, quaternion and pose helpers, the
reference camera of camera-relative paths."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lagernvs.cameras import Cameras, matrix_to_quaternion, quaternion_to_matrix

__all__ = [
    "aligned_quaternions",
    "check_frames",
    "check_positive",
    "common_size",
    "ease",
    "mean_camera",
    "poses",
    "slerp",
    "timeline",
    "with_intrinsics",
]


def check_frames(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")


def check_positive(name: str, value: float) -> float:
    """``value`` as a float, or a one-line ValueError when it is not a finite number > 0."""
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def common_size(cameras: Cameras, image_size: tuple[int, int] | None) -> Cameras:
    """The cameras (float64) with one image size: ``image_size`` or the first camera's."""
    if not isinstance(cameras, Cameras):
        raise ValueError(f"expected Cameras, got {type(cameras).__name__}")
    if len(cameras) == 0:
        raise ValueError("a camera path needs at least one source camera, got none")
    size = tuple(cameras.image_sizes[0].tolist()) if image_size is None else image_size
    return cameras.to(dtype=torch.float64).crop_resize(size)


def ease(u: Tensor) -> Tensor:
    """Smoothstep timing: zero velocity at both ends."""
    return u * u * (3.0 - 2.0 * u)


def timeline(num_frames: int, eased: bool) -> Tensor:
    """``num_frames`` times from 0 to 1 (both included), eased or uniform."""
    u = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    return ease(u) if eased else u


def aligned_quaternions(rotations: Tensor) -> Tensor:
    """(N, 4) quaternions, each in the hemisphere of its predecessor (shortest rotations)."""
    quats = matrix_to_quaternion(rotations)
    if quats.shape[0] > 1:
        dots = (quats[1:] * quats[:-1]).sum(-1)
        flips = torch.cat([quats.new_ones(1), torch.where(dots < 0, -1.0, 1.0)]).cumprod(0)
        quats = quats * flips[:, None]
    return quats


def slerp(q0: Tensor, q1: Tensor, times: Tensor) -> Tensor:
    """Quaternions (T, 4) at ``times`` on the geodesic q0 -> q1 (times outside [0, 1] extend it)."""
    cos = torch.clamp((q0 * q1).sum(), -1.0, 1.0)
    angle = torch.acos(cos)
    if angle < 1e-8:
        return q0.expand(times.shape[0], 4)
    sin = torch.sin(angle)
    w0 = torch.sin((1 - times) * angle) / sin
    w1 = torch.sin(times * angle) / sin
    return w0[:, None] * q0 + w1[:, None] * q1


def poses(centres: Tensor, rotations: Tensor) -> Tensor:
    """(N, 4, 4) c2w from centres (N, 3) and rotations (N, 3, 3) (or one (3, 3) for all)."""
    count = centres.shape[0]
    c2w = torch.eye(4, dtype=centres.dtype).repeat(count, 1, 1)
    c2w[:, :3, :3] = rotations.expand(count, 3, 3)
    c2w[:, :3, 3] = centres
    return c2w


def with_intrinsics(c2w: Tensor, reference: Cameras, fxfycxcy: Tensor | None = None) -> Cameras:
    """Cameras with poses ``c2w`` and the reference's (or given) intrinsics and image size."""
    count = c2w.shape[0]
    intrinsics = reference.fxfycxcy[0].expand(count, 4) if fxfycxcy is None else fxfycxcy
    return Cameras(c2w, intrinsics, reference.image_size)


def mean_camera(cams: Cameras) -> tuple[Tensor, Tensor]:
    """Centre (3,) and rotation (3, 3) of the average source camera: the reference camera of the
    camera-relative paths (dolly, zoom, moves, spiral, lemniscate)."""
    quats = aligned_quaternions(cams.c2w[:, :3, :3])
    return cams.centers.mean(0), quaternion_to_matrix(quats.mean(0))
