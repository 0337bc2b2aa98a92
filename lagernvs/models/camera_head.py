"""The VGGT camera head: aggregator camera tokens -> 9-number pose encodings, and their cameras.

Parameter names are VGGT's (``camera_head.*`` in a VGGT-1B checkpoint without the prefix), so a
VGGT state dict loads strictly. It matches the reference VGGT camera head numerically, checked on
its recorded intermediates by ``tests/test_camera_head_parity.py``.

Pose encoding layout: ``[tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w]``, quaternion scalar-last and
not normalised, fields of view in radians. VGGT's poses are camera-from-world (world-to-camera).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lagernvs.cameras import quaternion_to_matrix

from .encoder import EncoderBlock
from .layers import Mlp

POSE_ENCODING_DIM = 9
Activation = Callable[[torch.Tensor], torch.Tensor]
ACTIVATIONS: dict[str, Activation] = {"linear": lambda x: x, "relu": F.relu}
"""Output activations the head supports (VGGT-1B uses linear, linear, relu)."""


def _activation(name: str, role: str) -> Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown {role} activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class CameraHead(nn.Module):
    """Iterative pose refinement from the camera token of the aggregator's last layer.

    The camera token of every view is normalised once; each iteration embeds the previous raw
    (un-activated) estimate (the learned ``empty_pose_tokens`` at first), turns it into an
    adaLN shift/scale/gate applied once before the trunk, runs the trunk over the views of each
    sample (attention across views, no positional encoding) and adds the pose branch's output
    to the running estimate. Each iteration's estimate is returned after the output activations.

    Args:
        dim_in: token width (2 x the aggregator width: frame and global outputs concatenated).
        num_heads, trunk_depth, mlp_ratio: size of the trunk of pre-norm transformer blocks.
        init_values: LayerScale initial value of the trunk blocks.
        num_iterations: refinement iterations (default of :meth:`forward`).
        trans_act, quat_act, fl_act: output activations of translation, quaternion and
            field of view (``"linear"`` or ``"relu"``).
    """

    def __init__(
        self,
        dim_in: int = 2048,
        num_heads: int = 16,
        trunk_depth: int = 4,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
        num_iterations: int = 4,
        trans_act: str = "linear",
        quat_act: str = "linear",
        fl_act: str = "relu",
    ) -> None:
        super().__init__()
        self.num_iterations = num_iterations
        self.activations = (
            _activation(trans_act, "translation"),
            _activation(quat_act, "quaternion"),
            _activation(fl_act, "field-of-view"),
        )
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.trunk = nn.Sequential(
            *(
                EncoderBlock(
                    dim_in, num_heads, mlp_ratio, 1e-5, qk_norm=False, layerscale_init=init_values
                )
                for _ in range(trunk_depth)
            )
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        # VGGT's key name; outputs shift | scale | gate.
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, eps=1e-6, elementwise_affine=False)
        self.pose_branch = Mlp(dim_in, dim_in // 2)
        # Unlike the trunk MLPs, the pose branch projects to the encoding, not back to dim_in.
        self.pose_branch.fc2 = nn.Linear(dim_in // 2, POSE_ENCODING_DIM)

    def raw_estimates(
        self, aggregated_tokens_list: Sequence[torch.Tensor], num_iterations: int | None = None
    ) -> list[torch.Tensor]:
        """Running pose estimates (B, S, 9) before the output activations, one per iteration.

        Only the camera token (index 0) of the last entry of ``aggregated_tokens_list``
        (each (B, S, tokens, dim_in)) is read.
        """
        iterations = self.num_iterations if num_iterations is None else num_iterations
        if iterations < 1:
            raise ValueError(f"num_iterations must be at least 1, got {iterations}")
        x = self.token_norm(aggregated_tokens_list[-1][:, :, 0])
        batch, views, _ = x.shape
        estimates: list[torch.Tensor] = []
        for _ in range(iterations):
            previous = estimates[-1] if estimates else self.empty_pose_tokens
            previous = previous.expand(batch, views, POSE_ENCODING_DIM)
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(previous)).chunk(3, dim=-1)
            y = x + gate * (self.adaln_norm(x) * (1 + scale) + shift)
            delta = self.pose_branch(self.trunk_norm(self.trunk(y)))
            estimates.append(delta if not estimates else estimates[-1] + delta)
        return estimates

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """Output activations of a raw estimate (..., 9): translation, quaternion, FoV."""
        translation, quaternion, fov = raw.split((3, 4, 2), dim=-1)
        trans_act, quat_act, fl_act = self.activations
        return torch.cat([trans_act(translation), quat_act(quaternion), fl_act(fov)], dim=-1)

    def forward(
        self, aggregated_tokens_list: Sequence[torch.Tensor], num_iterations: int | None = None
    ) -> list[torch.Tensor]:
        """Activated pose encodings (B, S, 9), one per iteration (the last is the estimate)."""
        raw = self.raw_estimates(aggregated_tokens_list, num_iterations)
        return [self.activate(estimate) for estimate in raw]


def pose_encoding_to_cameras(
    pose_encoding: torch.Tensor, image_size_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """VGGT pose encodings (..., 9) -> extrinsics (..., 3, 4) and intrinsics (..., 3, 3).

    Extrinsics are camera-from-world ``[R | t]`` (OpenCV axes; R from the unnormalised
    quaternion). Intrinsics at image size (H, W): fx = (W/2) / tan(fov_w/2),
    fy = (H/2) / tan(fov_h/2), principal point at the image centre. A zero field of view gives
    an infinite focal length; callers that need finite cameras check.
    """
    height, width = (int(v) for v in image_size_hw)
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size_hw must be positive (H, W), got {tuple(image_size_hw)}")
    if pose_encoding.shape[-1] != POSE_ENCODING_DIM:
        raise ValueError(
            f"pose_encoding must have shape (..., {POSE_ENCODING_DIM}), got "
            f"{tuple(pose_encoding.shape)}"
        )
    translation, quaternion = pose_encoding[..., :3], pose_encoding[..., 3:7]
    fov_h, fov_w = pose_encoding[..., 7], pose_encoding[..., 8]
    extrinsics = torch.cat([quaternion_to_matrix(quaternion), translation[..., None]], dim=-1)
    fx = (width / 2.0) / torch.tan(fov_w / 2.0)
    fy = (height / 2.0) / torch.tan(fov_h / 2.0)
    intrinsics = torch.zeros(*pose_encoding.shape[:-1], 3, 3, dtype=fx.dtype, device=fx.device)
    intrinsics[..., 0, 0], intrinsics[..., 1, 1] = fx, fy
    intrinsics[..., 0, 2], intrinsics[..., 1, 2] = width / 2.0, height / 2.0
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics
