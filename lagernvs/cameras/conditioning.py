"""Model conditioning of cameras: ray maps, pose encodings, scene normalisation, camera tokens.

The numerics are the reference implementation's (its data pipeline's normalisation and its
``build_cam_cond``), checked against the reference camera fixtures by tests/test_cameras.py.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from ._checks import check_num_cond_views, check_size, check_tail, compute_dtypes
from .rotations import matrix_to_quaternion

SCENE_SCALE_FACTOR = 1.35
"""The farthest conditioning camera ends up at distance 1 / SCENE_SCALE_FACTOR from view 0."""

POSE_ENCODING_DIM = 9
CAMERA_TOKEN_DIM = 11

Split = Literal["train", "test"]


class SceneNormalization(NamedTuple):
    """Result of :func:`normalize_scene`; scalars have the batch shape of the input."""

    c2w: Tensor
    """(..., V, 4, 4) poses relative to view 0, centres divided by ``scene_scale``."""
    camera_scale: Tensor
    """(...) largest conditioning-camera distance after normalisation (1/1.35 for >= 2 views)."""
    scene_scale: Tensor
    """(...) the divisor applied to the camera centres (1 for a single conditioning view)."""
    scene_scale_ratio: Tensor
    """(...) largest distance over all views before division, over ``scene_scale``."""


def plucker_rays(c2w: Tensor, fxfycxcy: Tensor, height: int, width: int) -> Tensor:
    """Plücker ray map (..., 6, H, W) of OpenCV c2w cameras with the given intrinsics.

    Pixel (row i, column j) is sampled at its centre (j + 0.5, i + 0.5). The camera-frame
    direction K^-1 (u, v, 1) is normalised, then rotated to world; channels 0-2 hold the moment
    o x d (o = camera centre), channels 3-5 the unit direction d.
    """
    check_tail(c2w, (4, 4), "c2w")
    check_tail(fxfycxcy, (4,), "fxfycxcy")
    check_size(height, width)
    out_dtype, dtype = compute_dtypes(c2w, fxfycxcy)
    c2w, fxfycxcy = c2w.to(dtype), fxfycxcy.to(dtype)
    u = torch.arange(width, device=c2w.device, dtype=dtype) + 0.5
    v = torch.arange(height, device=c2w.device, dtype=dtype) + 0.5
    fx, fy, cx, cy = (value[..., None, None] for value in fxfycxcy.unbind(-1))
    x, y = torch.broadcast_tensors((u - cx) / fx, (v[:, None] - cy) / fy)
    inv_norm = torch.rsqrt(x * x + y * y + 1)  # unit length, computed per component (fast)
    dirs_cam = torch.stack([x * inv_norm, y * inv_norm, inv_norm], dim=-3).flatten(-2)
    dirs = c2w[..., :3, :3] @ dirs_cam  # (..., 3, HW)
    ox, oy, oz = c2w[..., :3, 3, None].unbind(-2)
    dx, dy, dz = dirs.unbind(-2)
    moments = torch.stack([oy * dz - oz * dy, oz * dx - ox * dz, ox * dy - oy * dx], dim=-2)
    rays = torch.cat([moments, dirs], dim=-2).unflatten(-1, (height, width))
    return rays.to(out_dtype)


def pose_encoding(c2w: Tensor, fxfycxcy: Tensor, height: int, width: int) -> Tensor:
    """9-d VGGT pose encoding (..., 9) = [t (3), q xyzw (4), fov_h, fov_w] of c2w cameras.

    As in the reference, the *camera-to-world* matrix is encoded: t is the camera centre and q
    the quaternion of the c2w rotation. fov_h = 2 atan(H / (2 fy)), fov_w = 2 atan(W / (2 fx)),
    with H x W the image size the intrinsics refer to.
    """
    check_tail(c2w, (4, 4), "c2w")
    check_tail(fxfycxcy, (4,), "fxfycxcy")
    check_size(height, width)
    out_dtype, dtype = compute_dtypes(c2w, fxfycxcy)
    c2w, fxfycxcy = c2w.to(dtype), fxfycxcy.to(dtype)
    fov_h = 2.0 * torch.atan((height / 2.0) / fxfycxcy[..., 1])
    fov_w = 2.0 * torch.atan((width / 2.0) / fxfycxcy[..., 0])
    fov = torch.stack([fov_h, fov_w], dim=-1)
    pose = torch.cat([c2w[..., :3, 3], matrix_to_quaternion(c2w[..., :3, :3])], dim=-1)
    batch = torch.broadcast_shapes(pose.shape[:-1], fov.shape[:-1])
    encoding = torch.cat([pose.expand(*batch, 7), fov.expand(*batch, 2)], dim=-1)
    return encoding.to(out_dtype)


def normalize_scene(c2w: Tensor, num_cond_views: int) -> SceneNormalization:
    """Express all views relative to view 0 and rescale, as the reference data pipeline does.

    Every pose is left-multiplied by the inverse of view 0's pose. With >= 2 conditioning views
    (the first ``num_cond_views`` views) all camera centres are divided by 1.35 x the largest
    conditioning-camera distance, so that camera ends at 1/1.35; with one conditioning view the
    scale is 1. Coincident conditioning cameras give a zero scale and a NaN/inf ratio, which
    the reference data pipeline treats as "resample the views".
    """
    check_tail(c2w, (4, 4), "c2w")
    if c2w.dim() < 3:
        raise ValueError(f"c2w must have shape (..., V, 4, 4), got {tuple(c2w.shape)}")
    check_num_cond_views(num_cond_views, c2w.shape[-3])
    out_dtype, dtype = compute_dtypes(c2w)
    c2w = c2w.to(dtype)
    relative = torch.linalg.inv(c2w[..., :1, :, :]) @ c2w
    centres = relative[..., :3, 3]
    distances = torch.linalg.vector_norm(centres, dim=-1)
    if num_cond_views >= 2:
        scene_scale = SCENE_SCALE_FACTOR * distances[..., :num_cond_views].amax(dim=-1)
    else:
        scene_scale = torch.ones_like(distances[..., 0])
    scene_scale_ratio = distances.amax(dim=-1) / scene_scale
    centres = centres / scene_scale[..., None, None]
    top = torch.cat([relative[..., :3, :3], centres[..., None]], dim=-1)
    normalized = torch.cat([top, relative[..., 3:, :]], dim=-2)
    cond_distances = torch.linalg.vector_norm(centres[..., :num_cond_views, :], dim=-1)
    return SceneNormalization(
        c2w=normalized.to(out_dtype),
        camera_scale=cond_distances.amax(dim=-1).to(out_dtype),
        scene_scale=scene_scale.to(out_dtype),
        scene_scale_ratio=scene_scale_ratio.to(out_dtype),
    )


def camera_tokens(
    c2w_norm: Tensor,
    fxfycxcy: Tensor,
    height: int,
    width: int,
    camera_scale: Tensor | float,
    num_cond_views: int,
    split: Split = "test",
) -> Tensor:
    """11-d camera tokens (..., V, 11) = [pose encoding (9), camera_scale, world_points_scale].

    ``camera_scale`` has the batch shape (...) (or broadcasts to it). With one conditioning view
    at split ``test`` the scale entries are (0, 1); otherwise (camera_scale, 0). The same two
    entries are used for every view of a sample.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    check_tail(c2w_norm, (4, 4), "c2w_norm")
    if c2w_norm.dim() < 3:
        raise ValueError(f"c2w_norm must have shape (..., V, 4, 4), got {tuple(c2w_norm.shape)}")
    check_num_cond_views(num_cond_views, c2w_norm.shape[-3])
    encoding = pose_encoding(c2w_norm, fxfycxcy, height, width)
    scale = torch.as_tensor(camera_scale, dtype=encoding.dtype, device=encoding.device)
    if num_cond_views == 1 and split == "test":
        scales = torch.stack([torch.zeros_like(scale), torch.ones_like(scale)], dim=-1)
    else:
        scales = torch.stack([scale, torch.zeros_like(scale)], dim=-1)
    batch = torch.broadcast_shapes(encoding.shape[:-2], scales.shape[:-1])
    num_views = encoding.shape[-2]
    encoding = encoding.expand(*batch, num_views, POSE_ENCODING_DIM)
    scales = scales[..., None, :].expand(*batch, num_views, 2)
    return torch.cat([encoding, scales], dim=-1)


