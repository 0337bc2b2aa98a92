"""Frames + cameras -> model inputs, exactly as the reference evaluation pipeline does it.

Steps (fixture README, "Data pipeline"): largest centred crop with the target aspect ratio
(image offsets rounded half-to-even like torchvision's CenterCrop, intrinsics offsets floored),
antialiased bilinear resize (torchvision ``Resize`` on tensors = ``F.interpolate(...,
antialias=True)``), clip to [0, 1], intrinsics adjusted by :func:`crop_resize_intrinsics`
(kept in float64), poses cast to float32 and normalised by :func:`normalize_scene`, Plücker rays
and 11-d camera tokens by :func:`build_camera_conditioning`, validity flag
``camera_scale > 1e-3``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor
from torch.utils.data import Dataset

from lagernvs.cameras import (
    build_camera_conditioning,
    c2w_to_w2c,
    center_crop_size,
    crop_resize_intrinsics,
    normalize_scene,
)
from lagernvs.data.images import decode_image, read_image
from lagernvs.data.sources import list_scenes, load_scene
from lagernvs.data.views import IndexEntry, read_view_index

__all__ = [
    "MAX_SCENE_SCALE_RATIO",
    "MIN_CAMERA_SCALE",
    "Re10kEvalDataset",
    "center_crop_offsets",
    "crop_resize_images",
    "load_frames",
    "preprocess_views",
    "reference_c2w",
]

MIN_CAMERA_SCALE = 1e-3
"""A sample is valid when its camera_scale exceeds this (reference rule)."""
MAX_SCENE_SCALE_RATIO = 1e4
"""Views whose scene_scale_ratio exceeds this (or is NaN) must be re-drawn (reference rule)."""

Frame = Tensor | str | Path | bytes


def center_crop_offsets(src_hw: tuple[int, int], crop_hw: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of a centred crop as torchvision's CenterCrop: round half to even.

    The intrinsics use floor instead (:func:`crop_resize_intrinsics`); both agree whenever the
    size difference is even.
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


def load_frames(frames: Sequence[Frame]) -> list[Tensor]:
    """Frames given as tensors (3, H, W) in [0, 1], file paths or encoded bytes -> tensors."""
    out = []
    for index, frame in enumerate(frames):
        if isinstance(frame, Tensor):
            if frame.dim() != 3 or frame.shape[0] != 3 or not frame.is_floating_point():
                raise ValueError(
                    f"frame {index} must be a float (3, H, W) tensor in [0, 1], got "
                    f"{frame.dtype} {tuple(frame.shape)}"
                )
            out.append(frame)
        elif isinstance(frame, bytes):
            out.append(decode_image(frame, name=f"frame {index}"))
        else:
            out.append(read_image(frame))
    return out


def reference_c2w(c2w: Tensor) -> Tensor:
    """float32 c2w as the reference computes it: the float32 inverse of the float32 w2c.

    The reference stores w2c, casts it to float32 and inverts it there; doing the same from our
    float64 c2w reproduces its poses to the last bit (not just to float32 rounding).
    """
    return torch.linalg.inv(c2w_to_w2c(c2w.to(torch.float64)).to(torch.float32))


def preprocess_views(
    frames: Sequence[Frame],
    c2w: Tensor,
    fxfycxcy: Tensor,
    image_size: tuple[int, int],
    num_cond_views: int,
    split: str = "test",
    zero_cond_cameras: bool = False,
    image_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Turn V frames (conditioning views first) and their cameras into one model sample.

    Args:
        frames: V frames (tensors (3, H, W) in [0, 1], paths or encoded bytes); sizes may differ.
        c2w: (V, 4, 4) OpenCV camera-to-world poses (cast to float32 like the reference).
        fxfycxcy: (V, 4) intrinsics in pixels of each frame as given.
        image_size: output (h, w).
        num_cond_views: the first ``num_cond_views`` views condition the model.
        split: ``"test"`` or ``"train"`` (only changes the single-view camera-token scales).
        zero_cond_cameras: remove the conditioning views' rays and pose tokens (unposed input).
        image_ids: optional V names carried through.

    Returns:
        dict with ``images`` (V, 3, h, w) float32, ``rays`` (V, 6, h, w) float32,
        ``cam_tokens`` (V, 11) float32, ``is_valid`` (1,) bool (camera_scale > 1e-3 and a finite
        scene_scale_ratio <= 1e4), ``c2w`` (V, 4, 4) float32 normalised poses, ``fxfycxcy``
        (V, 4) float64 intrinsics of the output images, ``camera_scale``, ``scene_scale``,
        ``scene_scale_ratio`` (float32 scalars), ``num_cond_views`` (int), ``image_ids``.
    """
    num_views = len(frames)
    c2w = torch.as_tensor(c2w)
    fxfycxcy = torch.as_tensor(fxfycxcy, dtype=torch.float64)
    if c2w.shape != (num_views, 4, 4) or fxfycxcy.shape != (num_views, 4):
        raise ValueError(
            f"inconsistent frame counts: {num_views} frames but c2w {tuple(c2w.shape)} and "
            f"fxfycxcy {tuple(fxfycxcy.shape)}; pass one camera per frame"
        )
    if image_ids is not None and len(image_ids) != num_views:
        raise ValueError(f"{len(image_ids)} image_ids for {num_views} frames")
    dst_hw = (int(image_size[0]), int(image_size[1]))
    images = load_frames(frames)
    out_images = torch.empty(num_views, 3, *dst_hw, dtype=torch.float32)
    out_intrinsics = torch.empty_like(fxfycxcy)
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    for src_hw in sorted(set(sizes)):  # one vectorised pass per distinct source size
        idx = [i for i, size in enumerate(sizes) if size == src_hw]
        stacked = torch.stack([images[i] for i in idx]).to(torch.float32)
        out_images[idx] = crop_resize_images(stacked, dst_hw)
        out_intrinsics[idx] = crop_resize_intrinsics(fxfycxcy[idx], src_hw, dst_hw)

    norm = normalize_scene(c2w.to(torch.float32), num_cond_views)
    rays, tokens = build_camera_conditioning(
        norm.c2w,
        out_intrinsics,
        dst_hw[0],
        dst_hw[1],
        norm.camera_scale,
        num_cond_views,
        split=split,
        zero_cond_cameras=zero_cond_cameras,
    )
    ratio = float(norm.scene_scale_ratio)
    valid = float(norm.camera_scale) > MIN_CAMERA_SCALE and ratio <= MAX_SCENE_SCALE_RATIO
    return {
        "images": out_images,
        "rays": rays.to(torch.float32),
        "cam_tokens": tokens.to(torch.float32),
        "is_valid": torch.tensor([valid]),
        "c2w": norm.c2w,
        "fxfycxcy": out_intrinsics,
        "camera_scale": norm.camera_scale.to(torch.float32),
        "scene_scale": norm.scene_scale.to(torch.float32),
        "scene_scale_ratio": norm.scene_scale_ratio.to(torch.float32),
        "num_cond_views": int(num_cond_views),
        "image_ids": list(image_ids)
        if image_ids is not None
        else [str(i) for i in range(num_views)],
    }


