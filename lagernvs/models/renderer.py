"""The LagerNVS renderer: target ray maps + scene tokens -> RGB, in three attention variants.

Module and parameter names follow the official checkpoints (``renderer.*``). The numerics are the
reference implementation's, checked by tests/test_reference_parity.py.

Speed by design: every core splits rendering into ``prepare_scene(scene_tokens)`` (once per
scene) and ``forward(targets, scene)`` (once per chunk of target views). ``cross_attention``
never updates the scene tokens, so its scene-side keys/values are computed once per block in
``prepare_scene`` and shared by all targets: the queries of the T targets of a sample are laid
side by side in one attention call against the sample's keys, with no per-target copy of the
scene. ``full_attention`` and ``bidirectional_cross_attention`` update the scene tokens per
target, so they copy them per target of the current chunk only.

Diffusion decoder: every block, and the final layer, takes an optional adaLN-Zero modulation
(:class:`Modulation`: a shift and a scale per modulated LayerNorm, a gate per residual branch,
one set per target view), and :meth:`Renderer.render_views` optional noisy-image tokens added
to the ray-map tokens before ``tgt_norm``. ``None`` (the default) is the deterministic renderer,
bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .attention import attention
from .layers import Mlp, PatchEmbed, call_block

ATTENTION_TYPES = ("full_attention", "cross_attention", "bidirectional_cross_attention")
RAY_CHANNELS = 6


class HeadRMSNorm(nn.Module):
    """RMSNorm over the last (head) dimension, computed in float32, with a learned gain.

    ``torch.rms_norm`` on the float32 input is the reference's arithmetic (x * rsqrt(mean(x²) +
    eps) * gain, bit for bit on CPU) in one op, which CUDA runs fused where torch has the kernel.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rms_norm(x.float(), self.weight.shape, self.weight, self.eps).to(x.dtype)


class RendererAttention(nn.Module):
    """Bias-free multi-head attention with separate q/k/v projections and RMS QK-norm."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.q_norm = HeadRMSNorm(self.head_dim)
        self.k_norm = HeadRMSNorm(self.head_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, W) -> (B, N, heads, head_dim), a view: each head's values stay contiguous."""
        return x.unflatten(-1, (self.num_heads, self.head_dim))

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised keys and values (B, heads, N, head_dim) of ``context`` (B, N, W).

        The QK-norm runs before the head transpose, on rows that are contiguous in memory, which
        is cheaper than normalising the transposed view (same values).
        """
        k = self.k_norm(self._heads(self.k_proj(context))).transpose(1, 2)
        return k, self._heads(self.v_proj(context)).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Queries from ``x`` (B, N, W); keys/values from ``kv``, else ``context``, else ``x``."""
        q = self.q_norm(self._heads(self.q_proj(x))).transpose(1, 2)
        if kv is None:
            kv = self.keys_values(x if context is None else context)
        out = attention(q, *kv).transpose(1, 2).flatten(2)
        return self.proj(out)


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-5, bias=False)


def _per_target(x: torch.Tensor, targets: int) -> torch.Tensor:
    """View tokens (..., S, W) as (targets, tokens per target, W).

    Blocks lay tokens out with one target view per row ((N, S, W), also (B, T, L, W)) or the
    T targets of a scene side by side along the token axis ((B, T*L, W)); both are target-major
    in memory, so a reshape groups each target's tokens.
    """
    return x.reshape(targets, -1, x.shape[-1])


class Modulation:
    """adaLN-Zero modulation of one block (the diffusion decoder's timestep), or none.

    ``values`` (N, 2 * norms + gates, W) hold, for each of the N target views, a shift and a
    scale per LayerNorm named in ``norms`` (in that order), then a gate per residual branch named
    in ``gates``: norm outputs become ``norm(x) * (1 + scale) + shift`` and branch outputs
    ``branch * (1 + gate)`` (DiT's adaLN-Zero with the gate around 1, so that zero values leave a
    pretrained block as trained). ``values=None`` returns every tensor unchanged.
    """

    def __init__(
        self, values: torch.Tensor | None, norms: tuple[str, ...], gates: tuple[str, ...]
    ) -> None:
        self.values, self.norms, self.gates = values, norms, gates

    def norm(self, name: str, normed: torch.Tensor) -> torch.Tensor:
        """The output of LayerNorm ``name``, shifted and scaled."""
        if self.values is None:
            return normed
        values = self.values.to(normed.dtype)
        site = 2 * self.norms.index(name)
        shift, scale = values[:, site, None], values[:, site + 1, None]
        return (_per_target(normed, values.shape[0]) * (1 + scale) + shift).view_as(normed)

    def gate(self, name: str, branch: torch.Tensor) -> torch.Tensor:
        """The output of residual branch ``name``, gated."""
        if self.values is None:
            return branch
        values = self.values.to(branch.dtype)
        gate = values[:, 2 * len(self.norms) + self.gates.index(name), None]
        return (_per_target(branch, values.shape[0]) * (1 + gate)).view_as(branch)


