"""Model samples of datasets: frames + cameras -> the reference's sample dict, and the Re10k
evaluation dataset.

:func:`preprocess_views` builds one sample through the shared model-input path
(:mod:`lagernvs.data.model_inputs`: crop/resize, float32 scene normalisation, camera tokens and
Plücker rays, the degenerate-camera rule), exactly as the reference evaluation pipeline does; the
datasets, the training and evaluation streams and the pipeline all go through that path.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lagernvs.cameras import c2w_to_w2c
from lagernvs.data.images import load_images
from lagernvs.data.model_inputs import (
    MAX_SCENE_SCALE_RATIO,
    MIN_CAMERA_SCALE,
    condition_cameras,
    crop_resize_views,
)
from lagernvs.data.readers import list_scenes, load_scene
from lagernvs.data.views import IndexEntry, read_view_index

__all__ = [
    "MAX_SCENE_SCALE_RATIO",
    "MIN_CAMERA_SCALE",
    "Re10kEvalDataset",
    "preprocess_views",
    "reference_c2w",
]

Frame = Tensor | str | Path | bytes


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
        frames: V frames (float tensors (3, H, W) in [0, 1], paths, encoded bytes, or anything
            else :func:`~lagernvs.data.images.load_images` reads except 8-bit tensors); sizes
            may differ.
        c2w: (V, 4, 4) OpenCV camera-to-world poses (cast to float32 like the reference).
        fxfycxcy: (V, 4) intrinsics in pixels of each frame as given.
        image_size: output (h, w).
        num_cond_views: the first ``num_cond_views`` views condition the model.
        split: ``"test"`` or ``"train"`` (only changes the single-view camera-token scales).
        zero_cond_cameras: remove the conditioning views' rays and pose tokens (unposed input).
        image_ids: optional V names carried through.

    Returns:
        dict with ``images`` (V, 3, h, w) float32, ``rays`` (V, 6, h, w) float32,
        ``cam_tokens`` (V, 11) float32, ``is_valid`` (1,) bool (the reference's flag:
        camera_scale > 1e-3 and a finite scene_scale_ratio <= 1e4, so False for one conditioning
        view; and no degenerate cameras, :func:`~lagernvs.data.model_inputs.camera_problem`),
        ``c2w`` (V, 4, 4) float32 normalised poses, ``fxfycxcy`` (V, 4) float64 intrinsics of
        the output images, ``camera_scale``, ``scene_scale``, ``scene_scale_ratio`` (float32
        scalars), ``num_cond_views`` (int), ``image_ids``.
    """
    images = load_images(frames, name="frame", allow_uint8=False)
    num_views = len(images)
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
    out_images, out_intrinsics = crop_resize_views(images, dst_hw, fxfycxcy)
    conditioning = condition_cameras(
        c2w, out_intrinsics, dst_hw, num_cond_views, split=split,
        zero_cond_cameras=zero_cond_cameras,
    )  # fmt: skip
    norm = conditioning.normalization
    valid = conditioning.problem is None and float(norm.camera_scale) > MIN_CAMERA_SCALE
    return {
        "images": out_images,
        "rays": conditioning.rays,
        "cam_tokens": conditioning.tokens,
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
