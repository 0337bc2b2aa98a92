"""Camera maths of LagerNVS, numerically matching the reference implementation.

Conventions (see the reference fixture README): poses are OpenCV camera-to-world 4x4 matrices
(x right, y down, z forward), intrinsics are ``fxfycxcy`` in pixels of the image they belong to,
quaternions are scalar-last ``(x, y, z, w)`` with ``w >= 0``. Every function is batched over
arbitrary leading dimensions (broadcast between its tensor arguments), vectorised, keeps the
device and returns the promoted dtype of its inputs. Half-precision inputs are computed in
float32 and cast back, so rays and tokens stay accurate.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "SCENE_SCALE_FACTOR",
    "SceneNormalization",
    "build_camera_conditioning",
    "c2w_to_w2c",
    "camera_tokens",
    "center_crop_size",
    "crop_resize_intrinsics",
    "fxfycxcy_to_K",
    "matrix_to_quaternion",
    "normalize_scene",
    "opengl_to_opencv_c2w",
    "plucker_rays",
    "pose_encoding",
    "quaternion_to_matrix",
    "validate_cameras",
    "w2c_to_c2w",
    "zero_conditioning_cameras",
]

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


def _check_tail(tensor: Tensor, tail: tuple[int, ...], name: str) -> None:
    """Raise if ``tensor`` is not a floating tensor whose trailing dims are ``tail``."""
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}; cast it")
    if tensor.dim() < len(tail) or tuple(tensor.shape[tensor.dim() - len(tail) :]) != tail:
        expected = ", ".join(["..."] + [str(d) for d in tail])
        raise ValueError(f"{name} must have shape ({expected}), got {tuple(tensor.shape)}")


def _check_size(height: int, width: int) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")


def _check_num_cond_views(num_cond_views: int, num_views: int) -> None:
    if not 1 <= num_cond_views <= num_views:
        raise ValueError(
            f"num_cond_views must be in [1, {num_views}] (the number of views), "
            f"got {num_cond_views}"
        )


def _dtypes(*tensors: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(output dtype, compute dtype): promoted input dtype, computed in at least float32."""
    out = tensors[0].dtype
    for tensor in tensors[1:]:
        out = torch.promote_types(out, tensor.dtype)
    return out, torch.promote_types(out, torch.float32)


def fxfycxcy_to_K(fxfycxcy: Tensor) -> Tensor:  # noqa: N802 (K is the standard name)
    """(..., 4) pinhole intrinsics -> (..., 3, 3) K matrices, same dtype and device."""
    _check_tail(fxfycxcy, (4,), "fxfycxcy")
    fx, fy, cx, cy = fxfycxcy.unbind(-1)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = (fx, zero, cx, zero, fy, cy, zero, zero, one)
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def plucker_rays(c2w: Tensor, fxfycxcy: Tensor, height: int, width: int) -> Tensor:
    """Plücker ray map (..., 6, H, W) of OpenCV c2w cameras with the given intrinsics.

    Pixel (row i, column j) is sampled at its centre (j + 0.5, i + 0.5). The camera-frame
    direction K^-1 (u, v, 1) is normalised, then rotated to world; channels 0-2 hold the moment
    o x d (o = camera centre), channels 3-5 the unit direction d.
    """
    _check_tail(c2w, (4, 4), "c2w")
    _check_tail(fxfycxcy, (4,), "fxfycxcy")
    _check_size(height, width)
    out_dtype, dtype = _dtypes(c2w, fxfycxcy)
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


