"""Small building blocks shared by the encoder, the renderer and the diffusion denoiser.

Only generic pieces live here (patch embedding, MLP, LayerScale, 2D RoPE and the gradient
checkpointing call); the blocks that are specific to one network stay in its module. Attribute
names (``proj``, ``fc1``, ``fc2``, ``gamma``) are part of the official checkpoints' keys.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: a stride-``patch`` conv, tokens in row-major order."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, bias: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, H/p * W/p, dim)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual-branch scale ``gamma``."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class RotaryPositionEmbedding2D(nn.Module):
    """2D RoPE: the first half of each head is rotated by the row, the second by the column."""

    def __init__(self, frequency: float = 100.0) -> None:
        super().__init__()
        self.frequency = frequency

    def cos_sin(
        self, positions: torch.Tensor, head_dim: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables (N, head_dim) for integer (row, col) positions (N, 2)."""
        half = head_dim // 2
        exponents = torch.arange(0, half, 2, device=positions.device).float() / half
        inv_freq = 1.0 / (self.frequency**exponents)
        angles = positions.float()[..., None] * inv_freq  # (N, 2, half/2)
        angles = torch.cat([angles, angles], dim=-1).flatten(-2)  # (N, head_dim): rows | cols
        return angles.cos().to(dtype), angles.sin().to(dtype)

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` (..., N, head_dim); each head_dim/2 chunk [a, b] is rotated to [-b, a]."""
        chunks = x.unflatten(-1, (2, 2, x.shape[-1] // 4))  # (axis, half of the axis chunk, d/4)
        rotated = torch.stack([-chunks[..., 1, :], chunks[..., 0, :]], dim=-2).flatten(-3)
        return x * cos + rotated * sin


def call_block(owner: nn.Module, block: nn.Module, *args: torch.Tensor | None):
    """Call ``block``, through diffusers-style gradient checkpointing when ``owner`` enables it."""
    if torch.is_grad_enabled() and owner.gradient_checkpointing:
        return owner._gradient_checkpointing_func(block, *args)
    return block(*args)
