"""Camera paths through and around the source cameras: what videos and viewers render.

Every path takes the source :class:`~lagernvs.cameras.Cameras` and returns new ``Cameras``
with ``num_frames`` cameras, one image size (the first source camera's unless ``image_size``
is given; other cameras' intrinsics are cropped/resized to it as the pipeline does) and the
intrinsics of the sources.

* :func:`interpolate`: a Catmull-Rom spline through the source cameras (centres, rotations as
  hemisphere-aligned quaternions, intrinsics), sampled with an ease-in/ease-out timing.
* :func:`orbit`: a circle around the scene's centre of attention (the point closest to every
  source camera's optical axis), about the mean "up" of the sources, at their mean radius and
  height, looking at the centre.
* :func:`dolly`: the mean source camera moves along its optical axis and back.
* :func:`extrapolate`: the straight line through the first and last source cameras, continued
  beyond them by a fraction of their distance (rotations extrapolated along the same geodesic).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from lagernvs.cameras import Cameras, matrix_to_quaternion, quaternion_to_matrix

__all__ = [
    "PATHS",
    "camera_path",
    "center_of_attention",
    "dolly",
    "extrapolate",
    "interpolate",
    "orbit",
    "up_direction",
]


def _check_frames(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")


def _common_size(cameras: Cameras, image_size: tuple[int, int] | None) -> Cameras:
    """The cameras (float64) with one image size: ``image_size`` or the first camera's."""
    if not isinstance(cameras, Cameras):
        raise ValueError(f"expected Cameras, got {type(cameras).__name__}")
    if len(cameras) == 0:
        raise ValueError("a camera path needs at least one source camera, got none")
    size = tuple(cameras.image_sizes[0].tolist()) if image_size is None else image_size
    return cameras.to(dtype=torch.float64).crop_resize(size)


def _ease(u: Tensor) -> Tensor:
    """Smoothstep timing: zero velocity at both ends."""
    return u * u * (3.0 - 2.0 * u)


def _timeline(num_frames: int, ease: bool) -> Tensor:
    u = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    return _ease(u) if ease else u


def _aligned_quaternions(rotations: Tensor) -> Tensor:
    """(N, 4) quaternions, each in the hemisphere of its predecessor (shortest rotations)."""
    quats = matrix_to_quaternion(rotations)
    if quats.shape[0] > 1:
        dots = (quats[1:] * quats[:-1]).sum(-1)
        flips = torch.cat([quats.new_ones(1), torch.where(dots < 0, -1.0, 1.0)]).cumprod(0)
        quats = quats * flips[:, None]
    return quats


def _poses(centres: Tensor, rotations: Tensor) -> Tensor:
    """(N, 4, 4) c2w from centres (N, 3) and rotations (N, 3, 3)."""
    c2w = torch.eye(4, dtype=centres.dtype).repeat(centres.shape[0], 1, 1)
    c2w[:, :3, :3] = rotations
    c2w[:, :3, 3] = centres
    return c2w


def _with_intrinsics(c2w: Tensor, reference: Cameras, fxfycxcy: Tensor | None = None) -> Cameras:
    """Cameras with poses ``c2w`` and the reference's (or given) intrinsics and image size."""
    count = c2w.shape[0]
    intrinsics = reference.fxfycxcy[0].expand(count, 4) if fxfycxcy is None else fxfycxcy
    return Cameras(c2w, intrinsics, reference.image_size)


def up_direction(cameras: Cameras) -> Tensor:
    """(3,) world "up" of the sources.

    Cameras held without roll have horizontal x axes, so "up" is the direction perpendicular
    to all of them when their x axes span a plane (cameras with different headings). Otherwise
    (one camera, or one heading) it is minus the mean image-down (+y) axis, made perpendicular
    to the x axis. The sign always agrees with minus the mean +y axis.
    """
    c2w = cameras.c2w.to(torch.float64)
    rights, downs = c2w[:, :3, 0], c2w[:, :3, 1]
    fallback = -downs.mean(0)
    values, vectors = torch.linalg.eigh(rights.T @ rights)
    if values[1] > 1e-4 * len(cameras):
        up = vectors[:, 0]
    else:
        mean_right = torch.nn.functional.normalize(rights.mean(0), dim=0)
        up = fallback - (fallback @ mean_right) * mean_right
    norm = torch.linalg.vector_norm(up)
    if norm < 1e-8 or torch.linalg.vector_norm(fallback) < 1e-8:
        raise ValueError("the source cameras disagree on 'up' (their y axes cancel); pass up=")
    up = up / norm
    return up if float(up @ fallback) >= 0 else -up


def center_of_attention(cameras: Cameras) -> Tensor:
    """(3,) point closest (least squares) to every source camera's optical axis.

    Cameras looking at a common point give that point. Directions in which the axes do not
    constrain the point (parallel axes of forward-facing captures, a single camera) take the
    value of a prior point in front of the cameras, at twice their spread (or one unit).
    """
    c2w = cameras.c2w.to(torch.float64)
    origins, dirs = c2w[:, :3, 3], c2w[:, :3, 2]
    projectors = torch.eye(3, dtype=c2w.dtype) - dirs[:, :, None] * dirs[:, None, :]
    spread = torch.cdist(origins, origins).max()
    depth = 2.0 * spread if spread > 1e-6 else torch.ones((), dtype=c2w.dtype)
    prior = origins.mean(0) + depth * dirs.mean(0)
    lhs = projectors.sum(0)
    rhs = (projectors @ origins[:, :, None]).sum(0)[:, 0]
    values, vectors = torch.linalg.eigh(lhs)
    # Each eigenvalue is sum_i sin^2(angle between axis i and that direction): below 1% of the
    # camera count (about 6 degrees of spread) the axes do not pin the point down.
    inverse = torch.where(values > 0.01 * len(cameras), 1.0 / values.clamp_min(1e-12), 0.0)
    return prior + vectors @ (inverse * (vectors.T @ (rhs - lhs @ prior)))


