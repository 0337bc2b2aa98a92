"""LagerNVSModel: the deterministic encoder-decoder (diffusers ModelMixin / ConfigMixin)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .checkpoints import load_original_state_dict, load_original_weights
from .encoder import Reconstructor
from .presets import preset_config
from .renderer import RAY_CHANNELS, Renderer


def _require_finite(tensor: torch.Tensor, name: str) -> None:
    if torch.compiler.is_compiling():
        return
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the cameras/inputs")


def _require_shape(
    tensor: torch.Tensor, name: str, layout: str, rank: int, sizes: Mapping[int, int]
) -> None:
    """Raise unless ``tensor`` has ``rank`` dims and ``shape[axis] == size`` for all ``sizes``."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a tensor {layout}, got {type(tensor).__name__}")
    if tensor.dim() != rank or any(tensor.shape[axis] != size for axis, size in sizes.items()):
        shape = tuple(tensor.shape)
        raise ValueError(f"{name} must be a {rank}-d tensor {layout}, got shape {shape}")


class LagerNVSModel(ModelMixin, ConfigMixin):
    """LagerNVS: encode source views once into scene tokens, render any target rays from them.

    All sizes are config values; the defaults are the official full-size ``EncDecVitB/8`` model.
    Build official models with :meth:`from_preset` or :meth:`from_original_checkpoint`.

    Args:
        attention_type: renderer variant, ``"full_attention"``, ``"cross_attention"`` or
            ``"bidirectional_cross_attention"``.
        image_size: default render size (H, W) of this model.
        encoder_dim, dino_depth, dino_heads, aggregator_depth, aggregator_heads: encoder width,
            depth of the DINOv2 patch embedder and number of VGGT frame/global block pairs.
        encoder_image_size: long side the source images are resized to (also sets the DINO
            position table: (encoder_image_size / encoder_patch_size)^2 + 1 entries).
        encoder_patch_size: DINO patch size.
        dino_num_register_tokens, aggregator_num_register_tokens: register token counts.
        encoder_mlp_ratio, rope_frequency: encoder MLP ratio and 2D RoPE base frequency.
        camera_token_dim: length of the camera token (11).
        renderer_width, renderer_heads, renderer_depth, patch_size: renderer transformer size and
            the ray-map patch size (H and W of rendered views must be multiples of it).
        renderer_num_registers, renderer_mlp_ratio: renderer register tokens and MLP ratio.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        attention_type: str = "bidirectional_cross_attention",
        image_size: tuple[int, int] = (256, 256),
        encoder_dim: int = 1024,
        dino_depth: int = 24,
        dino_heads: int = 16,
        aggregator_depth: int = 24,
        aggregator_heads: int = 16,
        encoder_image_size: int = 518,
        encoder_patch_size: int = 14,
        dino_num_register_tokens: int = 4,
        aggregator_num_register_tokens: int = 4,
        encoder_mlp_ratio: float = 4.0,
        rope_frequency: float = 100.0,
        camera_token_dim: int = 11,
        renderer_width: int = 768,
        renderer_heads: int = 12,
        renderer_depth: int = 12,
        patch_size: int = 8,
        renderer_num_registers: int = 4,
        renderer_mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.reconstructor = Reconstructor(
            dim=encoder_dim,
            depth=aggregator_depth,
            num_heads=aggregator_heads,
            dino_depth=dino_depth,
            dino_heads=dino_heads,
            image_size=encoder_image_size,
            patch_size=encoder_patch_size,
            dino_num_register_tokens=dino_num_register_tokens,
            num_register_tokens=aggregator_num_register_tokens,
            mlp_ratio=encoder_mlp_ratio,
            rope_frequency=rope_frequency,
            camera_token_dim=camera_token_dim,
            output_dim=renderer_width,
        )
        self.renderer = Renderer(
            attention_type=attention_type,
            width=renderer_width,
            depth=renderer_depth,
            num_heads=renderer_heads,
            patch_size=patch_size,
            num_registers=renderer_num_registers,
            mlp_ratio=renderer_mlp_ratio,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """Training init: truncated-normal linears, small tokens, zero output layer.

        The zero output layer (as in the reference) makes a fresh model render uniform grey.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        aggregator = self.reconstructor.vggt["aggregator"]
        dino = aggregator.patch_embed
        nn.init.trunc_normal_(dino.pos_embed, std=0.02)
        for token in (dino.cls_token, dino.register_tokens, aggregator.camera_token):
            nn.init.normal_(token, std=1e-6)
        nn.init.normal_(aggregator.register_token, std=1e-6)
        nn.init.normal_(self.renderer.per_view_register_tokens, std=0.02)
        nn.init.zeros_(self.renderer.final_layer.linear.weight)

    @property
    def image_size(self) -> tuple[int, int]:
        """Default render size (H, W) of this model."""
        height, width = self.config.image_size
        return int(height), int(width)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> LagerNVSModel:
        """A freshly initialised model of preset ``name`` (see ``presets.PRESETS``)."""
        return cls(**cls._resolve_config(name, overrides))

    @classmethod
    def _resolve_config(
        cls, preset_or_config: str | Mapping[str, Any], overrides: Mapping[str, Any]
    ) -> dict[str, Any]:
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        if isinstance(preset_or_config, str):
            config = preset_config(preset_or_config)
        else:
            config = {k: v for k, v in preset_or_config.items() if not k.startswith("_")}
        config.update(overrides)
        unknown = sorted(set(config) - accepted)
        if unknown:
            raise ValueError(
                f"unknown LagerNVSModel config keys {unknown}; valid keys: {sorted(accepted)}"
            )
        return config

    @classmethod
    def from_original_checkpoint(
        cls,
        path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
        preset_or_config: str | Mapping[str, Any],
        **overrides: Any,
    ) -> LagerNVSModel:
        """Load an official LagerNVS ``model.pt`` (``{"model": state_dict}``) or state dict.

        Loading is strict (no missing or unexpected keys, equal shapes) and names the variant a
        checkpoint of another attention type implies. ``preset_or_config`` is a preset name or a
        config mapping (e.g. ``model.config``); ``overrides`` replace single config values.
        """
        from accelerate import init_empty_weights

        config = cls._resolve_config(preset_or_config, overrides)
        state_dict = load_original_state_dict(path_or_state_dict)
        with init_empty_weights(include_buffers=False):
            model = cls(**config)
        load_original_weights(model, state_dict)
        return model.eval()

    def _check_images_and_tokens(self, images: torch.Tensor, cam_tokens: torch.Tensor) -> None:
        """Shapes of source images (B, V, 3, H, W) and camera tokens (B, V, 11)."""
        _require_shape(images, "images", "(B, V, 3, H, W)", 5, {2: 3})
        token_dim = self.config.camera_token_dim
        _require_shape(cam_tokens, "cam_tokens", f"(B, V, {token_dim})", 3, {2: token_dim})
        if cam_tokens.shape[:2] != images.shape[:2]:
            raise ValueError(
                f"images have (B, V) = {tuple(images.shape[:2])} but cam_tokens have "
                f"{tuple(cam_tokens.shape[:2])}; pass one camera token per image"
            )
        height, width = images.shape[-2:]
        if min(self.reconstructor.input_size(height, width)) < self.config.encoder_patch_size:
            raise ValueError(
                f"images of size {height}x{width} are too elongated for the encoder "
                f"(resized short side < {self.config.encoder_patch_size}); crop them"
            )

    def _check_rays(self, rays: torch.Tensor, name: str) -> None:
        """Shape (B, V, 6, H, W) with H and W multiples of the renderer patch size."""
        _require_shape(rays, name, f"(B, V, {RAY_CHANNELS}, H, W)", 5, {2: RAY_CHANNELS})
        height, width = rays.shape[-2:]
        p = self.config.patch_size
        if height % p or width % p:
            raise ValueError(
                f"{name} are {height}x{width}; H and W must be multiples of the renderer patch "
                f"size {p}: crop or resize the views"
            )

    def encode(self, images: torch.Tensor, cam_tokens: torch.Tensor) -> torch.Tensor:
        """Encode source views into scene tokens.

        Args:
            images: (B, V, 3, H, W) in [0, 1].
            cam_tokens: (B, V, 11) camera tokens (see ``lagernvs.cameras``).

        Returns:
            (B, V, Np, renderer_width) scene tokens, Np the number of encoder patches per view.
        """
        self._check_images_and_tokens(images, cam_tokens)
        _require_finite(images, "images")
        _require_finite(cam_tokens, "cam_tokens")
        return self.reconstructor(images, cam_tokens)

    def render(
        self,
        scene_tokens: torch.Tensor,
        target_rays: torch.Tensor,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Render target views from scene tokens.

        Args:
            scene_tokens: (B, Vc, Np, W) from :meth:`encode`.
            target_rays: (B, T, 6, H, W) Plücker ray maps, H and W multiples of ``patch_size``.
            chunk_size: number of target views rendered at once (None: all); bounds memory.

        Returns:
            (B, T, 3, H, W) images in [0, 1].
        """
        width = self.config.renderer_width
        _require_shape(scene_tokens, "scene_tokens", f"(B, V, Np, {width})", 4, {3: width})
        self._check_rays(target_rays, "target_rays")
        if target_rays.shape[0] != scene_tokens.shape[0]:
            raise ValueError(
                f"scene_tokens have batch size {scene_tokens.shape[0]} but target_rays have "
                f"{target_rays.shape[0]}"
            )
        if target_rays.shape[1] == 0:
            raise ValueError("target_rays hold no target view (T = 0)")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        _require_finite(scene_tokens, "scene_tokens")
        _require_finite(target_rays, "target_rays")
        return self.renderer(scene_tokens, target_rays, chunk_size)

    def forward(
        self,
        images: torch.Tensor,
        rays: torch.Tensor,
        cam_tokens: torch.Tensor,
        num_cond_views: int,
    ) -> torch.Tensor:
        """Reference forward pass: the first ``num_cond_views`` views condition, the rest render.

        Args:
            images: (B, V, 3, H, W) in [0, 1]; target images are not read.
            rays: (B, V, 6, H, W) ray maps; only the target views' are read.
            cam_tokens: (B, V, 11); only the conditioning views' are read.
            num_cond_views: number of conditioning views, 1 <= num_cond_views < V.

        Returns:
            (B, V, 3, H, W): the conditioning images as given, then the rendered targets.
        """
        self._check_images_and_tokens(images, cam_tokens)
        self._check_rays(rays, "rays")
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
        cond_images, cond_tokens = images[:, :num_cond_views], cam_tokens[:, :num_cond_views]
        target_rays = rays[:, num_cond_views:]
        _require_finite(cond_images, "conditioning images")
        _require_finite(cond_tokens, "conditioning cam_tokens")
        _require_finite(target_rays, "target rays")
        scene_tokens = self.reconstructor(cond_images, cond_tokens)
        rendered = self.renderer(scene_tokens, target_rays)
        return torch.cat([cond_images, rendered.to(images.dtype)], dim=1)