def _sqrt_positive_part(x: Tensor) -> Tensor:
    """sqrt(max(x, 0)) with a zero (not infinite) gradient where x <= 0."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), 0.0)


def matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4), scalar-last, w >= 0.

    Each of w, x, y, z can be recovered from the matrix divided by one of the four components;
    the candidate with the largest divisor is taken, which is stable for every rotation. For
    exact 180-degree rotations (w = 0) the overall sign is the one this candidate gives.
    """
    _check_tail(matrix, (3, 3), "matrix")
    out_dtype, dtype = _dtypes(matrix)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = matrix.to(dtype).flatten(-2).unbind(-1)
    # 2|w|, 2|x|, 2|y|, 2|z| from the diagonal.
    twice_abs = _sqrt_positive_part(
        torch.stack(
            [
                1.0 + m00 + m11 + m22,
                1.0 + m00 - m11 - m22,
                1.0 - m00 + m11 - m22,
                1.0 - m00 - m11 + m22,
            ],
            dim=-1,
        )
    )
    # Row k holds 4 * q_k * (w, x, y, z); dividing by 2 * (2|q_k|) gives the quaternion.
    candidates = torch.stack(
        [
            torch.stack([twice_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, twice_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, twice_abs[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, twice_abs[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    )
    candidates = candidates / (2.0 * twice_abs[..., None].clamp_min(0.1))
    best = twice_abs.argmax(dim=-1)[..., None, None].expand(*twice_abs.shape[:-1], 1, 4)
    wxyz = candidates.gather(-2, best).squeeze(-2)
    xyzw = wxyz[..., [1, 2, 3, 0]]
    return torch.where(xyzw[..., 3:] < 0, -xyzw, xyzw).to(out_dtype)


def quaternion_to_matrix(quaternion: Tensor) -> Tensor:
    """Quaternions (..., 4), scalar-last, any non-zero norm -> rotation matrices (..., 3, 3)."""
    _check_tail(quaternion, (4,), "quaternion")
    out_dtype, dtype = _dtypes(quaternion)
    q = quaternion.to(dtype)
    x, y, z, w = q.unbind(-1)
    two_s = 2.0 / (q * q).sum(-1)
    entries = (
        1 - two_s * (y * y + z * z),
        two_s * (x * y - z * w),
        two_s * (x * z + y * w),
        two_s * (x * y + z * w),
        1 - two_s * (x * x + z * z),
        two_s * (y * z - x * w),
        two_s * (x * z - y * w),
        two_s * (y * z + x * w),
        1 - two_s * (x * x + y * y),
    )
    return torch.stack(entries, dim=-1).unflatten(-1, (3, 3)).to(out_dtype)


def pose_encoding(c2w: Tensor, fxfycxcy: Tensor, height: int, width: int) -> Tensor:
    """9-d VGGT pose encoding (..., 9) = [t (3), q xyzw (4), fov_h, fov_w] of c2w cameras.

    As in the reference, the *camera-to-world* matrix is encoded: t is the camera centre and q
    the quaternion of the c2w rotation. fov_h = 2 atan(H / (2 fy)), fov_w = 2 atan(W / (2 fx)),
    with H x W the image size the intrinsics refer to.
    """
    _check_tail(c2w, (4, 4), "c2w")
    _check_tail(fxfycxcy, (4,), "fxfycxcy")
    _check_size(height, width)
    out_dtype, dtype = _dtypes(c2w, fxfycxcy)
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
    _check_tail(c2w, (4, 4), "c2w")
    if c2w.dim() < 3:
        raise ValueError(f"c2w must have shape (..., V, 4, 4), got {tuple(c2w.shape)}")
    _check_num_cond_views(num_cond_views, c2w.shape[-3])
    out_dtype, dtype = _dtypes(c2w)
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
    _check_tail(c2w_norm, (4, 4), "c2w_norm")
    if c2w_norm.dim() < 3:
        raise ValueError(f"c2w_norm must have shape (..., V, 4, 4), got {tuple(c2w_norm.shape)}")
    _check_num_cond_views(num_cond_views, c2w_norm.shape[-3])
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
    _check_tail(tokens, (CAMERA_TOKEN_DIM,), "tokens")
    if rays.dim() < 4 or rays.shape[-3] != 6 or rays.shape[:-3] != tokens.shape[:-1]:
        raise ValueError(
            f"rays must have shape (..., V, 6, H, W) matching tokens (..., V, 11); got rays "
            f"{tuple(rays.shape)} and tokens {tuple(tokens.shape)}"
        )
    num_views = tokens.shape[-2]
    _check_num_cond_views(num_cond_views, num_views)
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


def center_crop_size(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int]:
    """(crop_h, crop_w) of the largest centred crop of ``src_hw`` with the aspect of ``dst_hw``.

    If the target is relatively taller the full height is kept and the width truncated, else
    the full width is kept (the reference's float arithmetic, truncation included).
    """
    (src_h, src_w), (dst_h, dst_w) = src_hw, dst_hw
    if min(src_h, src_w, dst_h, dst_w) <= 0:
        raise ValueError(f"image sizes must be positive, got src {src_hw} and dst {dst_hw}")
    target_ratio = dst_h / dst_w
    if target_ratio > src_h / src_w:
        return int(src_h), int(src_h / target_ratio)
    return int(src_w * target_ratio), int(src_w)


def crop_resize_intrinsics(
    fxfycxcy: Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> Tensor:
    """Intrinsics (..., 4) after the centred crop of :func:`center_crop_size` and a resize.

    The crop offset is floor((src - crop) / 2) per axis (no half-pixel terms), as the reference
    computes it for the intrinsics.
    """
    _check_tail(fxfycxcy, (4,), "fxfycxcy")
    crop_h, crop_w = center_crop_size(src_hw, dst_hw)
    offset_y, offset_x = (src_hw[0] - crop_h) // 2, (src_hw[1] - crop_w) // 2
    scale_y, scale_x = dst_hw[0] / crop_h, dst_hw[1] / crop_w
    fx, fy, cx, cy = fxfycxcy.unbind(-1)
    return torch.stack(
        [fx * scale_x, fy * scale_y, (cx - offset_x) * scale_x, (cy - offset_y) * scale_y], dim=-1
    )


def opengl_to_opencv_c2w(c2w: Tensor) -> Tensor:
    """OpenGL / NeRF / Blender / instant-ngp c2w (x right, y up, z back) -> OpenCV c2w.

    Flips the camera's y and z axes (negates columns 1 and 2); the camera centre is unchanged.
    """
    _check_tail(c2w, (4, 4), "c2w")
    flip = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=c2w.dtype, device=c2w.device)
    return c2w * flip


def _invert(matrix: Tensor, name: str) -> Tensor:
    _check_tail(matrix, (4, 4), name)
    out_dtype, dtype = _dtypes(matrix)
    return torch.linalg.inv(matrix.to(dtype)).to(out_dtype)


def w2c_to_c2w(w2c: Tensor) -> Tensor:
    """World-to-camera (..., 4, 4) -> camera-to-world (general 4x4 inverse, like the reference)."""
    return _invert(w2c, "w2c")


def c2w_to_w2c(c2w: Tensor) -> Tensor:
    """Camera-to-world (..., 4, 4) -> world-to-camera."""
    return _invert(c2w, "c2w")


def validate_cameras(c2w: Tensor, fxfycxcy: Tensor | None = None, atol: float = 1e-3) -> None:
    """Raise ValueError if ``c2w`` (..., 4, 4) / ``fxfycxcy`` (..., 4) are not usable cameras.

    Checks: shapes and broadcastable batch shapes, finiteness, a last row of (0, 0, 0, 1), an
    invertible, orthonormal rotation with determinant +1 (within ``atol``), positive focal
    lengths. This synchronises with the device; call it on inputs, not inside training steps.
    """
    _check_tail(c2w, (4, 4), "c2w")
    if fxfycxcy is not None:
        _check_tail(fxfycxcy, (4,), "fxfycxcy")
        try:
            torch.broadcast_shapes(c2w.shape[:-2], fxfycxcy.shape[:-1])
        except RuntimeError as error:
            raise ValueError(
                f"c2w batch shape {tuple(c2w.shape[:-2])} and fxfycxcy batch shape "
                f"{tuple(fxfycxcy.shape[:-1])} do not broadcast; pass one intrinsics row per "
                "camera"
            ) from error
    if c2w.numel() > 0:
        _validate_poses(c2w.to(_dtypes(c2w)[1]), atol)
    if fxfycxcy is not None and fxfycxcy.numel() > 0:
        if not torch.isfinite(fxfycxcy).all():
            raise ValueError("fxfycxcy contains NaN or infinite values; fix those intrinsics")
        min_focal = float(fxfycxcy[..., :2].min())
        if min_focal <= 0:
            raise ValueError(
                f"focal lengths must be positive, got min {min_focal:.3g}; pass fxfycxcy in "
                "pixels (fx, fy, cx, cy)"
            )


def _validate_poses(c2w: Tensor, atol: float) -> None:
    """Numeric checks of :func:`validate_cameras` on a non-empty (..., 4, 4) tensor."""
    finite = torch.isfinite(c2w).flatten(-2).all(-1)
    if not finite.all():
        raise ValueError(
            f"c2w contains NaN or infinite values ({int((~finite).sum())} camera(s)); fix or "
            "drop those poses"
        )
    last_row = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype, device=c2w.device)
    row_error = float((c2w[..., 3, :] - last_row).abs().max())
    if row_error > atol:
        raise ValueError(
            f"c2w last row must be (0, 0, 0, 1), deviates by {row_error:.3g}; pass 4x4 "
            "homogeneous camera-to-world matrices"
        )
    rotation = c2w[..., :3, :3]
    det = torch.linalg.det(rotation)
    min_abs_det = float(det.abs().min())
    if min_abs_det < atol:
        raise ValueError(
            f"c2w is not invertible (rotation determinant {min_abs_det:.3g}); pass full-rank "
            "camera-to-world poses"
        )
    if float(det.min()) < 0:
        raise ValueError(
            "c2w rotation has determinant < 0 (a reflection, i.e. a left-handed camera frame); "
            "flip one axis so that every pose is a proper rotation in OpenCV convention"
        )
    identity = torch.eye(3, dtype=c2w.dtype, device=c2w.device)
    ortho_error = float((rotation.transpose(-1, -2) @ rotation - identity).abs().max())
    if ortho_error > atol:
        raise ValueError(
            f"c2w rotation is not orthonormal (|R^T R - I| up to {ortho_error:.3g}); remove "
            "scale/shear from the poses or re-orthonormalise the rotations"
        )
