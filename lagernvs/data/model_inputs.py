"""Images and cameras -> model inputs: the one path, shared by the pipeline and the data pipeline.

The steps follow the reference evaluation pipeline:

1. :func:`crop_resize_views`: the largest centred crop with the target aspect ratio (image
   offsets rounded half-to-even like torchvision's CenterCrop, intrinsics offsets floored),
   antialiased bilinear resize (torchvision ``Resize`` on tensors = ``F.interpolate(...,
   antialias=True)``), clip to [0, 1]; intrinsics adjusted by
   :func:`~lagernvs.cameras.crop_resize_intrinsics` and kept in float64.
2. :func:`condition_cameras`: poses cast to float32 and normalised by
   :func:`~lagernvs.cameras.normalize_scene` (relative to the first view, the farthest
   conditioning camera at 1/1.35), then 11-d camera tokens and Plücker rays. Unposed input zeroes
   the conditioning views' pose information (:func:`unposed_camera_tokens` when there are no
   cameras at all).
3. :func:`camera_problem`: the one rule for degenerate cameras. The data pipeline records it as
   the sample's validity flag; the pipeline refuses such cameras with its message.

User photos get their model size here too: :func:`model_input_size` keeps the aspect ratio for
models trained on several (config ``variable_aspect``: longest side the model's, each side a
multiple of its patch size, aspect limited to ``max_aspect``) and gives square-only models their
fixed size; :func:`crop_note` says when that crops a photo noticeably, and
:func:`check_source_images` refuses degenerate photos (a side under :data:`MIN_IMAGE_SIDE`
pixels, an aspect beyond :data:`MAX_IMAGE_ASPECT`).

:func:`~lagernvs.data.preprocess.preprocess_views` (datasets, evaluation, training) and
:class:`~lagernvs.pipeline.LagerNVSPipeline` (``encode``/``render``) both build their inputs here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from lagernvs.cameras import (
    SCENE_SCALE_FACTOR,
    SceneNormalization,
    build_camera_conditioning,
    camera_tokens,
    center_crop_size,
    crop_resize_intrinsics,
    normalize_scene,
    zero_conditioning_cameras,
)

__all__ = [
    "MAX_IMAGE_ASPECT",
    "MAX_SCENE_SCALE_RATIO",
    "MIN_CAMERA_SCALE",
    "MIN_IMAGE_SIDE",
    "MIN_RELATIVE_SPREAD",
    "CameraConditioning",
    "camera_problem",
    "center_crop_offsets",
    "check_source_images",
    "condition_cameras",
    "crop_note",
    "crop_resize_images",
    "crop_resize_views",
    "model_frame_poses",
    "model_input_size",
    "unposed_camera_tokens",
]

MIN_CAMERA_SCALE = 1e-3
"""The reference counts a sample as valid only when its camera_scale exceeds this."""
MAX_SCENE_SCALE_RATIO = 1e4
"""Views farther from the first camera than this many scene scales are degenerate (reference)."""
MIN_RELATIVE_SPREAD = 1e-6
"""Conditioning cameras whose centres spread less than this, relative to their coordinates,
count as one position: about ten float32 rounding steps, below which the float32 normalisation
divides rounding noise."""


MIN_IMAGE_SIDE = 16
"""Source images need at least this many pixels a side: below, they hold no usable detail."""
MAX_IMAGE_ASPECT = 4.0
"""Source images may be at most this elongated (long side / short side): a centre crop to a
square model, or to a variable-aspect model's limit, would keep less than a quarter of a more
extreme one (a 4000x10 strip, a stray 1xN image)."""
NOTE_CROP_FRACTION = 0.01
""":func:`crop_note` speaks up when a crop drops more than this fraction of a side."""


def check_source_images(frames: Sequence[Tensor], name: str = "image") -> None:
    """Refuse degenerate source images (one-line ValueError naming the image and its size)."""
    for index, frame in enumerate(frames):
        height, width = int(frame.shape[-2]), int(frame.shape[-1])
        aspect = max(height, width) / max(min(height, width), 1)
        if aspect > MAX_IMAGE_ASPECT:
            raise ValueError(
                f"{name} {index} is {height}x{width} pixels, an aspect ratio of {aspect:.3g}:1; "
                f"the model takes at most {MAX_IMAGE_ASPECT:g}:1 (crop it to a less elongated "
                "shape)"
            )
        if min(height, width) < MIN_IMAGE_SIDE:
            raise ValueError(
                f"{name} {index} is {height}x{width} pixels; source images need at least "
                f"{MIN_IMAGE_SIDE} pixels a side (give the photo itself, not a thumbnail or icon)"
            )


def model_input_size(config: Mapping[str, Any], image_hw: Sequence[int]) -> tuple[int, int]:
    """The (h, w) a model sees images of size ``image_hw`` at (also its default render size).

    Square-only models (config ``variable_aspect`` false or absent, every official model but
    the general one): their ``image_size``. Variable-aspect models: the image's aspect ratio
    limited to ``max_aspect`` (default 2), the longest side the longest side of
    ``image_size``, the other side rounded to a multiple of ``patch_size``. E.g. 480x640 ->
    384x512 and 1920x1080 -> 512x288 for the general 512 model.
    """
    height, width = (int(v) for v in config["image_size"])
    if not config.get("variable_aspect", False):
        return height, width
    longest, patch = max(height, width), int(config["patch_size"])
    limit = float(config.get("max_aspect", 2.0))
    aspect = min(max(int(image_hw[1]) / int(image_hw[0]), 1.0 / limit), limit)  # W / H
    short = max(patch, round(longest / max(aspect, 1.0 / aspect) / patch) * patch)
    return (short, longest) if aspect >= 1.0 else (longest, short)


def crop_note(config: Mapping[str, Any], image_hw: Sequence[int]) -> str | None:
    """One line saying how images of size ``image_hw`` are centre-cropped for the model, or None
    when the crop drops at most 1% of a side (rounding to the patch grid)."""
    src_hw = (int(image_hw[0]), int(image_hw[1]))
    dst_hw = model_input_size(config, src_hw)
    crop_h, crop_w = center_crop_size(src_hw, dst_hw)
    if min(crop_h / src_hw[0], crop_w / src_hw[1]) >= 1.0 - NOTE_CROP_FRACTION:
        return None
    if config.get("variable_aspect", False):
        reason = f"its aspect ratio is limited to {float(config.get('max_aspect', 2.0)):g}:1"
    else:
        reason = f"it works on {dst_hw[0]}x{dst_hw[1]} images only"
    return (
        f"note: the model centre-crops {src_hw[0]}x{src_hw[1]} images to {crop_h}x{crop_w} "
        f"({reason}); crop them yourself to choose what stays"
    )


def center_crop_offsets(src_hw: tuple[int, int], crop_hw: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of a centred crop as torchvision's CenterCrop: round half to even.

    The intrinsics use floor instead (:func:`~lagernvs.cameras.crop_resize_intrinsics`); both
    agree whenever the size difference is even.
    """
    return round((src_hw[0] - crop_hw[0]) / 2.0), round((src_hw[1] - crop_hw[1]) / 2.0)