def zero_conditioning_cameras(
    rays: Tensor, tokens: Tensor, num_cond_views: int, mask: Tensor | bool | None = None
) -> tuple[Tensor, Tensor]:
    """Remove the conditioning views' camera information (unposed input).

    Zeroes the rays (..., V, 6, H, W) of the first ``num_cond_views`` views and the first 9
    token entries (pose encoding) of those views; the two scale entries and all target-view data
    are kept. ``mask`` (bool over the batch dims, or a bool) selects the samples to zero; None
    zeroes every sample.
    """
    check_tail(tokens, (CAMERA_TOKEN_DIM,), "tokens")
    if rays.dim() < 4 or rays.shape[-3] != 6 or rays.shape[:-3] != tokens.shape[:-1]:
        raise ValueError(
            f"rays must have shape (..., V, 6, H, W) matching tokens (..., V, 11); got rays "
            f"{tuple(rays.shape)} and tokens {tuple(tokens.shape)}"
        )
    num_views = tokens.shape[-2]
    check_num_cond_views(num_cond_views, num_views)
    device = tokens.device
    is_cond = torch.arange(num_views, device=device) < num_cond_views  # (V,)
    if mask is not None:
        mask = torch.as_tensor(mask, device=device)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be boolean, got {mask.dtype}")
        is_cond = mask[..., None] & is_cond
    is_pose = torch.arange(CAMERA_TOKEN_DIM, device=device) < POSE_ENCODING_DIM
    rays = torch.where(is_cond[..., None, None, None], rays.new_zeros(()), rays)
    tokens = torch.where(is_cond[..., None] & is_pose, tokens.new_zeros(()), tokens)
    return rays, tokens


def build_camera_conditioning(
    c2w_norm: Tensor,
    fxfycxcy: Tensor,
    height: int,
    width: int,
    camera_scale: Tensor | float,
    num_cond_views: int,
    split: Split = "test",
    zero_cond_cameras: bool | Tensor = False,
) -> tuple[Tensor, Tensor]:
    """Ray maps (..., V, 6, H, W) and camera tokens (..., V, 11) of normalised cameras.

    ``zero_cond_cameras`` (a bool, or a bool tensor over the batch dims) removes the
    conditioning views' camera information, see :func:`zero_conditioning_cameras`.
    """
    tokens = camera_tokens(
        c2w_norm, fxfycxcy, height, width, camera_scale, num_cond_views, split=split
    )
    rays = plucker_rays(c2w_norm, fxfycxcy, height, width)
    batch = tokens.shape[:-1]
    rays = rays.expand(*batch, *rays.shape[-3:]).to(tokens.dtype)
    if isinstance(zero_cond_cameras, Tensor):
        return zero_conditioning_cameras(rays, tokens, num_cond_views, zero_cond_cameras)
    if zero_cond_cameras:
        return zero_conditioning_cameras(rays, tokens, num_cond_views)
    return rays, tokens
