"""Where the source cameras look and which way is up: what the paths around a scene aim at."""

from __future__ import annotations

import torch
from torch import Tensor

from lagernvs.cameras import Cameras

__all__ = ["center_of_attention", "subject_depth", "up_direction"]


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


def subject_depth(cameras: Cameras, centre: Tensor, rotation: Tensor) -> float:
    """Depth of the :func:`center_of_attention` along the optical axis of the camera at
    ``centre`` with ``rotation``: the distance the camera-relative paths are scaled by.

    A centre of attention behind the camera (cameras looking apart) falls back to its distance.
    """
    offset = center_of_attention(cameras) - centre
    depth = float(offset @ rotation[:, 2])
    distance = float(torch.linalg.vector_norm(offset))
    if depth <= 1e-9 * max(distance, 1.0):
        depth = distance
    if depth <= 1e-12:
        raise ValueError("the source cameras' centre of attention is at the camera; pass center=")
    return depth
