"""DenoisingRenderer: the deterministic renderer fine-tuned into a pixel-space diffusion decoder.

What the LagerNVS paper states about its diffusion decoder: the encoder is frozen, the decoder
keeps the same 12 blocks in pixel space, its input layer gets extra channels for the noisy target
image, and the timestep enters through adaLN-Zero. Our construction, around an unchanged
:class:`~lagernvs.models.renderer.Renderer` (same module names, so its weights load as they are):

* **Noisy-image channels.** A bias-free stride-``patch`` conv embeds the noisy target image and
  its tokens are added to the ray-map patch tokens before ``tgt_norm``. Convolution is linear, so
  this is exactly the paper's "extra input channels" of the patch-embedding conv
  (``conv([rays; x_t]) = conv_rays(rays) + conv_x(x_t)``) while the pretrained conv keeps its shape.
* **Timestep.** diffusers' sinusoidal ``Timesteps`` + ``TimestepEmbedding`` MLP give one vector per
  target view; per block, ``SiLU -> Linear`` maps it to a shift and a scale for every LayerNorm and
  a gate for every residual branch (attention output projection, MLP ``fc2``); the final LayerNorm
  gets its own shift and scale. Norm outputs become ``norm(x) * (1 + scale) + shift`` and branch
  outputs ``branch * (1 + gate)``. The scene-side norm whose keys/values are shared by every
  target of a scene (``CrossAttentionBlock.norm2_kv``) is not modulated, so those keys/values stay
  computed once per scene.
* **Zero init = the deterministic renderer.** The noisy-image conv and every modulation layer
  start at zero. DiT's adaLN-Zero zeroes the *gate* (a new block starts as the identity); here the
  blocks are pretrained, so the gate multiplies ``1 + gate`` and a zero modulation leaves each block
  exactly as trained: at step 0 the prediction equals the deterministic render for any noisy input
  and timestep (``tests/test_denoiser.py::test_identity_at_init``), while gradients reach all new
  parameters from the first step.
* **Output = clean image (x0).** The pretrained head already maps tokens to the clean image through
  a sigmoid, so the denoiser always predicts x0, returned in the diffusion range [-1, 1]
  (``2 * sigmoid - 1``). The training objective (``sample``, ``epsilon``, ``v_prediction`` or flow
  matching, :mod:`lagernvs.diffusion.objective`) is an exact conversion of this x0 and only changes
  the loss weighting and what the scheduler is fed.
* **Classifier-free guidance.** Dropped scene conditioning is replaced by one learned null scene
  token broadcast to every scene-token position, so the unconditional branch sees a scene of the
  usual shape (attention over V*Np tokens as in the conditional branch) in every variant.

The modulation is passed explicitly: :meth:`DenoisingRenderer.forward` computes the noisy-image
tokens and one modulation tensor per block (:class:`~lagernvs.models.renderer.Modulation`) and
hands them to :meth:`Renderer.render_views <lagernvs.models.renderer.Renderer.render_views>`, so
the renderer runs as a plain function of its inputs (gradient checkpointing included) and
copies of a denoiser share nothing. Its two entry points are those accelerate's offload hooks see,
as for :class:`~lagernvs.models.LagerNVSModel`: ``forward`` predicts and ``prepare_scene``
(wrapped by diffusers' ``apply_forward_hook``) prepares a scene once for many predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import Tensor, nn

from lagernvs.diffusion.objective import PREDICTION_TYPES
from lagernvs.models.lagernvs import LagerNVSModel
from lagernvs.models.layers import Mlp, PatchEmbed
from lagernvs.models.renderer import (
    ATTENTION_TYPES,
    RAY_CHANNELS,
    RENDERER_CORES,
    Renderer,
    RendererAttention,
    modulation_size,
)

IMAGE_CHANNELS = 3


@dataclass(frozen=True)
class PreparedScene:
    """A scene made ready for many predictions (:meth:`DenoisingRenderer.prepare_scene`): the
    renderer's per-scene cache (e.g. cross-attention keys/values) of the scene or null scene."""

    cache: Any


def _zero_linear(in_features: int, out_features: int) -> nn.Sequential:
    """``SiLU -> Linear`` with zero weight and bias (adaLN-Zero)."""
    linear = nn.Linear(in_features, out_features)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.SiLU(), linear)


