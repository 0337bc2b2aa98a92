"""Argument checks and dtype promotion shared by the camera functions."""

from __future__ import annotations

import torch
from torch import Tensor


def check_tail(tensor: Tensor, tail: tuple[int, ...], name: str) -> None:
    """Raise if ``tensor`` is not a floating tensor whose trailing dims are ``tail``."""
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}; cast it")
    if tensor.dim() < len(tail) or tuple(tensor.shape[tensor.dim() - len(tail) :]) != tail:
        expected = ", ".join(["..."] + [str(d) for d in tail])
        raise ValueError(f"{name} must have shape ({expected}), got {tuple(tensor.shape)}")


def check_size(height: int, width: int) -> None:
    """Raise unless the image size is positive."""
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")


def check_num_cond_views(num_cond_views: int, num_views: int) -> None:
    """Raise unless 1 <= ``num_cond_views`` <= ``num_views``."""
    if not 1 <= num_cond_views <= num_views:
        raise ValueError(
            f"num_cond_views must be in [1, {num_views}] (the number of views), "
            f"got {num_cond_views}"
        )


def compute_dtypes(*tensors: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(output dtype, compute dtype): promoted input dtype, computed in at least float32."""
    out = tensors[0].dtype
    for tensor in tensors[1:]:
        out = torch.promote_types(out, tensor.dtype)
    return out, torch.promote_types(out, torch.float32)
