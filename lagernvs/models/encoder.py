"""The LagerNVS encoder ("Reconstructor"): VGGT aggregator + camera-token MLP + connector.

Module and parameter names follow the official checkpoints exactly (``vggt.aggregator.*``,
``camera_mlp.*``, ``geo_feature_connector``, ``geo_feature_norm``), so official state dicts load
without a key map. The numerics are the reference implementation's (image resize, DINO position
table interpolation, RoPE positions, first-view tokens), checked by tests/test_reference_parity.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .layers import LayerScale, Mlp, PatchEmbed, RotaryPositionEmbedding2D, call_block

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_SPECIAL_TOKENS_PER_CAMERA = 1


class EncoderAttention(nn.Module):
    """Fused-qkv multi-head self-attention with optional per-head LayerNorm QK-norm and RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, norm_eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q = RotaryPositionEmbedding2D.apply(q, *rope)
            k = RotaryPositionEmbedding2D.apply(k, *rope)
        out = attention(q, k, v).transpose(1, 2).reshape(batch, tokens, -1)
        return self.proj(out)


class EncoderBlock(nn.Module):
    """Pre-norm ViT block with LayerScale on both branches (DINOv2 and VGGT blocks)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        norm_eps: float,
        qk_norm: bool,
        layerscale_init: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = EncoderAttention(dim, num_heads, qk_norm=qk_norm, norm_eps=norm_eps)
        self.ls1 = LayerScale(dim, layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layerscale_init)

    def forward(
        self,
        x: torch.Tensor,
        rope_cos: torch.Tensor | None = None,
        rope_sin: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rope = None if rope_cos is None else (rope_cos, rope_sin)
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2Backbone(nn.Module):
    """DINOv2 ViT with register tokens, as used for VGGT's patch embedding.

    Tokens: cls + (interpolated) position table on cls and patches, then the registers are
    inserted right after cls (they get no position embedding).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        image_size: int,
        patch_size: int,
        num_register_tokens: int,
        mlp_ratio: float,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        grid = image_size // patch_size
        self.patch_embed = PatchEmbed(3, dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, dim))
        # Kept for checkpoint compatibility; DINOv2 uses it only for masked pre-training.
        self.mask_token = nn.Parameter(torch.zeros(1, dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, num_heads, mlp_ratio, 1e-6, qk_norm=False, layerscale_init=1.0)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.gradient_checkpointing = False

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position table for a (grid_h, grid_w) patch grid: bicubic, antialiased, exact size."""
        table = self.pos_embed
        patch_table = table[:, 1:]
        side = int(round(patch_table.shape[1] ** 0.5))
        if (grid_h, grid_w) == (side, side):
            return table
        patch_table = patch_table.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_table = F.interpolate(
            patch_table.float(), size=(grid_h, grid_w), mode="bicubic", antialias=True
        ).to(table.dtype)
        return torch.cat([table[:, :1], patch_table.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W) -> final-normed patch tokens (N, H/p * W/p, dim)."""
        n, _, height, width = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        x = x + self.position_embedding(height // self.patch_size, width // self.patch_size)
        x = torch.cat([x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = call_block(self, block, x)
        return self.norm(x)[:, 1 + self.num_register_tokens :]


class Aggregator(nn.Module):
    """VGGT aggregator: DINO patch tokens + camera/register tokens, alternating frame/global blocks.

    Per view the sequence is ``[camera token, registers, patch tokens]``; the learned camera and
    register tokens have two versions, index 0 for the first view of each sample and index 1 for
    all other views.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        dino_depth: int,
        dino_heads: int,
        image_size: int,
        patch_size: int,
        dino_num_register_tokens: int,
        num_register_tokens: int,
        mlp_ratio: float,
        rope_frequency: float,
    ) -> None:
        super().__init__()
        self.patch_embed = DinoV2Backbone(
            dim, dino_depth, dino_heads, image_size, patch_size, dino_num_register_tokens, mlp_ratio
        )
        self.rope = RotaryPositionEmbedding2D(rope_frequency)
        self.frame_blocks = nn.ModuleList(
            EncoderBlock(dim, num_heads, mlp_ratio, 1e-5, qk_norm=True, layerscale_init=0.01)
            for _ in range(depth)
        )
        self.global_blocks = nn.ModuleList(
            EncoderBlock(dim, num_heads, mlp_ratio, 1e-5, qk_norm=True, layerscale_init=0.01)
            for _ in range(depth)
        )
        self.camera_token = nn.Parameter(torch.zeros(1, 2, NUM_SPECIAL_TOKENS_PER_CAMERA, dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, num_register_tokens, dim))
        self.dim = dim
        self.image_size = image_size
        self.patch_size = patch_size
        self.head_dim = dim // num_heads
        self.patch_start_idx = NUM_SPECIAL_TOKENS_PER_CAMERA + num_register_tokens
        mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
        self.register_buffer("_resnet_mean", mean, persistent=False)
        self.register_buffer("_resnet_std", std, persistent=False)
        self.gradient_checkpointing = False

    @staticmethod
    def _per_view(token: torch.Tensor, batch: int, views: int) -> torch.Tensor:
        """(1, 2, n, C) -> (B, S, n, C): version 0 for the first view, version 1 for the rest."""
        first = token[:, :1].expand(batch, 1, -1, -1)
        others = token[:, 1:].expand(batch, views - 1, -1, -1)
        return torch.cat([first, others], dim=1)

    def _positions(self, grid_h: int, grid_w: int, device: torch.device) -> torch.Tensor:
        """(row, col) per token of one view: special tokens (0, 0), patches grid index + 1."""
        rows, cols = torch.meshgrid(
            torch.arange(grid_h, device=device), torch.arange(grid_w, device=device), indexing="ij"
        )
        patch_pos = torch.stack([rows, cols], dim=-1).reshape(-1, 2) + 1
        special = torch.zeros(self.patch_start_idx, 2, dtype=patch_pos.dtype, device=device)
        return torch.cat([special, patch_pos], dim=0)

    def forward(self, images: torch.Tensor, camera_embedding: torch.Tensor) -> torch.Tensor:
        """Aggregate views.

        Args:
            images: (B, S, 3, H, W) in [0, 1], H and W multiples of the patch size.
            camera_embedding: (B, S, C) added to each view's camera token.

        Returns:
            (B, S, patch_start_idx + Np, 2C): last frame-block and last global-block outputs.
        """
        batch, views, _, height, width = images.shape
        images = (images - self._resnet_mean) / self._resnet_std
        patches = self.patch_embed(images.flatten(0, 1))
        dim = patches.shape[-1]
        camera = self._per_view(self.camera_token, batch, views) + camera_embedding[:, :, None]
        registers = self._per_view(self.register_token, batch, views)
        x = torch.cat([camera.flatten(0, 1), registers.flatten(0, 1), patches], dim=1)
        tokens = x.shape[1]

        positions = self._positions(height // self.patch_size, width // self.patch_size, x.device)
        frame_cos, frame_sin = self.rope.cos_sin(positions, self.head_dim, x.dtype)
        global_cos, global_sin = frame_cos.repeat(views, 1), frame_sin.repeat(views, 1)

        frame_out = global_out = x
        for frame_block, global_block in zip(self.frame_blocks, self.global_blocks, strict=True):
            frame_out = call_block(self, frame_block, global_out, frame_cos, frame_sin)
            global_in = frame_out.view(batch, views * tokens, dim)
            global_out = call_block(self, global_block, global_in, global_cos, global_sin)
            global_out = global_out.view(batch * views, tokens, dim)
        out = torch.cat([frame_out, global_out], dim=-1)
        return out.view(batch, views, tokens, 2 * dim)


def encoder_input_size(height: int, width: int, target: int, patch_size: int) -> tuple[int, int]:
    """Resize target: long side ``target``, short side floored to a multiple of ``patch_size``.

    A square image counts as landscape. E.g. 48x80 -> 308x518, 64x48 -> 518x378 for 518 / 14.
    """
    if height > width:
        return target, (target * width // height) // patch_size * patch_size
    return (target * height // width) // patch_size * patch_size, target


class Reconstructor(nn.Module):
    """Source views + camera tokens -> scene tokens (B, V, Np, output_dim).

    Args:
        aggregator: the VGGT aggregator (stored as ``vggt.aggregator``, the official key prefix).
        camera_token_dim: length of the camera token fed to the camera MLP (11).
        output_dim: width of the scene tokens (the renderer width).
    """

    def __init__(self, aggregator: Aggregator, camera_token_dim: int, output_dim: int) -> None:
        super().__init__()
        dim = aggregator.dim
        self.vggt = nn.ModuleDict({"aggregator": aggregator})
        self.camera_mlp = nn.Sequential(
            nn.Linear(camera_token_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.geo_feature_connector = nn.Linear(2 * dim, output_dim)
        self.geo_feature_norm = nn.LayerNorm(output_dim, bias=False)
        self.image_size = aggregator.image_size
        self.patch_size = aggregator.patch_size

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) the images are resized to before the aggregator."""
        return encoder_input_size(height, width, self.image_size, self.patch_size)

    def aggregate(self, images: torch.Tensor, cam_tokens: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W), (B, V, 11) -> aggregator tokens (B, V, 5 + Np, 2C)."""
        batch, views = images.shape[:2]
        size = self.input_size(*images.shape[-2:])
        resized = F.interpolate(
            images.flatten(0, 1), size=size, mode="bilinear", align_corners=False, antialias=True
        )
        resized = resized.view(batch, views, *resized.shape[1:])
        return self.vggt["aggregator"](resized, self.camera_mlp(cam_tokens))

    def connect(self, aggregator_tokens: torch.Tensor) -> torch.Tensor:
        """Aggregator tokens -> scene tokens: patch tokens only, Linear 2C -> W, LayerNorm."""
        patch_tokens = aggregator_tokens[:, :, self.vggt["aggregator"].patch_start_idx :]
        return self.geo_feature_norm(self.geo_feature_connector(patch_tokens))

    def forward(self, images: torch.Tensor, cam_tokens: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) in [0, 1], (B, V, 11) -> scene tokens (B, V, Np, W)."""
        return self.connect(self.aggregate(images, cam_tokens))
