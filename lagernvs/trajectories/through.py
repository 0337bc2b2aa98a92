"""Paths through the source cameras: the eased spline there and back (the default video path),
the one-way interpolation, and the extrapolation beyond the first and last source."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lagernvs.cameras import Cameras, quaternion_to_matrix

from .common import (
    aligned_quaternions,
    check_frames,
    common_size,
    ease,
    poses,
    slerp,
    timeline,
    with_intrinsics,
)

__all__ = ["extrapolate", "interpolate", "spline"]


def _catmull_rom(cams: Cameras, times: Tensor) -> Cameras:
    """The uniform Catmull-Rom spline through ``cams`` (centres, hemisphere-aligned quaternions,
    intrinsics) at spline ``times`` in [0, N - 1]; time ``k`` is source ``k``."""
    count = len(cams)
    if count == 1:
        return with_intrinsics(cams.c2w.expand(times.shape[0], 4, 4), cams)
    features = torch.cat(
        [cams.centers, aligned_quaternions(cams.c2w[:, :3, :3]), cams.fxfycxcy], dim=-1
    )
    padded = torch.cat(
        [2 * features[:1] - features[1:2], features, 2 * features[-1:] - features[-2:-1]]
    )
    segment = times.floor().clamp(max=count - 2).long()
    s = (times - segment)[:, None]
    p0, p1, p2, p3 = (padded[segment + k] for k in range(4))
    values = 0.5 * (
        2 * p1
        + (p2 - p0) * s
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2
        + (3 * p1 - p0 - 3 * p2 + p3) * s**3
    )
    rotations = quaternion_to_matrix(values[:, 3:7])
    return with_intrinsics(poses(values[:, :3], rotations), cams, values[:, 7:])


def interpolate(
    cameras: Cameras,
    num_frames: int = 60,
    ease: bool = True,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """A smooth path through the source cameras, in their order, one way.

    A uniform Catmull-Rom spline passes through every source camera: spline time ``k`` is
    source ``k``. Frame ``i`` sits at time ``(N - 1) * e(i / (num_frames - 1))`` with ``e`` the
    smoothstep ease (identity when ``ease=False``), so the path starts at the first and ends at
    the last source; with ``ease=False`` and ``num_frames = m (N - 1) + 1`` frame ``m k`` is
    exactly source ``k``. With ``ease=False`` this also resamples a keyframe path (uniform in
    keyframe time).
    """
    check_frames(num_frames)
    cams = common_size(cameras, image_size)
    return _catmull_rom(cams, (len(cams) - 1) * timeline(num_frames, ease))


def _knot_times(eased: Tensor, count: int) -> Tensor:
    """Spline times of frames at eased progress ``eased`` (0 -> 1), bent so that the frame
    nearest to each source's share of the progress lands exactly on that source.

    The bend is piecewise linear in the progress between those frames, so the path keeps the
    ease's smooth start and end; with fewer frames than sources it is left out.
    """
    knots = torch.linspace(0.0, 1.0, count, dtype=torch.float64)
    nearest = (eased[None, :] - knots[:, None]).abs().argmin(dim=1)
    if bool((nearest.diff() <= 0).any()):
        return (count - 1) * eased
    anchors = eased[nearest]
    segment = torch.searchsorted(anchors, eased, right=True).clamp(1, count - 1) - 1
    low, high = anchors[segment], anchors[segment + 1]
    return segment + (eased - low) / (high - low)


def spline(
    cameras: Cameras,
    num_frames: int = 60,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """The official default video path: an eased spline through every source camera in order,
    and back, as a loop.

    The first half of the frames runs from the first to the last source along the Catmull-Rom
    spline of :func:`interpolate` with a smoothstep ease (still at both ends); the second half
    retraces it, so frame ``i`` and frame ``num_frames - i`` coincide and the video loops (after
    the last frame comes frame 0; an odd count shows the last source twice). Each source camera
    is exactly one of the frames when the half path has enough frames (about
    ``num_frames >= 3 N``): the ease is bent slightly (see :func:`_knot_times`) to land on them.
    """
    check_frames(num_frames)
    cams = common_size(cameras, image_size)
    half = num_frames // 2
    if half == 0 or len(cams) == 1:
        return _catmull_rom(cams, torch.zeros(num_frames, dtype=torch.float64))
    eased = ease(torch.arange(half + 1, dtype=torch.float64) / half)
    forward = _knot_times(eased, len(cams))
    back = forward[num_frames - torch.arange(half + 1, num_frames)]
    return _catmull_rom(cams, torch.cat([forward, back]))


def extrapolate(
    cameras: Cameras,
    num_frames: int = 60,
    fraction: float = 0.5,
    side: Literal["both", "start", "end"] = "both",
    ease: bool = True,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """A path along the first-to-last source line that leaves their span by ``fraction``.

    Path time 0 is the first source and 1 the last; the path runs over ``[-fraction,
    1 + fraction]`` (``side="both"``), ``[-fraction, 1]`` ("start") or ``[0, 1 + fraction]``
    ("end"). Centres move on the line, rotations on the geodesic through the two sources'
    rotations, focal lengths geometrically and principal points linearly.
    """
    check_frames(num_frames)
    if fraction < 0:
        raise ValueError(f"fraction must be >= 0, got {fraction}")
    if side not in ("both", "start", "end"):
        raise ValueError(f"side must be 'both', 'start' or 'end', got {side!r}")
    cams = common_size(cameras, image_size)
    first, last = cams[0], cams[-1]
    if len(cams) < 2 or float(torch.linalg.vector_norm(last.centers - first.centers)) < 1e-9:
        raise ValueError(
            "extrapolation needs two source cameras at different positions to define a direction"
        )
    start = -fraction if side in ("both", "start") else 0.0
    end = 1.0 + fraction if side in ("both", "end") else 1.0
    times = (start + (end - start) * timeline(num_frames, ease))[:, None]
    centres = first.centers + times * (last.centers - first.centers)
    quats = aligned_quaternions(torch.cat([first.c2w, last.c2w])[:, :3, :3])
    rotations = quaternion_to_matrix(slerp(quats[0], quats[1], times[:, 0]))
    focal = first.fxfycxcy[:, :2] * (last.fxfycxcy[:, :2] / first.fxfycxcy[:, :2]) ** times
    principal = first.fxfycxcy[:, 2:] + times * (last.fxfycxcy[:, 2:] - first.fxfycxcy[:, 2:])
    return with_intrinsics(poses(centres, rotations), cams, torch.cat([focal, principal], -1))