class Re10kEvalDataset(Dataset):
    """Fixed-view evaluation over a Re10k root (LVSM layout), like the reference test dataset.

    One item per index entry (scenes mapped to ``null`` or an empty list are skipped), in the
    index file's order. Views are context then target indices into the scene's frames sorted by
    file name. ``image_ids`` are ``<seq>_<file name without ".jpg">`` as in the reference.

    Args:
        root: the dataset root holding ``<split>/{images,metadata}`` (or the folder above
            ``re10k/``, the reference's data root).
        index_file: pixelSplat/LagerNVS or latentSplat view index (see :mod:`views`).
        split, image_size: dataset split and output (h, w).
        num_cond_views: number of context views; None takes each entry's context length.
        zero_cond_cameras: unposed evaluation (conditioning camera information removed).
        skip_missing: drop index scenes absent from the root (with a warning) instead of raising.
    """

    def __init__(
        self,
        root: str | Path,
        index_file: str | Path,
        split: str = "test",
        image_size: tuple[int, int] = (256, 256),
        num_cond_views: int | None = None,
        zero_cond_cameras: bool = False,
        index_format: str | None = None,
        skip_missing: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.zero_cond_cameras = zero_cond_cameras
        entries = read_view_index(index_file, format=index_format)
        available = set(list_scenes(self.root, "re10k", split=split))
        missing = sorted({e.scene for e in entries} - available)
        if missing and not skip_missing:
            raise FileNotFoundError(
                f"{len(missing)} scenes of {index_file} are not in {self.root} split {split!r} "
                f"(e.g. {missing[0]}); fix the root or pass skip_missing=True"
            )
        if missing:
            warnings.warn(
                f"skipping {len(missing)} scenes of {index_file} absent from {self.root}",
                stacklevel=2,
            )
        self.entries: list[IndexEntry] = [e for e in entries if e.scene in available]
        for entry in self.entries:
            if num_cond_views is not None and len(entry.context) != num_cond_views:
                raise ValueError(
                    f"index entry of scene {entry.scene} has {len(entry.context)} context views "
                    f"but num_cond_views={num_cond_views}; use a matching index file"
                )

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        scene = load_scene(self.root, "re10k", scene_id=entry.scene, split=self.split)
        views = scene.select(list(entry.context) + list(entry.target))
        ids = [f"{entry.scene}_{p.name.removesuffix('.jpg')}" for p in views.image_paths]
        return preprocess_views(
            views.image_paths,
            reference_c2w(views.c2w),
            views.fxfycxcy,
            self.image_size,
            num_cond_views=len(entry.context),
            split=self.split,
            zero_cond_cameras=self.zero_cond_cameras,
            image_ids=ids,
        )