def crop_resize_images(images: Tensor, dst_hw: tuple[int, int]) -> Tensor:
    """Centre-crop (..., C, H, W) float images to the aspect of ``dst_hw``, resize, clip to [0, 1].

    The resize is bilinear with antialiasing and ``align_corners=False`` (torchvision
    ``Resize`` on tensors); it is skipped when the crop already has the target size.
    """
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got {images.dtype}; divide by 255")
    src_hw = (int(images.shape[-2]), int(images.shape[-1]))
    dst_hw = (int(dst_hw[0]), int(dst_hw[1]))
    crop_h, crop_w = center_crop_size(src_hw, dst_hw)
    top, left = center_crop_offsets(src_hw, (crop_h, crop_w))
    cropped = images[..., top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) != dst_hw:
        lead = cropped.shape[:-3]
        flat = cropped.reshape(-1, *cropped.shape[-3:])
        flat = F.interpolate(
            flat, size=dst_hw, mode="bilinear", align_corners=False, antialias=True
        )
        cropped = flat.reshape(*lead, *flat.shape[-3:])
    return cropped.clamp(0.0, 1.0)


def crop_resize_views(
    frames: Sequence[Tensor], dst_hw: tuple[int, int], fxfycxcy: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """V frames (3, H, W) of any sizes -> (V, 3, h, w) float32 images and their intrinsics.

    ``fxfycxcy`` (V, 4) are the intrinsics of the frames as given; they come back in float64 for
    the output size (None stays None). One vectorised pass per distinct source size.
    """
    dst_hw = (int(dst_hw[0]), int(dst_hw[1]))
    images = torch.empty(len(frames), 3, *dst_hw, dtype=torch.float32, device=frames[0].device)
    intrinsics = None
    if fxfycxcy is not None:
        fxfycxcy = torch.as_tensor(fxfycxcy, dtype=torch.float64)
        intrinsics = torch.empty_like(fxfycxcy)
    sizes = [(int(frame.shape[-2]), int(frame.shape[-1])) for frame in frames]
    for src_hw in sorted(set(sizes)):
        index = [i for i, size in enumerate(sizes) if size == src_hw]
        stacked = torch.stack([frames[i] for i in index]).to(torch.float32)
        images[index] = crop_resize_images(stacked, dst_hw)
        if intrinsics is not None:
            intrinsics[index] = crop_resize_intrinsics(fxfycxcy[index], src_hw, dst_hw)
    return images, intrinsics


def camera_problem(
    c2w: Tensor, num_cond_views: int, normalization: SceneNormalization | None = None
) -> str | None:
    """The one rule for degenerate cameras: why (V, 4, 4) poses cannot condition the model, or
    None when they can.

    Degenerate are (a) two or more conditioning cameras at one position (their spread is at most
    :data:`MIN_RELATIVE_SPREAD` of their coordinates, or the normalised camera_scale is not above
    :data:`MIN_CAMERA_SCALE`): the scene scale is undefined; (b) a view farther from the first
    camera than :data:`MAX_SCENE_SCALE_RATIO` scene scales (or NaN). ``normalization`` is
    :func:`~lagernvs.cameras.normalize_scene` of the float32 poses, computed when not given.
    """
    if normalization is None:
        normalization = normalize_scene(c2w.to(torch.float32), num_cond_views)
    if num_cond_views >= 2:
        centres = c2w[:num_cond_views, :3, 3].to(torch.float64)
        spread = float(torch.linalg.vector_norm(centres - centres[:1], dim=-1).max())
        limit = MIN_RELATIVE_SPREAD * (1.0 + float(centres.abs().max()))
        if not (spread > limit and float(normalization.camera_scale) > MIN_CAMERA_SCALE):
            return (
                "the source cameras all sit at the same position, so the scene scale is "
                "undefined; pass cameras at distinct positions, or no source cameras (unposed)"
            )
    ratio = float(normalization.scene_scale_ratio)
    if not ratio <= MAX_SCENE_SCALE_RATIO:
        return (
            f"a view is {ratio:.3g} scene scales from the first camera (at most "
            f"{MAX_SCENE_SCALE_RATIO:g}): the source cameras are too close together for it; "
            "choose views closer to the sources or sources farther apart"
        )
    return None


class CameraConditioning(NamedTuple):
    """What :func:`condition_cameras` computes for V views."""

    normalization: SceneNormalization
    """The reference scene normalisation (float32 poses in the model's frame, scales)."""
    tokens: Tensor
    """(V, 11) float32 camera tokens."""
    rays: Tensor | None
    """(V, 6, h, w) float32 Plücker rays (None when not asked for)."""
    problem: str | None
    """:func:`camera_problem` of the views (None: usable)."""


def condition_cameras(
    c2w: Tensor,
    fxfycxcy: Tensor,
    image_size: tuple[int, int],
    num_cond_views: int,
    split: str = "test",
    zero_cond_cameras: bool = False,
    with_rays: bool = True,
) -> CameraConditioning:
    """V cameras (conditioning views first) -> normalised poses, camera tokens and rays.

    Args:
        c2w: (V, 4, 4) OpenCV camera-to-world poses, cast to float32 like the reference.
        fxfycxcy: (V, 4) intrinsics of the model-size images (float64 from
            :func:`crop_resize_views`).
        image_size: the model-size (h, w).
        num_cond_views: the first ``num_cond_views`` views condition the model.
        split: ``"test"`` or ``"train"`` (only changes the single-view camera-token scales).
        zero_cond_cameras: remove the conditioning views' rays and pose tokens (unposed input).
        with_rays: compute the ray maps (the encoder needs tokens only).
    """
    height, width = int(image_size[0]), int(image_size[1])
    norm = normalize_scene(c2w.to(torch.float32), num_cond_views)
    if with_rays:
        rays, tokens = build_camera_conditioning(
            norm.c2w,
            fxfycxcy,
            height,
            width,
            norm.camera_scale,
            num_cond_views,
            split=split,
            zero_cond_cameras=zero_cond_cameras,
        )
        rays = rays.to(torch.float32)
    else:
        tokens = camera_tokens(
            norm.c2w, fxfycxcy, height, width, norm.camera_scale, num_cond_views, split=split
        )
        if zero_cond_cameras:
            empty = tokens.new_zeros(*tokens.shape[:-1], 6, 1, 1)
            tokens = zero_conditioning_cameras(empty, tokens, num_cond_views)[1]
        rays = None
    return CameraConditioning(
        norm, tokens.to(torch.float32), rays, camera_problem(c2w, num_cond_views, norm)
    )


def unposed_camera_tokens(num_views: int, split: str = "test") -> Tensor:
    """(V, 11) tokens of V conditioning views without cameras: what zeroing leaves of the tokens
    of any usable normalised scene (pose entries 0, camera_scale 1/1.35 with two or more views,
    the single-view scales of ``split`` otherwise)."""
    c2w = torch.eye(4).expand(num_views, 4, 4)
    intrinsics = torch.tensor([1.0, 1.0, 0.5, 0.5]).expand(num_views, 4)
    tokens = camera_tokens(c2w, intrinsics, 1, 1, 1.0 / SCENE_SCALE_FACTOR, num_views, split)
    empty = tokens.new_zeros(num_views, 6, 1, 1)
    return zero_conditioning_cameras(empty, tokens, num_views)[1]


def model_frame_poses(source_c2w: Tensor, c2w: Tensor) -> Tensor:
    """(T, 4, 4) float32 poses ``c2w`` in the model's frame of the posed sources ``source_c2w``.

    This is :func:`~lagernvs.cameras.normalize_scene` of the views (sources, then ``c2w``) with
    the sources conditioning, as :func:`condition_cameras` computes it for a dataset sample.
    """
    count = source_c2w.shape[0]
    views = torch.cat([source_c2w.to(torch.float32).cpu(), c2w.to(torch.float32).cpu()])
    return normalize_scene(views, count).c2w[count:]
