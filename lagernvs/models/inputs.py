"""Shape checks of LagerNVSModel inputs, called at the boundaries (pipeline, CLI, data readers).

The model's ``forward``, ``encode`` and ``render`` only compute; a caller that takes tensors from
a user checks them here first and gets a one-line ValueError naming the problem and the fix.
These checks read shapes only, never values, so they never synchronise with the device.
``config`` is the model's config (``model.config``) or any mapping with the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .encoder import encoder_input_size
from .renderer import RAY_CHANNELS


def _require_shape(
    tensor: torch.Tensor, name: str, layout: str, rank: int, sizes: Mapping[int, int]
) -> None:
    """Raise unless ``tensor`` has ``rank`` dims and ``shape[axis] == size`` for all ``sizes``."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a tensor {layout}, got {type(tensor).__name__}")
    if tensor.dim() != rank or any(tensor.shape[axis] != size for axis, size in sizes.items()):
        shape = tuple(tensor.shape)
        raise ValueError(f"{name} must be a {rank}-d tensor {layout}, got shape {shape}")


def check_encoder_inputs(
    config: Mapping[str, Any], images: torch.Tensor, cam_tokens: torch.Tensor
) -> None:
    """Source images (B, V, 3, H, W) and camera tokens (B, V, 11) of :meth:`encode`."""
    _require_shape(images, "images", "(B, V, 3, H, W)", 5, {2: 3})
    token_dim = config["camera_token_dim"]
    _require_shape(cam_tokens, "cam_tokens", f"(B, V, {token_dim})", 3, {2: token_dim})
    if cam_tokens.shape[:2] != images.shape[:2]:
        raise ValueError(
            f"images have (B, V) = {tuple(images.shape[:2])} but cam_tokens have "
            f"{tuple(cam_tokens.shape[:2])}; pass one camera token per image"
        )
    height, width = images.shape[-2:]
    patch = config["encoder_patch_size"]
    if min(encoder_input_size(height, width, config["encoder_image_size"], patch)) < patch:
        raise ValueError(
            f"images of size {height}x{width} are too elongated for the encoder "
            f"(resized short side < {patch}); crop them"
        )


def check_rays(config: Mapping[str, Any], rays: torch.Tensor, name: str = "rays") -> None:
    """Ray maps (B, V, 6, H, W) with H and W multiples of the renderer patch size."""
    _require_shape(rays, name, f"(B, V, {RAY_CHANNELS}, H, W)", 5, {2: RAY_CHANNELS})
    height, width = rays.shape[-2:]
    p = config["patch_size"]
    if height % p or width % p:
        raise ValueError(
            f"{name} are {height}x{width}; H and W must be multiples of the renderer patch "
            f"size {p}: crop or resize the views"
        )


def check_chunk_size(chunk_size: int | None) -> None:
    """The number of target views rendered at once: a positive int, or None for all."""
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def check_render_inputs(
    config: Mapping[str, Any],
    scene_tokens: torch.Tensor,
    target_rays: torch.Tensor,
    chunk_size: int | None = None,
) -> None:
    """Scene tokens (B, V, Np, W), target rays (B, T, 6, H, W) and chunk size of :meth:`render`."""
    width = config["renderer_width"]
    _require_shape(scene_tokens, "scene_tokens", f"(B, V, Np, {width})", 4, {3: width})
    check_rays(config, target_rays, "target_rays")
    if target_rays.shape[0] != scene_tokens.shape[0]:
        raise ValueError(
            f"scene_tokens have batch size {scene_tokens.shape[0]} but target_rays have "
            f"{target_rays.shape[0]}"
        )
    if target_rays.shape[1] == 0:
        raise ValueError("target_rays hold no target view (T = 0)")
    check_chunk_size(chunk_size)


def check_forward_inputs(
    config: Mapping[str, Any],
    images: torch.Tensor,
    rays: torch.Tensor,
    cam_tokens: torch.Tensor,
    num_cond_views: int,
) -> None:
    """Inputs of the reference forward pass: all views' images, rays and tokens, and the split."""
    check_encoder_inputs(config, images, cam_tokens)
    check_rays(config, rays)
    if rays.shape[:2] != images.shape[:2] or rays.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"rays {tuple(rays.shape)} do not match images {tuple(images.shape)} in batch, "
            "view count or image size"
        )
    views = images.shape[1]
    if isinstance(num_cond_views, bool) or not isinstance(num_cond_views, int):
        raise ValueError(f"num_cond_views must be an int, got {type(num_cond_views).__name__}")
    if not 1 <= num_cond_views < views:
        raise ValueError(
            f"num_cond_views must be in [1, {views - 1}] for {views} views (at least one "
            f"conditioning and one target view), got {num_cond_views}"
        )