def modulation_size(module: type[nn.Module] | nn.Module) -> int:
    """Modulation rows (shift/scale pairs and gates) a block or the final layer takes."""
    return 2 * len(module.MODULATED_NORMS) + len(module.GATED_BRANCHES)


class FullAttentionBlock(nn.Module):
    """Pre-norm self-attention + MLP over the whole [scene; registers; target] sequence."""

    MODULATED_NORMS = ("norm1", "norm2")
    GATED_BRANCHES = ("attn", "mlp")

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = RendererAttention(dim, num_heads)
        self.norm2 = _layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=False)

    def forward(self, x: torch.Tensor, modulation: torch.Tensor | None = None) -> torch.Tensor:
        """Sequences (N, S, W), one per target view; ``modulation`` (N, 6, W) or None."""
        mod = Modulation(modulation, self.MODULATED_NORMS, self.GATED_BRANCHES)
        x = x + mod.gate("attn", self.attn(mod.norm("norm1", self.norm1(x))))
        return x + mod.gate("mlp", self.mlp(mod.norm("norm2", self.norm2(x))))


class CrossAttentionBlock(nn.Module):
    """Self-attention per target view, cross-attention to the scene, MLP.

    The scene-side ``norm2_kv`` is not modulated: its keys/values are shared by every target.
    """

    MODULATED_NORMS = ("norm1", "norm2", "norm_ffn")
    GATED_BRANCHES = ("self_attn", "cross_attn", "mlp")

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.self_attn = RendererAttention(dim, num_heads)
        self.norm2 = _layer_norm(dim)
        self.norm2_kv = _layer_norm(dim)
        self.cross_attn = RendererAttention(dim, num_heads)
        self.norm_ffn = _layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=False)

    def scene_kv(self, scene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys/values of scene tokens (G, Ns, W)."""
        return self.cross_attn.keys_values(self.norm2_kv(scene))

    def forward(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        modulation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Targets ``x`` (G, T, L, W) attending to one scene's keys/values (G, heads, Ns, d);
        ``modulation`` (G*T, 9, W) or None."""
        mod = Modulation(modulation, self.MODULATED_NORMS, self.GATED_BRANCHES)
        groups, targets, length, dim = x.shape
        x = x.flatten(0, 1)
        x = x + mod.gate("self_attn", self.self_attn(mod.norm("norm1", self.norm1(x))))
        x = x.view(groups, targets * length, dim)  # all targets of a scene share its K/V
        normed = mod.norm("norm2", self.norm2(x))
        x = x + mod.gate("cross_attn", self.cross_attn(normed, kv=(k, v)))
        x = x + mod.gate("mlp", self.mlp(mod.norm("norm_ffn", self.norm_ffn(x))))
        return x.view(groups, targets, length, dim)


class BidirectionalCrossAttentionBlock(nn.Module):
    """Target self-attention, target<-scene and scene<-target cross-attention, two MLPs."""

    MODULATED_NORMS = ("norm1_x", "norm2_x", "norm3_x", "norm1_rec", "norm2_rec")
    GATED_BRANCHES = ("self_attn", "cross_attn_x", "cross_attn_rec", "mlp_x", "mlp_rec")

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1_x = _layer_norm(dim)
        self.self_attn = RendererAttention(dim, num_heads)
        self.norm2_x = _layer_norm(dim)
        self.cross_attn_x = RendererAttention(dim, num_heads)
        self.norm3_x = _layer_norm(dim)
        self.mlp_x = Mlp(dim, hidden, bias=False)
        self.norm1_rec = _layer_norm(dim)
        self.cross_attn_rec = RendererAttention(dim, num_heads)
        self.norm2_rec = _layer_norm(dim)
        self.mlp_rec = Mlp(dim, hidden, bias=False)

    def forward(
        self, x: torch.Tensor, rec: torch.Tensor, modulation: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets (N, L, W) and their own copies of the scene tokens (N, Ns, W);
        ``modulation`` (N, 15, W) or None (the scene copies are modulated per target too)."""
        mod = Modulation(modulation, self.MODULATED_NORMS, self.GATED_BRANCHES)
        x = x + mod.gate("self_attn", self.self_attn(mod.norm("norm1_x", self.norm1_x(x))))
        xn, rn = mod.norm("norm2_x", self.norm2_x(x)), mod.norm("norm1_rec", self.norm1_rec(rec))
        x = x + mod.gate("cross_attn_x", self.cross_attn_x(xn, context=rn))
        rec = rec + mod.gate("cross_attn_rec", self.cross_attn_rec(rn, context=xn))
        x = x + mod.gate("mlp_x", self.mlp_x(mod.norm("norm3_x", self.norm3_x(x))))
        rec = rec + mod.gate("mlp_rec", self.mlp_rec(mod.norm("norm2_rec", self.norm2_rec(rec))))
        return x, rec


def _scene_copies(scene: torch.Tensor, targets: int) -> torch.Tensor:
    """(B, Ns, W) -> (B * targets, Ns, W), sample-major: one copy per target view."""
    return scene[:, None].expand(-1, targets, -1, -1).flatten(0, 1)


def _per_block(
    modulations: Sequence[torch.Tensor] | None, blocks: nn.ModuleList
) -> Sequence[torch.Tensor | None]:
    """One modulation per block (None everywhere for the deterministic renderer)."""
    if modulations is None:
        return [None] * len(blocks)
    if len(modulations) != len(blocks):
        raise ValueError(f"got {len(modulations)} block modulations for {len(blocks)} blocks")
    return modulations


class FullAttentionRendererCore(nn.Module):
    """Self-attention over [scene; target] per target; the scene part is dropped at the end."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.renderer_blocks = nn.ModuleList(
            FullAttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.gradient_checkpointing = False

    def prepare_scene(self, scene: torch.Tensor) -> torch.Tensor:
        return scene

    def forward(
        self,
        x: torch.Tensor,
        scene: torch.Tensor,
        modulations: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Targets (B, T, L, W), scene tokens (B, Ns, W) -> targets (B, T, L, W)."""
        batch, targets, length, dim = x.shape
        seq = torch.cat([_scene_copies(scene, targets), x.flatten(0, 1)], dim=1)
        per_block = _per_block(modulations, self.renderer_blocks)
        for block, modulation in zip(self.renderer_blocks, per_block, strict=True):
            seq = call_block(self, block, seq, modulation)
        return seq[:, scene.shape[1] :].reshape(batch, targets, length, dim)


class CrossAttentionRendererCore(nn.Module):
    """Cross-attention blocks; the scene's keys/values are computed once per block per scene."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.renderer_blocks = nn.ModuleList(
            CrossAttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.gradient_checkpointing = False

    def prepare_scene(self, scene: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-block (keys, values) of scene tokens (B, Ns, W), shared by every target view."""
        return [block.scene_kv(scene) for block in self.renderer_blocks]

    def forward(
        self,
        x: torch.Tensor,
        scene: list[tuple[torch.Tensor, torch.Tensor]],
        modulations: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Targets (B, T, L, W) and :meth:`prepare_scene` output -> targets (B, T, L, W)."""
        per_block = _per_block(modulations, self.renderer_blocks)
        for block, (k, v), modulation in zip(self.renderer_blocks, scene, per_block, strict=True):
            x = call_block(self, block, x, k, v, modulation)
        return x


class BidirectionalCrossAttentionRendererCore(nn.Module):
    """depth - 1 bidirectional blocks (scene copies updated per target), then one cross block."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            BidirectionalCrossAttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth - 1)
        ]
        blocks.append(CrossAttentionBlock(dim, num_heads, mlp_ratio))
        self.renderer_blocks = nn.ModuleList(blocks)
        self.gradient_checkpointing = False

    def prepare_scene(self, scene: torch.Tensor) -> torch.Tensor:
        return scene

    def forward(
        self,
        x: torch.Tensor,
        scene: torch.Tensor,
        modulations: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Targets (B, T, L, W), scene tokens (B, Ns, W) -> targets (B, T, L, W)."""
        batch, targets, length, dim = x.shape
        x, rec = x.flatten(0, 1), _scene_copies(scene, targets)
        *bidirectional, last = self.renderer_blocks
        *per_block, last_modulation = _per_block(modulations, self.renderer_blocks)
        for block, modulation in zip(bidirectional, per_block, strict=True):
            x, rec = call_block(self, block, x, rec, modulation)
        x = call_block(self, last, x[:, None], *last.scene_kv(rec), last_modulation)
        return x.view(batch, targets, length, dim)


RENDERER_CORES: dict[str, type[nn.Module]] = {
    "full_attention": FullAttentionRendererCore,
    "cross_attention": CrossAttentionRendererCore,
    "bidirectional_cross_attention": BidirectionalCrossAttentionRendererCore,
}


class FinalLayer(nn.Module):
    """LayerNorm + Linear to one patch of pixels per token."""

    MODULATED_NORMS = ("norm_final",)
    GATED_BRANCHES: tuple[str, ...] = ()

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm_final = _layer_norm(dim)
        self.linear = nn.Linear(dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor, modulation: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (B, T, L, W) -> pixels; ``modulation`` (B*T, 2, W) or None."""
        mod = Modulation(modulation, self.MODULATED_NORMS, self.GATED_BRANCHES)
        return self.linear(mod.norm("norm_final", self.norm_final(x)))


class Renderer(nn.Module):
    """Scene tokens + target Plücker ray maps -> target images in [0, 1]."""

    def __init__(
        self,
        attention_type: str,
        width: int,
        depth: int,
        num_heads: int,
        patch_size: int,
        num_registers: int,
        mlp_ratio: float,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        if attention_type not in RENDERER_CORES:
            raise ValueError(
                f"unknown attention_type {attention_type!r}; choose one of {ATTENTION_TYPES}"
            )
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.num_registers = num_registers
        # Stored in float32; official checkpoints hold bfloat16 values, which float32 represents
        # exactly (the reference promotes them to float32 when concatenating).
        self.per_view_register_tokens = nn.Parameter(torch.zeros(1, num_registers, width))
        self.tgt_embedder = PatchEmbed(RAY_CHANNELS, width, patch_size, bias=False)
        self.tgt_norm = _layer_norm(width)
        self.renderer_core = RENDERER_CORES[attention_type](width, depth, num_heads, mlp_ratio)
        self.final_layer = FinalLayer(width, patch_size * patch_size * out_channels)

    def prepare_scene(self, scene_tokens: torch.Tensor) -> Any:
        """Scene tokens (B, V, Np, W) -> what the core needs per scene (flattened view-major)."""
        return self.renderer_core.prepare_scene(scene_tokens.flatten(1, 2))

    def render_views(
        self,
        scene: Any,
        rays: torch.Tensor,
        noisy_tokens: torch.Tensor | None = None,
        modulations: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Render target rays (B, T, 6, H, W) against a prepared scene -> (B, T, 3, H, W).

        The diffusion decoder passes ``noisy_tokens`` (B*T, L, W), added to the ray-map patch
        tokens before ``tgt_norm``, and ``modulations``: one (B*T, rows, W) tensor per block,
        then one for the final layer (:class:`Modulation`). None: the deterministic renderer.
        """
        batch, targets, _, height, width = rays.shape
        p = self.patch_size
        tokens = self.tgt_embedder(rays.flatten(0, 1))
        if noisy_tokens is not None:
            tokens = tokens + noisy_tokens.to(tokens.dtype)
        tokens = self.tgt_norm(tokens)
        registers = self.per_view_register_tokens.expand(tokens.shape[0], -1, -1)
        x = torch.cat([registers, tokens], dim=1).unflatten(0, (batch, targets))
        per_block, final = None, None
        if modulations is not None:
            *per_block, final = modulations
        x = self.renderer_core(x, scene, per_block)[:, :, self.num_registers :]
        pixels = torch.sigmoid(self.final_layer(x, final))
        pixels = pixels.view(batch, targets, height // p, width // p, p, p, self.out_channels)
        pixels = pixels.permute(0, 1, 6, 2, 4, 3, 5)
        return pixels.reshape(batch, targets, self.out_channels, height, width)

    def forward(
        self, scene_tokens: torch.Tensor, rays: torch.Tensor, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Render (B, T, 6, H, W) rays, ``chunk_size`` target views at a time (None: all)."""
        scene = self.prepare_scene(scene_tokens)
        chunks = [rays] if chunk_size is None else rays.split(chunk_size, dim=1)
        return torch.cat([self.render_views(scene, chunk) for chunk in chunks], dim=1)