class DenoisingRenderer(ModelMixin, ConfigMixin):
    """The renderer as a diffusion decoder: (scene, target rays, noisy image, t) -> clean image.

    Build it from a trained renderer with :meth:`from_renderer` (copies the deterministic
    weights; the prediction then equals the deterministic render). See the module docstring for
    the design. Images live in the diffusion range [-1, 1] here (``2 * image - 1``).

    Args:
        attention_type, width, depth, num_heads, patch_size, num_registers, mlp_ratio: the
            renderer's configuration (as in :class:`~lagernvs.models.LagerNVSModel`).
        timestep_channels: width of the sinusoidal timestep features.
        objective: the training objective this denoiser was (or is being) trained with
            (``sample``, ``epsilon``, ``v_prediction`` or ``flow``); it fixes which noise
            schedule family its timesteps mean, which sampling checks against the scheduler.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        attention_type: str = "bidirectional_cross_attention",
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: int = 8,
        num_registers: int = 4,
        mlp_ratio: float = 4.0,
        timestep_channels: int = 256,
        objective: str = "sample",
    ) -> None:
        super().__init__()
        if objective not in PREDICTION_TYPES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {PREDICTION_TYPES}")
        self.renderer = Renderer(
            attention_type,
            width,
            depth,
            num_heads,
            patch_size,
            num_registers,
            mlp_ratio,
            out_channels=IMAGE_CHANNELS,
        )
        self.noisy_embedder = PatchEmbed(IMAGE_CHANNELS, width, patch_size, bias=False)
        nn.init.zeros_(self.noisy_embedder.proj.weight)
        self.time_proj = Timesteps(timestep_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(timestep_channels, width)
        self.null_scene_token = nn.Parameter(torch.empty(width).normal_(std=0.02))
        self.block_modulations = nn.ModuleList(
            _zero_linear(width, modulation_size(block) * width)
            for block in self.renderer.renderer_core.renderer_blocks
        )
        self.final_modulation = _zero_linear(
            width, modulation_size(self.renderer.final_layer) * width
        )

    # ------------------------------------------------------------------ building

    @classmethod
    def from_renderer(cls, renderer: Renderer | LagerNVSModel, **config: Any) -> DenoisingRenderer:
        """A denoiser holding a copy of ``renderer``'s weights (a LagerNVSModel's renderer too).

        ``config`` sets the new options (``timestep_channels``, ``objective``); the architecture
        is read from the renderer. The result is on the renderer's device and dtype.
        """
        if isinstance(renderer, LagerNVSModel):
            renderer = renderer.renderer
        if not isinstance(renderer, Renderer):
            raise ValueError(
                f"from_renderer needs a Renderer or LagerNVSModel, got {type(renderer).__name__}"
            )
        architecture = renderer_config(renderer)
        clash = sorted(set(config) & set(architecture))
        if clash:
            raise ValueError(f"{clash} are read from the renderer; do not pass them")
        parameter = next(renderer.parameters())
        denoiser = cls(**architecture, **config).to(parameter.device)
        denoiser.renderer.load_state_dict(renderer.state_dict())
        return denoiser if parameter.dtype == torch.float32 else denoiser.to(parameter.dtype)

    # ------------------------------------------------------------------ entry point

    @apply_forward_hook
    def prepare_scene(
        self, scene_tokens: Tensor, drop_scene: Tensor | bool | None = None
    ) -> PreparedScene:
        """Prepare scene tokens (B, V, Np, W) from the frozen encoder once for many predictions.

        ``drop_scene`` (a bool or (B,) bool tensor) swaps the chosen samples' scenes for the
        learned null scene (classifier-free guidance's unconditional branch). Wrapped by
        ``apply_forward_hook`` so that accelerate's offload hooks see this entry point too.
        """
        width = self.config.width
        if (
            not isinstance(scene_tokens, Tensor)
            or scene_tokens.dim() != 4
            or (scene_tokens.shape[-1] != width)
        ):
            got = tuple(scene_tokens.shape) if isinstance(scene_tokens, Tensor) else scene_tokens
            raise ValueError(f"scene_tokens must be (B, V, Np, {width}), got {got!r}")
        if drop_scene is not None:
            mask = torch.as_tensor(drop_scene, dtype=torch.bool, device=scene_tokens.device)
            mask = mask.reshape(-1, 1, 1, 1).expand(scene_tokens.shape[0], 1, 1, 1)
            null = self.null_scene_token.to(scene_tokens.dtype).expand_as(scene_tokens)
            scene_tokens = torch.where(mask, null, scene_tokens)
        return PreparedScene(self.renderer.prepare_scene(scene_tokens))

    def forward(
        self,
        noisy_images: Tensor,
        timesteps: Tensor | float,
        target_rays: Tensor,
        scene: Tensor | PreparedScene,
        drop_scene: Tensor | bool | None = None,
    ) -> Tensor:
        """Predict the clean image (B, T, 3, H, W) in [-1, 1].

        * noisy_images: (B, T, 3, H, W) noisy target images (diffusion range);
        * timesteps: a number, (B,) or (B, T) timesteps of the noise schedule;
        * target_rays: (B, T, 6, H, W) Plücker ray maps;
        * scene: scene tokens (B, V, Np, W) from the frozen encoder, or a :class:`PreparedScene`
          (:meth:`prepare_scene`) to skip preparing the same scene at every step;
        * drop_scene: with scene tokens, as in :meth:`prepare_scene`.
        """
        self._check_inputs(noisy_images, target_rays)
        if isinstance(scene, PreparedScene):
            if drop_scene is not None:
                raise ValueError("drop_scene applies to scene tokens; prepare the null scene")
        else:
            scene = self.prepare_scene(scene, drop_scene)
        batch, targets = target_rays.shape[:2]
        timesteps = torch.as_tensor(timesteps, device=target_rays.device)
        if timesteps.dim() == 1:
            timesteps = timesteps[:, None]
        try:
            timesteps = timesteps.expand(batch, targets)
        except RuntimeError:
            raise ValueError(
                f"timesteps of shape {tuple(timesteps.shape)} do not broadcast to (B, T) = "
                f"({batch}, {targets}); pass a number, (B,) or (B, T) values"
            ) from None
        dtype = self.time_embedding.linear_1.weight.dtype
        embedding = self.time_embedding(self.time_proj(timesteps.flatten()).to(dtype))
        noisy_tokens = self.noisy_embedder(noisy_images.flatten(0, 1).to(dtype))
        modulations = [
            layer(embedding).unflatten(-1, (-1, self.config.width))
            for layer in [*self.block_modulations, self.final_modulation]
        ]
        images = self.renderer.render_views(scene.cache, target_rays, noisy_tokens, modulations)
        return images * 2 - 1

    def _check_inputs(self, noisy_images: Tensor, target_rays: Tensor) -> None:
        patch = self.config.patch_size
        if target_rays.dim() != 5 or target_rays.shape[2] != RAY_CHANNELS:
            raise ValueError(
                f"target_rays must be (B, T, {RAY_CHANNELS}, H, W), got {tuple(target_rays.shape)}"
            )
        height, width = target_rays.shape[-2:]
        if height % patch or width % patch:
            raise ValueError(
                f"target views are {height}x{width}; H and W must be multiples of the patch size "
                f"{patch}"
            )
        expected = (*target_rays.shape[:2], IMAGE_CHANNELS, height, width)
        if tuple(noisy_images.shape) != expected:
            raise ValueError(
                f"noisy_images must be (B, T, 3, H, W) = {expected} to match target_rays, got "
                f"{tuple(noisy_images.shape)}"
            )


def renderer_config(renderer: Renderer) -> dict[str, Any]:
    """The architecture arguments of a :class:`Renderer` instance, read from its modules."""
    core_types = {core: name for name, core in RENDERER_CORES.items()}
    attention_type = core_types.get(type(renderer.renderer_core))
    if attention_type not in ATTENTION_TYPES:
        raise ValueError(f"unknown renderer core {type(renderer.renderer_core).__name__}")
    width = renderer.tgt_norm.normalized_shape[0]
    attention = next(m for m in renderer.modules() if isinstance(m, RendererAttention))
    mlp = next(m for m in renderer.modules() if isinstance(m, Mlp))
    if renderer.out_channels != IMAGE_CHANNELS:
        raise ValueError(f"the renderer outputs {renderer.out_channels} channels, not RGB")
    return {
        "attention_type": attention_type,
        "width": width,
        "depth": len(renderer.renderer_core.renderer_blocks),
        "num_heads": attention.num_heads,
        "patch_size": renderer.patch_size,
        "num_registers": renderer.num_registers,
        "mlp_ratio": mlp.fc1.out_features / width,
    }
