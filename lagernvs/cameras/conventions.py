"""Camera conventions: K matrices, crop/resize intrinsics, OpenGL and w2c converters, validation.

Everything that turns cameras as users hold them into OpenCV camera-to-world matrices and
``fxfycxcy`` intrinsics of the image the model sees, and the check that they are usable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_tail, compute_dtypes


def fxfycxcy_to_K(fxfycxcy: Tensor) -> Tensor:  # noqa: N802 (K is the standard name)
    """(..., 4) pinhole intrinsics -> (..., 3, 3) K matrices, same dtype and device."""
    check_tail(fxfycxcy, (4,), "fxfycxcy")
    fx, fy, cx, cy = fxfycxcy.unbind(-1)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = (fx, zero, cx, zero, fy, cy, zero, zero, one)
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


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
    check_tail(fxfycxcy, (4,), "fxfycxcy")
    crop_h, crop_w = center_crop_size(src_hw, dst_hw)
    if min(crop_h, crop_w) < 1:
        raise ValueError(
            f"a {src_hw[0]}x{src_hw[1]} camera has no centred crop of the aspect ratio of "
            f"{dst_hw[0]}x{dst_hw[1]} (it would be empty); choose a size closer to its shape"
        )
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
    check_tail(c2w, (4, 4), "c2w")
    flip = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=c2w.dtype, device=c2w.device)
    return c2w * flip


def _invert(matrix: Tensor, name: str) -> Tensor:
    check_tail(matrix, (4, 4), name)
    out_dtype, dtype = compute_dtypes(matrix)
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
    check_tail(c2w, (4, 4), "c2w")
    if fxfycxcy is not None:
        check_tail(fxfycxcy, (4,), "fxfycxcy")
        try:
            torch.broadcast_shapes(c2w.shape[:-2], fxfycxcy.shape[:-1])
        except RuntimeError as error:
            raise ValueError(
                f"c2w batch shape {tuple(c2w.shape[:-2])} and fxfycxcy batch shape "
                f"{tuple(fxfycxcy.shape[:-1])} do not broadcast; pass one intrinsics row per "
                "camera"
            ) from error
    if c2w.numel() > 0:
        _validate_poses(c2w.to(compute_dtypes(c2w)[1]), atol)
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
