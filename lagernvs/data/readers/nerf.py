"""NeRF / instant-ngp scenes: ``transforms.json`` (or Blender ``transforms_<split>.json``).

Poses are OpenGL camera-to-world (their camera y and z axes are flipped to OpenCV). Intrinsics
come from ``fl_x``/``fl_y``/``cx``/``cy`` or ``camera_angle_x``/``_y`` at the declared ``w``/``h``
(global or per frame) and are scaled to the images on disk; OpenCV radial-tangential distortion
(``k1``, ``k2``, ``p1``, ``p2``, ``k3``) is kept. DL3DV uses this reader with ``images_4``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lagernvs.cameras import opengl_to_opencv_c2w
from lagernvs.data.readers.common import (
    disk_sizes,
    distortion_or_none,
    json_frames,
    load_json,
    ordered_scene,
    rescale_intrinsics,
    single_scene_path,
)
from lagernvs.data.scene import Scene

_UNSUPPORTED_KEYS = ("k4", "is_fisheye", "fisheye")


def transforms_file(path: Path, split: str | None) -> Path:
    """The camera file of a scene: ``path`` itself, or its (``nerfstudio/``) transforms json."""
    if path.is_file():
        return path
    names = [f"transforms_{split}.json"] if split else ["transforms.json"]
    for folder in (path, path / "nerfstudio"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(
        f"no {' or '.join(names)} in {path}; pass the json file itself or split= for Blender "
        "style transforms_<split>.json"
    )


def read_nerf(
    path: Path,
    scene_id: str | None,
    split: str | None,
    image_dir: str | None,
    require_images: bool,
) -> Scene:
    """A NeRF scene (folder or json file), or ``scene_id`` under a root."""
    scene_path, name = single_scene_path(path, scene_id)
    json_path = transforms_file(scene_path, split)
    return read_transforms(
        json_path,
        scene_id=name or json_path.parent.name,
        image_dir=image_dir,
        require_images=require_images,
        source_format="nerf",
    )


def _frame_path(base: Path, file_path: str, image_dir: str | None) -> Path:
    rel = Path(file_path)
    if image_dir is not None:  # DL3DV: "images/frame_00001.png" -> "images_4/frame_00001.png"
        parts = rel.parts
        rel = Path(image_dir, *parts[1:]) if len(parts) > 1 else Path(image_dir, rel.name)
    path = base / rel
    if not path.suffix and not path.exists():  # Blender: "./train/r_0" -> r_0.png
        path = path.with_suffix(".png")
    return path


def read_transforms(
    json_path: Path,
    scene_id: str,
    image_dir: str | None,
    require_images: bool,
    source_format: str,
) -> Scene:
    """The scene of one transforms json (images under ``image_dir`` when given)."""
    data = load_json(json_path)
    frames = json_frames(data, json_path)
    what = f"{source_format} scene {scene_id!r}"
    model = str(data.get("camera_model", "OPENCV")).upper()
    if model not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE"):
        raise ValueError(
            f"{json_path}: camera_model {model} is not supported (only pinhole with OpenCV "
            "radial-tangential distortion); undistort the images first"
        )
    base = json_path.parent
    paths, declared, intrinsics, distortion, c2w = [], [], [], [], []
    for index, frame in enumerate(frames):
        merged = {**{k: v for k, v in data.items() if k != "frames"}, **frame}
        if any(merged.get(k) for k in _UNSUPPORTED_KEYS):
            raise ValueError(
                f"{json_path}: frame {index} uses a fisheye / k4 lens model, which is not "
                "supported; undistort the images first"
            )
        try:
            path = _frame_path(base, merged["file_path"], image_dir)
            matrix = np.asarray(merged["transform_matrix"], dtype=np.float64)
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"{json_path}: frame {index} needs 'file_path' and 'transform_matrix': {error}"
            ) from error
        if matrix.shape == (3, 4):
            matrix = np.concatenate([matrix, [[0.0, 0.0, 0.0, 1.0]]])
        if matrix.shape != (4, 4):
            raise ValueError(f"{json_path}: frame {index} transform_matrix must be 4x4 or 3x4")
        paths.append(path)
        c2w.append(matrix)
        declared.append((merged.get("h"), merged.get("w")))
        intrinsics.append(merged)
        distortion.append([float(merged.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2", "k3")])

    if require_images:
        disk = disk_sizes(paths, what)
    elif any(h is None or w is None for h, w in declared):
        raise ValueError(
            f"{json_path} lacks 'w'/'h'; image sizes must be read: require_images=True"
        )
    sizes = []
    for i, (h, w) in enumerate(declared):
        if h is None or w is None:  # intrinsics refer to the images on disk
            sizes.append(tuple(disk[i].tolist()))
        else:
            sizes.append((float(h), float(w)))
    declared_hw = torch.tensor(sizes, dtype=torch.float64)
    fxfycxcy = torch.tensor(
        [
            _intrinsics(m, h, w, json_path, i)
            for i, (m, (h, w)) in enumerate(zip(intrinsics, sizes, strict=True))
        ],
        dtype=torch.float64,
    )
    if require_images:
        fxfycxcy = rescale_intrinsics(fxfycxcy, declared_hw, disk, what)
        image_sizes = disk
    else:
        image_sizes = declared_hw.round().to(torch.int64)
    params = distortion_or_none(torch.tensor(distortion, dtype=torch.float64))
    return ordered_scene(
        scene_id,
        paths,
        base,
        source_format,
        image_sizes=image_sizes,
        c2w=opengl_to_opencv_c2w(torch.from_numpy(np.stack(c2w))),
        fxfycxcy=fxfycxcy,
        distortion=params,
        distortion_model=None if params is None else "OPENCV",
    )


def _intrinsics(
    meta: dict[str, Any], height: float, width: float, json_path: Path, index: int
) -> list[float]:
    """(fx, fy, cx, cy) at (height, width) from fl_x/fl_y/cx/cy or camera_angle_x/y."""
    if "fl_x" in meta:
        fx = float(meta["fl_x"])
    elif "camera_angle_x" in meta:
        fx = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
    else:
        raise ValueError(f"{json_path}: frame {index} has no 'fl_x' or 'camera_angle_x'")
    if "fl_y" in meta:
        fy = float(meta["fl_y"])
    elif "camera_angle_y" in meta:
        fy = 0.5 * height / math.tan(0.5 * float(meta["camera_angle_y"]))
    else:
        fy = fx
    cx = float(meta.get("cx", width / 2.0))
    cy = float(meta.get("cy", height / 2.0))
    return [fx, fy, cx, cy]
