"""What every scene reader shares: image listing and sizes, intrinsics rescaling, frame order.

Every reader returns frames ordered by image file name with ids from the file names
(:func:`ordered_scene`), and intrinsics in pixels of the images actually on disk
(:func:`rescale_intrinsics`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lagernvs.data.images import read_image_size
from lagernvs.data.scene import Scene

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MAX_LISTED = 5  # file names quoted in an error message


class MissingImagesError(FileNotFoundError):
    """Image files named by a scene's camera metadata are not on disk."""


def single_scene_path(path: Path, scene_id: str | None) -> tuple[Path, str | None]:
    """Folder and name of a scene given as itself (no id), as a root (``"."``) or under a root."""
    if scene_id is None:
        return path, None
    if scene_id == ".":
        return path, path.name
    return path / scene_id, scene_id


def load_json(path: Path) -> Any:
    """Parsed JSON file; a ValueError naming the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def json_frames(data: Any, path: Path) -> list[dict[str, Any]]:
    """The non-empty ``frames`` list of a camera file's parsed JSON ``data``."""
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path} has no non-empty 'frames' list")
    return frames


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder``, sorted."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder {folder} does not exist; pass image_dir= if the images are elsewhere"
        )
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def disk_sizes(paths: Sequence[Path], what: str) -> torch.Tensor:
    """(N, 2) int64 (H, W) of image files read from their headers; all must exist."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:MAX_LISTED])
        more = f" (and {len(missing) - MAX_LISTED} more)" if len(missing) > MAX_LISTED else ""
        raise MissingImagesError(
            f"{len(missing)} of {len(paths)} image files of {what} are missing: {shown}{more}; "
            "check the image folder (image_dir=) or pass require_images=False to read cameras only"
        )
    return torch.tensor([read_image_size(p) for p in paths], dtype=torch.int64).reshape(-1, 2)


def rescale_intrinsics(
    fxfycxcy: torch.Tensor, declared_hw: torch.Tensor, disk_hw: torch.Tensor, what: str
) -> torch.Tensor:
    """Scale intrinsics given at ``declared_hw`` (N, 2) to the image sizes ``disk_hw`` (N, 2).

    The principal point scales with the focal lengths (corner-origin pixels).
    """
    declared = declared_hw.to(torch.float64)
    disk = disk_hw.to(torch.float64)
    scale = disk / declared  # (N, 2): sy, sx
    # The other axis, predicted from one axis' scale, must match within a pixel of rounding.
    mismatch = ((declared * scale.flip(-1) - disk).abs() > 1.0 + 1e-9).any(-1)
    if bool(mismatch.any()):
        i = int(mismatch.nonzero()[0, 0])
        raise ValueError(
            f"{what}: image {i} is {tuple(disk_hw[i].tolist())} (H, W) but its intrinsics are "
            f"for {tuple(declared_hw[i].tolist())}, a different aspect ratio; use the images the "
            "cameras were calibrated for"
        )
    sy, sx = scale.unbind(-1)
    return fxfycxcy * torch.stack([sx, sy, sx, sy], dim=-1)


def distortion_or_none(params: torch.Tensor) -> torch.Tensor | None:
    """``params`` (N, 5) when any is non-zero, else None (pinhole cameras)."""
    return params if bool((params != 0).any()) else None


def _frame_order(paths: Sequence[Path], base: Path) -> list[int]:
    """Order of ``paths`` by file name (ties broken by the path relative to ``base``)."""

    def key(i: int) -> tuple[str, str]:
        path = paths[i]
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            rel = path.as_posix()
        return path.name, rel

    return sorted(range(len(paths)), key=key)


def _frame_ids(paths: Sequence[Path], base: Path) -> list[str]:
    """File stems, or paths relative to ``base`` without suffix when stems collide."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    ids = []
    for p in paths:
        try:
            ids.append(p.relative_to(base).with_suffix("").as_posix())
        except ValueError:
            ids.append(p.with_suffix("").as_posix())
    return ids


def ordered_scene(
    scene_id: str,
    paths: Sequence[Path],
    base: Path,
    source_format: str,
    *,
    image_sizes: torch.Tensor,
    c2w: torch.Tensor,
    fxfycxcy: torch.Tensor,
    distortion: torch.Tensor | None = None,
    distortion_model: str | None = None,
    bounds: torch.Tensor | None = None,
) -> Scene:
    """A :class:`Scene` of per-frame values (in the order of ``paths``) with its frames sorted
    by image file name and ids taken from the file names (relative to ``base``)."""
    order = _frame_order(paths, base)
    index = torch.tensor(order, dtype=torch.int64)
    sorted_paths = [paths[i] for i in order]
    return Scene(
        scene_id=scene_id,
        frame_ids=_frame_ids(sorted_paths, base),
        image_paths=sorted_paths,
        image_sizes=image_sizes[index],
        c2w=c2w[index],
        fxfycxcy=fxfycxcy[index],
        distortion=None if distortion is None else distortion[index],
        source_format=source_format,
        distortion_model=distortion_model,
        bounds=None if bounds is None else bounds[index],
    )
