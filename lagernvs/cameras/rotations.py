"""Rotation matrices <-> unit quaternions (scalar-last ``(x, y, z, w)``, ``w >= 0``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_tail, compute_dtypes


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
    check_tail(matrix, (3, 3), "matrix")
    out_dtype, dtype = compute_dtypes(matrix)
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
    check_tail(quaternion, (4,), "quaternion")
    out_dtype, dtype = compute_dtypes(quaternion)
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
