"""Reading one scene in any supported format: :func:`load_scene`."""

from __future__ import annotations

import warnings
from pathlib import Path

from lagernvs.data.readers.colmap import read_colmap
from lagernvs.data.readers.common import MissingImagesError
from lagernvs.data.readers.discover import (
    FORMAT_CHOICES,
    FORMAT_HINT,
    FORMAT_OPTION,
    SCENE_FORMATS,
    detect_format,
)
from lagernvs.data.readers.dl3dv import read_dl3dv
from lagernvs.data.readers.llff import read_llff
from lagernvs.data.readers.nerf import read_nerf
from lagernvs.data.readers.re10k import read_re10k
from lagernvs.data.scene import Scene


def load_scene(
    path: str | Path,
    format: str | None = None,  # noqa: A002 (the natural name for users)
    *,
    scene_id: str | None = None,
    split: str | None = None,
    image_dir: str | None = None,
    require_images: bool | None = None,
) -> Scene:
    """Read one scene into a :class:`Scene`.

    Args:
        path: the scene (a folder or its camera file), or a dataset root when ``scene_id`` is
            given. Re10k scenes are addressed as ``<root>/<split>/images/<seq>`` or
            ``<root>/<split>/metadata/<seq>.json``, or ``load_scene(root, "re10k",
            scene_id=seq, split=split)`` (``root`` may also be the folder above ``re10k/``, as
            the reference's data root).
        format: one of ``SCENE_FORMATS``; detected from the files when None (a folder with both
            a COLMAP model and ``poses_bounds.npy`` is read as COLMAP unless ``"llff"`` is
            given).
        scene_id: scene to read under the root ``path`` (see :func:`list_scenes`); for DL3DV
            ``<batch>/<hash>`` or a bare hash.
        split: Re10k split (``train``/``test``), or the NeRF ``transforms_<split>.json`` to read.
        image_dir: image folder relative to the scene (default ``images``; DL3DV ``images_4``).
        require_images: if True every image file must exist and its size is read from its
            header; if False, sizes come from the camera metadata (COLMAP, NeRF with w/h,
            LLFF) and missing images are not an error. None (default): images are read when
            they are all there; otherwise, with a warning, the cameras are read from the
            metadata alone (an error when it lacks the image sizes).

    Raises:
        FileNotFoundError: missing camera files or images (names the files and the fix).
        ValueError: unknown or undetectable format, unsupported lens models, inconsistent frame
            counts, malformed metadata.
    """
    if require_images is not None:
        return _read(Path(path), format, scene_id, split, image_dir, require_images)
    try:
        return _read(Path(path), format, scene_id, split, image_dir, True)
    except MissingImagesError as error:
        warnings.warn(f"{error}; reading the cameras alone", stacklevel=2)
        return _read(Path(path), format, scene_id, split, image_dir, False)


def _read(
    path: Path,
    format: str | None,  # noqa: A002
    scene_id: str | None,
    split: str | None,
    image_dir: str | None,
    require_images: bool,
) -> Scene:
    if format is None:
        if scene_id is not None:
            raise ValueError(
                f"loading scene_id={scene_id!r} from a root needs {FORMAT_OPTION}, {FORMAT_CHOICES}"
            )
        format = detect_format(path)  # noqa: A001
    if format not in SCENE_FORMATS:
        raise ValueError(f"unknown scene format {format!r}; {FORMAT_HINT}")
    if format == "re10k":
        return read_re10k(path, scene_id, split)
    if format == "dl3dv":
        return read_dl3dv(path, scene_id, image_dir, require_images)
    if format == "nerf":
        return read_nerf(path, scene_id, split, image_dir, require_images)
    if format == "colmap":
        return read_colmap(path, scene_id, image_dir, require_images)
    return read_llff(path, scene_id, image_dir)
