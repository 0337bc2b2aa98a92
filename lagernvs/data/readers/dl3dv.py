"""DL3DV scenes: ``<batch>/<hash>/`` with a nerfstudio ``transforms.json`` and ``images_4/``.

The cameras are read by the NeRF reader; the full-resolution intrinsics are scaled to the
quarter-resolution images read by default. Scene ids are ``<batch>/<hash>``.
"""

from __future__ import annotations

from pathlib import Path

from lagernvs.data.readers.common import MAX_LISTED
from lagernvs.data.readers.nerf import read_transforms, transforms_file
from lagernvs.data.scene import Scene


def is_dl3dv_scene_folder(path: Path) -> bool:
    """True for a folder with ``nerfstudio/transforms.json``, or ``transforms.json`` and
    ``images_4/``."""
    if (path / "transforms.json").is_file():
        return (path / "images_4").is_dir()
    return (path / "nerfstudio" / "transforms.json").is_file()


def list_dl3dv_scenes(root: Path) -> list[str]:
    """Sorted ``<batch>/<hash>`` ids of the scenes under a dataset root."""
    found = {p.parent for p in root.glob("*/*/transforms.json")}
    found |= {p.parent.parent for p in root.glob("*/*/nerfstudio/transforms.json")}
    return sorted(f"{d.parent.name}/{d.name}" for d in found)


def _scene_dir(path: Path, scene_id: str | None) -> Path:
    if scene_id is None:
        return path.parent if path.is_file() else path
    direct = path / scene_id
    if direct.is_dir():
        return direct
    matches = sorted(p for p in path.glob(f"*/{scene_id}") if p.is_dir())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FileNotFoundError(f"DL3DV scene {scene_id!r} not found under {path} (<batch>/<hash>)")
    raise ValueError(f"DL3DV scene {scene_id!r} is ambiguous under {path}: {matches[:MAX_LISTED]}")


def read_dl3dv(
    path: Path, scene_id: str | None, image_dir: str | None, require_images: bool
) -> Scene:
    """A DL3DV scene folder, or ``scene_id`` (``<batch>/<hash>`` or a bare hash) under a root."""
    scene_dir = _scene_dir(path, scene_id)
    return read_transforms(
        transforms_file(scene_dir, None),
        scene_id=f"{scene_dir.parent.name}/{scene_dir.name}",
        image_dir=image_dir or "images_4",
        require_images=require_images,
        source_format="dl3dv",
    )
