"""COLMAP scenes: a sparse model (``sparse/0``, ``sparse`` or the model folder) plus ``images/``.

COLMAP stores world-to-camera poses (qvec w x y z, tvec): c2w = [R^T | -R^T t]. Pinhole and
radial lens models are read (distortion kept in OpenCV's model); intrinsics given for another
resolution than the images on disk are scaled to them. Parsing is in :mod:`.colmap_model`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lagernvs.cameras import quaternion_to_matrix
from lagernvs.data.readers.colmap_model import find_model_files, read_colmap_model
from lagernvs.data.readers.common import (
    disk_sizes,
    distortion_or_none,
    ordered_scene,
    rescale_intrinsics,
    single_scene_path,
)
from lagernvs.data.scene import Scene

_INTRINSICS = {
    # name: (indices of fx, fy, cx, cy in params, indices of k1, k2, p1, p2 (None = 0))
    "SIMPLE_PINHOLE": ((0, 0, 1, 2), (None, None, None, None)),
    "PINHOLE": ((0, 1, 2, 3), (None, None, None, None)),
    "SIMPLE_RADIAL": ((0, 0, 1, 2), (3, None, None, None)),
    "RADIAL": ((0, 0, 1, 2), (3, 4, None, None)),
    "OPENCV": ((0, 1, 2, 3), (4, 5, 6, 7)),
}


def find_colmap_model(path: Path) -> Path | None:
    """The model folder of a scene folder (``path``, ``sparse/0`` or ``sparse``), else None."""
    for candidate in (path, path / "sparse" / "0", path / "sparse"):
        try:
            find_model_files(candidate)
        except FileNotFoundError:
            continue
        return candidate
    return None


def colmap_model_dir(path: str | Path) -> Path:
    """The COLMAP model folder of a scene folder, a ``sparse`` folder, a model or model file."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    model = find_colmap_model(path)
    if model is None:
        find_model_files(path / "sparse" / "0")  # raises a FileNotFoundError naming the files
    return model  # type: ignore[return-value]


def read_colmap(
    path: Path, scene_id: str | None, image_dir: str | None, require_images: bool
) -> Scene:
    """A COLMAP scene (folder, model folder or model file), or ``scene_id`` under a root."""
    scene_path, name = single_scene_path(path, scene_id)
    model_dir = colmap_model_dir(scene_path)
    root = model_dir.parent.parent if model_dir.parent.name == "sparse" else model_dir.parent
    model = read_colmap_model(model_dir, read_points=False)
    scene_id = name or root.name
    what = f"COLMAP scene {scene_id!r}"
    if not model.images:
        raise ValueError(f"{what}: the model in {model_dir} has no registered images")
    images = list(model.images.values())
    folder = root / (image_dir or "images")
    paths = [folder / im.name for im in images]
    intrinsics, distortion, declared, models = [], [], [], set()
    for im in images:
        if im.camera_id not in model.cameras:
            raise ValueError(f"{what}: image {im.name} refers to missing camera {im.camera_id}")
        cam = model.cameras[im.camera_id]
        if cam.model not in _INTRINSICS:
            raise ValueError(
                f"{what}: camera model {cam.model} is not supported (supported: "
                f"{', '.join(_INTRINSICS)}); undistort with 'colmap image_undistorter'"
            )
        focal_idx, dist_idx = _INTRINSICS[cam.model]
        intrinsics.append([cam.params[i] for i in focal_idx])
        distortion.append([0.0 if i is None else cam.params[i] for i in dist_idx] + [0.0])
        declared.append((cam.height, cam.width))
        models.add(cam.model)

    qvec = torch.from_numpy(np.stack([im.qvec for im in images]))
    tvec = torch.from_numpy(np.stack([im.tvec for im in images]))
    rotation_w2c = quaternion_to_matrix(qvec[:, [1, 2, 3, 0]])
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(images), 1, 1)
    c2w[:, :3, :3] = rotation_w2c.transpose(-1, -2)
    c2w[:, :3, 3] = -(rotation_w2c.transpose(-1, -2) @ tvec[..., None])[..., 0]

    fxfycxcy = torch.tensor(intrinsics, dtype=torch.float64)
    declared_hw = torch.tensor(declared, dtype=torch.int64)
    if require_images:
        sizes = disk_sizes(paths, what)
        fxfycxcy = rescale_intrinsics(fxfycxcy, declared_hw, sizes, what)
    else:
        sizes = declared_hw
    params = distortion_or_none(torch.tensor(distortion, dtype=torch.float64))
    return ordered_scene(
        scene_id,
        paths,
        folder,
        "colmap",
        image_sizes=sizes,
        c2w=c2w,
        fxfycxcy=fxfycxcy,
        distortion=params,
        distortion_model=None if params is None else ", ".join(sorted(models)),
    )
