"""Multi-view geometry of rendered depth: unprojection, reprojection and visibility masks.

Known depth and cameras tell exactly which target pixels the source views see, which the
spread test and masked metrics need.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lagernvs.cameras import c2w_to_w2c

_EPS = 1e-9


def unproject_depth(depth: Tensor, c2w: Tensor, fxfycxcy: Tensor) -> Tensor:
    """World points (..., H, W, 3) float64 of the pixel centres of views with depth (..., H, W)."""
    height, width = depth.shape[-2:]
    dtype = torch.float64
    fx, fy, cx, cy = (value[..., None, None] for value in fxfycxcy.to(dtype).unbind(-1))
    u = torch.arange(width, dtype=dtype, device=depth.device) + 0.5
    v = torch.arange(height, dtype=dtype, device=depth.device)[:, None] + 0.5
    z = depth.to(dtype)
    cam = torch.stack(torch.broadcast_tensors((u - cx) / fx * z, (v - cy) / fy * z, z), dim=-1)
    c2w = c2w.to(dtype)[..., None, None, :, :]
    return (c2w[..., :3, :3] @ cam[..., None])[..., 0] + c2w[..., :3, 3]


def project_depth(
    depth: Tensor, c2w: Tensor, fxfycxcy: Tensor, c2w_dst: Tensor, fxfycxcy_dst: Tensor
) -> tuple[Tensor, Tensor]:
    """Pixel centres of views with z-depth (..., H, W) moved to other cameras.

    Returns pixel coordinates (..., H, W, 2) (x, y; pixel centres at +0.5) in the destination
    cameras and the points' z-depth there (..., H, W), float64.
    """
    world = unproject_depth(depth, c2w, fxfycxcy)
    w2c = c2w_to_w2c(c2w_dst.to(torch.float64))[..., None, None, :, :]
    cam = (w2c[..., :3, :3] @ world[..., None])[..., 0] + w2c[..., :3, 3]
    z = cam[..., 2]
    fx, fy, cx, cy = (value[..., None, None] for value in fxfycxcy_dst.to(torch.float64).unbind(-1))
    safe_z = torch.where(z.abs() < _EPS, torch.full_like(z, _EPS), z)
    xy = torch.stack([fx * cam[..., 0] / safe_z + cx, fy * cam[..., 1] / safe_z + cy], dim=-1)
    return xy, z


def visibility_mask(
    depth: Tensor,
    c2w: Tensor,
    fxfycxcy: Tensor,
    source_depth: Tensor,
    source_c2w: Tensor,
    source_fxfycxcy: Tensor,
    rel_tol: float = 0.01,
) -> Tensor:
    """Bool mask (H, W) of target pixels whose surface point some source view sees.

    A target pixel (depth (H, W), camera c2w (4, 4), fxfycxcy (4,)) is seen by source view s
    (source_depth (S, H', W'), source_c2w (S, 4, 4), source_fxfycxcy (S, 4)) when its 3D point
    projects inside s in front of the camera and is not occluded there: its z-depth in s is at
    most (1 + rel_tol) times the source depth there (inverse depth interpolated bilinearly).
    """
    if depth.ndim != 2 or source_depth.ndim != 3:
        raise ValueError(
            f"visibility_mask expects depth (H, W) and source_depth (S, H, W), "
            f"got {tuple(depth.shape)} and {tuple(source_depth.shape)}"
        )
    num_sources, src_h, src_w = source_depth.shape
    xy, z = project_depth(
        depth.expand(num_sources, -1, -1),
        c2w.expand(num_sources, 4, 4),
        fxfycxcy.expand(num_sources, 4),
        source_c2w,
        source_fxfycxcy,
    )
    x, y = xy[..., 0], xy[..., 1]
    inside = (z > _EPS) & (x >= 0) & (x < src_w) & (y >= 0) & (y < src_h)
    # Inverse depth is affine in the image over a plane, so bilinear interpolation of it is
    # exact on planar patches, even at grazing angles; at occlusion edges it mixes foreground
    # and background, which errs towards "occluded" for the background.
    grid = torch.stack([2.0 * x / src_w - 1.0, 2.0 * y / src_h - 1.0], dim=-1)
    grid = grid.nan_to_num(0.0).clamp(-2.0, 2.0)
    inverse = 1.0 / source_depth.to(torch.float64).clamp_min(_EPS)[:, None]
    seen_inverse = torch.nn.functional.grid_sample(
        inverse, grid, mode="bilinear", padding_mode="border", align_corners=False
    )[:, 0]
    unoccluded = z * seen_inverse <= 1.0 + rel_tol
    return (inside & unoccluded).any(dim=0)
