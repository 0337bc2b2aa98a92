"""LagerNVSModel: the deterministic encoder-decoder (diffusers ModelMixin / ConfigMixin)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from .checkpoints import (
    check_finite,
    check_loading_info,
    load_original_state_dict,
    load_original_weights,
    local_folder,
)
from .encoder import Aggregator, Reconstructor
from .fast import fast_renderer
from .presets import preset_config
from .renderer import Renderer


class LagerNVSModel(ModelMixin, ConfigMixin):
    """LagerNVS: encode source views once into scene tokens, render any target rays from them.

    All sizes are config values; the defaults are the official full-size ``EncDecVitB/8`` model.
    Build official models with :meth:`from_preset` or :meth:`from_original_checkpoint`.
    ``forward``, ``encode`` and ``render`` only compute; code that takes tensors from users checks
    them first with :mod:`lagernvs.models.inputs`.

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
        variable_aspect: the model was trained on several aspect ratios (the general model):
            the pipeline keeps a photo's aspect ratio, with the longest side of ``image_size``,
            instead of centre-cropping it to ``image_size``
            (:func:`lagernvs.data.model_inputs.model_input_size`). The network itself takes any
            size either way.
        max_aspect: the most elongated aspect ratio (long / short side) a variable-aspect model
            was trained on; photos beyond it are centre-cropped to it.
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
        variable_aspect: bool = False,
        max_aspect: float = 2.0,
    ) -> None:
        super().__init__()
        aggregator = Aggregator(
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
        )
        self.reconstructor = Reconstructor(aggregator, camera_token_dim, renderer_width)
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
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> LagerNVSModel:
        """Load a ``save_pretrained`` folder (``subfolder`` as in diffusers); local only, like
        :meth:`LagerNVSPipeline.from_pretrained`, and strict: weights that do not match the
        config (missing, unexpected or misshapen keys) or are not finite are refused, where
        diffusers would warn and initialise at random."""
        folder = local_folder(
            os.path.join(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        )
        source = f"model folder {folder}"
        wants_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, output_loading_info=True, **kwargs
            )
        except ValueError as error:
            if "expected shape" not in str(error):
                raise
            reason = str(error).split(". ")[0].replace("Cannot load  because ", "")
            raise ValueError(
                f"{source}: its config.json and its weights come from different models "
                f"({reason}); save the model again"
            ) from None
        check_loading_info(info, source)
        check_finite(model.state_dict(), source)
        return (model, info) if wants_info else model

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

    @apply_forward_hook
    def encode(self, images: torch.Tensor, cam_tokens: torch.Tensor) -> torch.Tensor:
        """Encode source views into scene tokens.

        Args:
            images: (B, V, 3, H, W) in [0, 1].
            cam_tokens: (B, V, 11) camera tokens (see ``lagernvs.cameras``).

        Returns:
            (B, V, Np, renderer_width) scene tokens, Np the number of encoder patches per view.
        """
        return self.reconstructor(images, cam_tokens)

    @apply_forward_hook
    def prepare_scene(self, scene_tokens: torch.Tensor) -> Any:
        """The renderer's per-scene work (e.g. cross-attention keys and values), done once per
        scene for :meth:`render_prepared`; through the fast path on CUDA
        (:func:`~lagernvs.models.fast.fast_renderer`)."""
        return fast_renderer(self.renderer).prepare_scene(scene_tokens)

    @apply_forward_hook
    def render_prepared(self, prepared: Any, target_rays: torch.Tensor) -> torch.Tensor:
        """Render ray maps (B, T, 6, H, W) against :meth:`prepare_scene`'s output -> (B, T, 3,
        H, W) images in [0, 1]; on CUDA through the fast path (bf16 + CUDA graphs), elsewhere the
        plain renderer.

        ``encode``, ``prepare_scene`` and ``render_prepared`` are the inference entry points:
        like diffusers' ``AutoencoderKL.encode`` they trigger accelerate's offload hooks
        (``apply_forward_hook``), so ``enable_model_cpu_offload`` sees every use of the model.
        """
        return fast_renderer(self.renderer).render_views(prepared, target_rays)

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
        cond_images, cond_tokens = images[:, :num_cond_views], cam_tokens[:, :num_cond_views]
        target_rays = rays[:, num_cond_views:]
        scene_tokens = self.reconstructor(cond_images, cond_tokens)
        rendered = self.renderer(scene_tokens, target_rays)
        return torch.cat([cond_images, rendered.to(images.dtype)], dim=1)