def interpolate(
    cameras: Cameras,
    num_frames: int = 60,
    ease: bool = True,
    image_size: tuple[int, int] | None = None,
) -> Cameras:
    """A smooth path through the source cameras, in their order.

    A uniform Catmull-Rom spline passes through every source camera: spline time ``k`` is
    source ``k``. Frame ``i`` sits at time ``(N - 1) * e(i / (num_frames - 1))`` with ``e`` the
    smoothstep ease (identity when ``ease=False``), so the path starts at the first and ends at
    the last source; with ``ease=False`` and ``num_frames = m (N - 1) + 1`` frame ``m k`` is
    exactly source ``k``.
    """
    _check_frames(num_frames)
    cams = _common_size(cameras, image_size)
    count = len(cams)
    if count == 1:
        return _with_intrinsics(cams.c2w.expand(num_frames, 4, 4), cams)
    features = torch.cat(
        [cams.centers, _aligned_quaternions(cams.c2w[:, :3, :3]), cams.fxfycxcy], dim=-1
    )
    padded = torch.cat(
        [2 * features[:1] - features[1:2], features, 2 * features[-1:] - features[-2:-1]]
    )
    times = (count - 1) * _timeline(num_frames, ease)
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
    return _with_intrinsics(_poses(values[:, :3], rotations), cams, values[:, 7:])


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
    _check_frames(num_frames)
    cams = _common_size(cameras, image_size)
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
    return _with_intrinsics(looks.c2w, cams)


def _mean_camera(cams: Cameras) -> tuple[Tensor, Tensor]:
    """Centre (3,) and rotation (3, 3) of the average source camera."""
    quats = _aligned_quaternions(cams.c2w[:, :3, :3])
    return cams.centers.mean(0), quaternion_to_matrix(quats.mean(0))


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
    _check_frames(num_frames)
    cams = _common_size(cameras, image_size)
    centre, rotation = _mean_camera(cams)
    if distance is None:
        distance = 0.5 * float(torch.linalg.vector_norm(center_of_attention(cams) - centre))
    u = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    offsets = float(distance) * 0.5 * (1.0 - torch.cos(2.0 * math.pi * u))
    centres = centre + offsets[:, None] * rotation[:, 2]
    return _with_intrinsics(_poses(centres, rotation.expand(num_frames, 3, 3)), cams)


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
    _check_frames(num_frames)
    if fraction < 0:
        raise ValueError(f"fraction must be >= 0, got {fraction}")
    if side not in ("both", "start", "end"):
        raise ValueError(f"side must be 'both', 'start' or 'end', got {side!r}")
    cams = _common_size(cameras, image_size)
    first, last = cams[0], cams[-1]
    if len(cams) < 2 or float(torch.linalg.vector_norm(last.centers - first.centers)) < 1e-9:
        raise ValueError(
            "extrapolation needs two source cameras at different positions to define a direction"
        )
    start = -fraction if side in ("both", "start") else 0.0
    end = 1.0 + fraction if side in ("both", "end") else 1.0
    times = (start + (end - start) * _timeline(num_frames, ease))[:, None]
    centres = first.centers + times * (last.centers - first.centers)
    quats = _aligned_quaternions(torch.cat([first.c2w, last.c2w])[:, :3, :3])
    rotations = quaternion_to_matrix(_slerp(quats[0], quats[1], times[:, 0]))
    focal = first.fxfycxcy[:, :2] * (last.fxfycxcy[:, :2] / first.fxfycxcy[:, :2]) ** times
    principal = first.fxfycxcy[:, 2:] + times * (last.fxfycxcy[:, 2:] - first.fxfycxcy[:, 2:])
    return _with_intrinsics(_poses(centres, rotations), cams, torch.cat([focal, principal], -1))


def _slerp(q0: Tensor, q1: Tensor, times: Tensor) -> Tensor:
    """Quaternions (T, 4) at ``times`` on the geodesic q0 -> q1 (times outside [0, 1] extend it)."""
    cos = torch.clamp((q0 * q1).sum(), -1.0, 1.0)
    angle = torch.acos(cos)
    if angle < 1e-8:
        return q0.expand(times.shape[0], 4)
    sin = torch.sin(angle)
    w0 = torch.sin((1 - times) * angle) / sin
    w1 = torch.sin(times * angle) / sin
    return w0[:, None] * q0 + w1[:, None] * q1


PATHS: dict[str, Callable[..., Cameras]] = {
    "interpolate": interpolate,
    "orbit": orbit,
    "dolly": dolly,
    "extrapolate": extrapolate,
}


def camera_path(kind: str, cameras: Cameras, num_frames: int = 60, **kwargs: object) -> Cameras:
    """The path ``kind`` (a key of :data:`PATHS`) through/around ``cameras``."""
    if kind not in PATHS:
        raise ValueError(f"unknown camera path {kind!r}; choose one of {', '.join(PATHS)}")
    return PATHS[kind](cameras, num_frames, **kwargs)
