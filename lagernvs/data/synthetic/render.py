"""Rendered views of procedural worlds: images and exact z-depth from given or drawn cameras."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from lagernvs.cameras import plucker_rays
from lagernvs.data.synthetic.raycast import RayHits, cast_rays
from lagernvs.data.synthetic.world import (
    TRAJECTORIES,
    SyntheticWorld,
    draw_trajectory,
    make_world,
    seeded_rng,
)


class SyntheticRender(NamedTuple):
    """Rendered frames of a synthetic world and their exact cameras."""

    images: Tensor  # (N, 3, H, W) float32 in [0, 1]
    depth: Tensor  # (N, H, W) float32 z-depth
    c2w: Tensor  # (N, 4, 4) float64 OpenCV camera-to-world
    fxfycxcy: Tensor  # (N, 4) float64 pixels
    world: SyntheticWorld


def cast_world_views(
    world: SyntheticWorld,
    c2w: Tensor,
    fxfycxcy: Tensor,
    height: int,
    width: int,
    max_rays: int = 2**19,
) -> tuple[RayHits, Tensor]:
    """First hits (fields (N, H, W, ...), float64) and z-depth (N, H, W) of N cameras' pixels.

    Views are cast together, in chunks of at most `max_rays` rays (at least one view) to bound
    memory at large sizes.
    """
    c2w, fxfycxcy = c2w.to(torch.float64), fxfycxcy.to(torch.float64)
    per_chunk = max(1, max_rays // (height * width))
    hits, depths = [], []
    for start in range(0, c2w.shape[0], per_chunk):
        cams = c2w[start : start + per_chunk]
        rays = plucker_rays(cams, fxfycxcy[start : start + per_chunk], height, width)
        dirs = rays[:, 3:].permute(0, 2, 3, 1)  # (n, H, W, 3)
        hit = cast_rays(world, cams[:, None, None, :3, 3], dirs)
        depths.append(hit.distance * (dirs * cams[:, None, None, :3, 2]).sum(-1))
        hits.append(hit)
    return RayHits(*(torch.cat(field) for field in zip(*hits, strict=True))), torch.cat(depths)


def render_world_views(
    world: SyntheticWorld,
    c2w: Tensor,
    fxfycxcy: Tensor,
    height: int,
    width: int,
    max_rays: int = 2**19,
) -> tuple[Tensor, Tensor]:
    """Images (N, 3, H, W) float32 and z-depth (N, H, W) float32 of `world` from N cameras."""
    hits, depth = cast_world_views(world, c2w, fxfycxcy, height, width, max_rays)
    return hits.colors.permute(0, 3, 1, 2).float(), depth.float()


def draw_cameras(
    seed: int,
    num_frames: int,
    height: int,
    width: int,
    trajectory: str | None = None,
    fov_degrees: tuple[float, float] = (50.0, 70.0),
    pan: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Cameras of scene `seed`: c2w (N, 4, 4) and fxfycxcy (N, 4), float64.

    `trajectory` is "forward" or "arc" (drawn from the seed when None; `pan` as in
    :func:`~lagernvs.data.synthetic.world.draw_trajectory`); the horizontal field of view is
    drawn from `fov_degrees`, square pixels, principal point near the image centre.
    """
    if num_frames < 1 or height < 1 or width < 1:
        raise ValueError(
            f"num_frames, height and width must be positive, got {num_frames}, {height}, {width}"
        )
    if trajectory is not None and trajectory not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {trajectory!r}; use one of {TRAJECTORIES}")
    rng = seeded_rng(seed, 0)
    kind = trajectory or TRAJECTORIES[int(rng.integers(len(TRAJECTORIES)))]
    c2w = draw_trajectory(rng, num_frames, kind, pan)
    fov = math.radians(rng.uniform(*fov_degrees))
    focal = 0.5 * width / math.tan(0.5 * fov)
    cx = width * (0.5 + rng.uniform(-0.02, 0.02))
    cy = height * (0.5 + rng.uniform(-0.02, 0.02))
    fxfycxcy = torch.tensor([[focal, focal, cx, cy]], dtype=torch.float64).expand(num_frames, 4)
    return torch.as_tensor(c2w), fxfycxcy.clone()


def render_synthetic_scene(
    seed: int,
    num_frames: int = 8,
    height: int = 64,
    width: int = 64,
    trajectory: str | None = None,
    fov_degrees: tuple[float, float] = (50.0, 70.0),
) -> SyntheticRender:
    """Draw world `seed` and render `num_frames` views along a Re10k-like trajectory
    (cameras as in :func:`draw_cameras`)."""
    c2w, fxfycxcy = draw_cameras(seed, num_frames, height, width, trajectory, fov_degrees)
    world = make_world(seed, c2w[:, :3, 3].numpy())
    images, depth = render_world_views(world, c2w, fxfycxcy, height, width)
    return SyntheticRender(images, depth, c2w, fxfycxcy, world)
