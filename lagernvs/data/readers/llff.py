"""LLFF scenes: ``poses_bounds.npy`` (N x 17: a 3x5 pose-hwf matrix, near and far) plus images.

LLFF stores c2w columns as (down, right, back): OpenCV x = right, y = down, z = -back. One
focal length and the image centre as principal point (``hwf``) are scaled to the images on
disk, which are matched to the poses in sorted file order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lagernvs.data.readers.common import (
    disk_sizes,
    list_images,
    ordered_scene,
    rescale_intrinsics,
    single_scene_path,
)
from lagernvs.data.scene import Scene

POSES_FILE = "poses_bounds.npy"


def read_llff(path: Path, scene_id: str | None, image_dir: str | None) -> Scene:
    """An LLFF scene (folder or its ``poses_bounds.npy``), or ``scene_id`` under a root."""
    scene_path, name = single_scene_path(path, scene_id)
    npy = scene_path if scene_path.is_file() else scene_path / POSES_FILE
    if not npy.is_file():
        raise FileNotFoundError(f"LLFF file {npy} does not exist")
    root = npy.parent
    scene_id = name or root.name
    what = f"LLFF scene {scene_id!r}"
    array = np.load(npy).astype(np.float64)
    if array.ndim != 2 or array.shape[1] != 17:
        raise ValueError(f"{npy} must have shape (N, 17) (3x5 pose + near, far), got {array.shape}")
    folder = root / (image_dir or "images")
    paths = list_images(folder)
    if len(paths) != len(array):
        raise ValueError(
            f"{what}: inconsistent frame counts: {npy.name} has {len(array)} poses but {folder} "
            f"holds {len(paths)} images; use the complete image folder (image_dir=)"
        )
    poses = torch.from_numpy(array[:, :15].reshape(-1, 3, 5))
    down, right, back, centre, hwf = poses.unbind(-1)
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(array), 1, 1)
    c2w[:, :3, :3] = torch.stack([right, down, -back], dim=-1)
    c2w[:, :3, 3] = centre
    height, width, focal = hwf.unbind(-1)
    fxfycxcy = torch.stack([focal, focal, width / 2.0, height / 2.0], dim=-1)
    sizes = disk_sizes(paths, what)
    return ordered_scene(
        scene_id,
        paths,
        folder,
        "llff",
        image_sizes=sizes,
        c2w=c2w,
        fxfycxcy=rescale_intrinsics(fxfycxcy, torch.stack([height, width], -1), sizes, what),
        bounds=torch.from_numpy(array[:, 15:17]),
    )
