"""VGGT camera estimation: source photos without poses -> :class:`Cameras` for LagerNVS.

:class:`VGGTCameraEstimator` is VGGT-1B's aggregator (the same :class:`Aggregator` the LagerNVS
encoder uses, called without camera conditioning since VGGT-1B has no camera-token MLP) plus its
:class:`CameraHead`. Keys are VGGT's (``aggregator.*``, ``camera_head.*``), so VGGT-1B's
``model.pt`` loads strictly on those keys; its depth, point and track heads are skipped.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from lagernvs.cameras import Cameras, normalize_scene

from .camera_head import CameraHead, pose_encoding_to_cameras
from .checkpoints import VGGTLoadResult, check_state_dict, load_original_state_dict
from .encoder import Aggregator

logger = logging.getLogger(__name__)

USED_PREFIXES = ("aggregator.", "camera_head.")
ESTIMATOR_PRESETS: dict[str, dict[str, Any]] = {
    # VGGT-1B: DINOv2 ViT-L/14 at 518, 24 frame/global block pairs of width 1024, camera head
    # of width 2048 with 16 heads and 4 trunk blocks (the constructor defaults).
    "vggt_1b": {},
    # A ~160k-parameter estimator for tests.
    "tiny": {
        "encoder_dim": 32,
        "dino_depth": 2,
        "dino_heads": 2,
        "aggregator_depth": 2,
        "aggregator_heads": 2,
        "encoder_image_size": 56,
        "head_heads": 2,
        "head_depth": 1,
    },
}


def estimator_config(name: str, **overrides: Any) -> dict[str, Any]:
    """Constructor arguments of estimator preset ``name`` with ``overrides`` applied."""
    if name not in ESTIMATOR_PRESETS:
        raise ValueError(
            f"unknown estimator preset {name!r}; available presets: {sorted(ESTIMATOR_PRESETS)}"
        )
    return {**ESTIMATOR_PRESETS[name], **overrides}


def vggt_input_size(height: int, width: int, target_width: int, patch_size: int) -> tuple[int, int]:
    """(H, W) VGGT's viewer resizes to: width ``target_width``, height to a patch multiple.

    The height is ``floor(trunc(target_width * H / W) / patch) * patch`` whatever the
    orientation (portrait images get a height above ``target_width``).
    """
    return (target_width * height // width) // patch_size * patch_size, target_width


def _as_views(images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """User images -> one (V, 3, H, W) float tensor, with a one-line error for bad input."""
    layout = "a (V, 3, H, W) tensor or a list of (3, H, W) tensors"
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be {layout}, got a tensor of shape {tuple(images.shape)}"
            )
        views = images
    elif isinstance(images, Sequence) and not isinstance(images, str):
        shapes = [
            tuple(i.shape) if isinstance(i, torch.Tensor) else type(i).__name__ for i in images
        ]
        if not images or any(not isinstance(s, tuple) or len(s) != 3 or s[0] != 3 for s in shapes):
            raise ValueError(f"images must be {layout}, got a list of {shapes or 'nothing'}")
        if len(set(shapes)) > 1:
            raise ValueError(f"all images must have the same size, got {shapes}; resize them first")
        views = torch.stack(list(images))
    else:
        raise ValueError(f"images must be {layout}, got {type(images).__name__}")
    if views.shape[0] == 0 or min(views.shape[-2:]) == 0:
        raise ValueError(f"images must hold at least one non-empty view, got {tuple(views.shape)}")
    if not views.is_floating_point():
        raise ValueError(
            f"images must be float tensors in [0, 1], got {views.dtype}; divide by 255"
        )
    if not bool(torch.isfinite(views).all()):
        raise ValueError("images contain NaN or infinite values")
    low, high = float(views.min()), float(views.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"images must be in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    return views


def _ignored_summary(keys: list[str]) -> str:
    """'depth_head (12), track_head (40)': ignored keys counted by top-level module."""
    counts = Counter(key.split(".")[0] for key in keys)
    return ", ".join(f"{name} ({count})" for name, count in sorted(counts.items()))


class VGGTCameraEstimator(ModelMixin, ConfigMixin):
    """VGGT aggregator + camera head: estimates the cameras of unposed source images.

    The defaults are VGGT-1B's sizes; :meth:`from_vggt_checkpoint` loads its weights and
    :meth:`from_preset` builds the ``ESTIMATOR_PRESETS`` sizes (``"tiny"`` for tests).

    Args:
        encoder_dim, dino_depth, dino_heads, aggregator_depth, aggregator_heads,
            encoder_image_size, encoder_patch_size, dino_num_register_tokens,
            aggregator_num_register_tokens, encoder_mlp_ratio, rope_frequency: the aggregator,
            named as in :class:`~lagernvs.models.LagerNVSModel`. ``encoder_image_size`` is also
            the width images are resized to.
        head_heads, head_depth, head_iterations: camera-head attention heads, trunk depth and
            refinement iterations (its width is 2 x ``encoder_dim``).
    """

    @register_to_config
    def __init__(
        self,
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
        head_heads: int = 16,
        head_depth: int = 4,
        head_iterations: int = 4,
    ) -> None:
        super().__init__()
        self.aggregator = Aggregator(
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
        self.camera_head = CameraHead(
            dim_in=2 * encoder_dim,
            num_heads=head_heads,
            trunk_depth=head_depth,
            mlp_ratio=encoder_mlp_ratio,
            num_iterations=head_iterations,
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> VGGTCameraEstimator:
        """A freshly initialised estimator of preset ``name`` (see ``ESTIMATOR_PRESETS``)."""
        return cls(**estimator_config(name, **overrides))

    @classmethod
    def from_vggt_checkpoint(
        cls,
        path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
        preset: str = "vggt_1b",
        **overrides: Any,
    ) -> VGGTCameraEstimator:
        """An estimator with the weights of a VGGT checkpoint (VGGT-1B's ``model.pt`` or
        ``.safetensors``, or a state dict), loaded strictly (see :meth:`load_vggt_checkpoint`)."""
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            model = cls(**estimator_config(preset, **overrides))
        model.load_vggt_checkpoint(path_or_state_dict)
        return model.eval()

    def load_vggt_checkpoint(
        self, path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor]
    ) -> VGGTLoadResult:
        """Load the ``aggregator.*`` and ``camera_head.*`` weights of a VGGT checkpoint.

        Strict on those keys: a missing, unexpected or wrong-shape key raises a ValueError that
        names it. Other keys (VGGT-1B's depth, point and track heads) are skipped, and one log
        message says which and how many. Files are read with ``torch.load(weights_only=True)``
        or safetensors.
        """
        state_dict = load_original_state_dict(path_or_state_dict)
        source = (
            "the VGGT state dict"
            if isinstance(path_or_state_dict, Mapping)
            else f"the VGGT checkpoint {os.fspath(path_or_state_dict)}"
        )
        used = {k: v for k, v in state_dict.items() if k.startswith(USED_PREFIXES)}
        ignored = [k for k in state_dict if not k.startswith(USED_PREFIXES)]
        if not used:
            raise ValueError(
                f"{source} has no 'aggregator.*' or 'camera_head.*' keys (it holds "
                f"{_ignored_summary(ignored)}); pass a VGGT checkpoint such as VGGT-1B's model.pt"
            )
        expected = self.state_dict()
        check_state_dict(expected, used, source)
        on_meta = any(p.is_meta for p in self.parameters())
        converted = {k: used[k].to(dtype=v.dtype) for k, v in expected.items()}
        self.load_state_dict(converted, strict=True, assign=on_meta)
        if ignored:
            logger.info(
                "%s: ignored %d keys the camera estimator does not use: %s",
                source,
                len(ignored),
                _ignored_summary(ignored),
            )
        return VGGTLoadResult(loaded=list(expected), ignored=ignored)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) the images are resized to before the aggregator."""
        return vggt_input_size(
            height, width, self.config.encoder_image_size, self.config.encoder_patch_size
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Pose encodings (B, S, 9) of every head iteration (the last is the estimate).

        ``images`` (B, S, 3, h, w) in [0, 1], h and w multiples of the patch size. On CUDA the
        aggregator runs under bf16 autocast (fp16 where bf16 is unsupported); the head always
        runs in float32 with autocast disabled, as in the official demos.
        """
        batch, views = images.shape[:2]
        no_camera = images.new_zeros(batch, views, self.config.encoder_dim)
        device_type = images.device.type
        half = torch.bfloat16
        if images.is_cuda and not torch.cuda.is_bf16_supported():
            half = torch.float16
        with torch.autocast(device_type, dtype=half, enabled=images.is_cuda):
            tokens = self.aggregator(images, no_camera)
        with torch.autocast(device_type, enabled=False):
            return self.camera_head([tokens.float()])

    @torch.no_grad()
    def estimate_cameras(self, images: torch.Tensor | Sequence[torch.Tensor]) -> Cameras:
        """Cameras of ``images`` in the official viewer's convention, normalised like training.

        Args:
            images: a (V, 3, H, W) tensor or a list of V (3, H, W) tensors of one size, in [0, 1].

        Returns:
            V cameras at the images' own size (H, W), float32 on the images' device:

            * poses relative to camera 0 (its camera-to-world matrix is the identity), inverted
              from VGGT's camera-from-world output of the last head iteration;
            * scaled like the training data (:func:`lagernvs.cameras.normalize_scene` with every
              view conditioning): camera centres divided by 1.35 x the farthest camera's
              distance from camera 0, so that camera sits at 1/1.35 ~ 0.741; a single view is
              the identity;
            * one focal length for all views, the mean of every view's fx and fy (converted
              from the predicted fields of view at (H, W)), principal point at (W/2, H/2).

            VGGT's camera head predicts no per-camera confidence, so none is returned.

        Images are resized to width ``encoder_image_size`` (518) and the patch-multiple height
        of :func:`vggt_input_size` (bilinear, antialiased) before the aggregator.
        """
        views = _as_views(images)
        height, width = views.shape[-2:]
        size = self.input_size(height, width)
        patch = self.config.encoder_patch_size
        if size[0] < patch:
            raise ValueError(
                f"images of size {height}x{width} are too wide for VGGT (resized height "
                f"{size[0]} < {patch}); crop them to a less extreme aspect ratio"
            )
        resized = F.interpolate(
            views.to(self.device, torch.float32),
            size=size,
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        encoding = self(resized[None])[-1][0].double()
        w2c, intrinsics = pose_encoding_to_cameras(encoding, (height, width))
        focals = intrinsics.diagonal(dim1=-2, dim2=-1)[:, :2]
        bad = ~(torch.isfinite(focals).all(-1) & (focals > 0).all(-1) & torch.isfinite(w2c).all())
        if bool(bad.any()):
            raise ValueError(
                f"VGGT predicted unusable cameras (field of view outside (0, pi) or a degenerate "
                f"rotation) for views {bad.nonzero().flatten().tolist()}; check that the weights "
                "are VGGT-1B's"
            )
        rotation_t = w2c[:, :, :3].transpose(-1, -2)
        c2w = torch.eye(4, dtype=w2c.dtype, device=w2c.device).repeat(len(w2c), 1, 1)
        c2w[:, :3, :3] = rotation_t
        c2w[:, :3, 3] = -(rotation_t @ w2c[:, :, 3:])[..., 0]
        normalized = normalize_scene(c2w, num_cond_views=len(c2w))
        if not bool(torch.isfinite(normalized.c2w).all()):
            raise ValueError(
                "VGGT placed every camera at the same position, so the scene scale is undefined; "
                "use photos taken from different positions"
            )
        focal = focals.mean()
        fxfycxcy = torch.stack(
            [focal, focal, focal.new_tensor(width / 2), focal.new_tensor(height / 2)]
        )
        cameras = Cameras(normalized.c2w.float(), fxfycxcy.float(), (height, width))
        return cameras.to(views.device)
