"""Scene readers: Re10k (LVSM layout), DL3DV, NeRF/instant-ngp, COLMAP, LLFF -> `Scene`.

Entry points: :func:`load_scene` (one scene, format detected when not given),
:func:`list_scenes` (the scene ids under a dataset root) and :func:`detect_format`.

Every reader returns OpenCV camera-to-world poses and pixel intrinsics of the images actually on
disk, in float64, with frames ordered by image file name. Conversions:

* Re10k stores world-to-camera matrices: c2w is their float64 inverse.
* NeRF / instant-ngp / DL3DV store OpenGL camera-to-world: the camera y and z axes are flipped.
* COLMAP stores world-to-camera (qvec w x y z, tvec): c2w = [R^T | -R^T t].
* LLFF stores c2w columns as (down, right, back): OpenCV x = right, y = down, z = -back.

Intrinsics given for another resolution than the images read (DL3DV's full-resolution values
with ``images_4``, LLFF's hwf, COLMAP models with downscaled images) are scaled per axis by
(disk size / declared size); the principal point scales with them (corner-origin pixels).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lagernvs.cameras import opengl_to_opencv_c2w, quaternion_to_matrix
from lagernvs.data.colmap import ColmapModel, find_model_files, read_colmap_model
from lagernvs.data.images import read_image_size
from lagernvs.data.scene import Scene

__all__ = [
    "IMAGE_EXTENSIONS",
    "SCENE_FORMATS",
    "colmap_model_dir",
    "detect_format",
    "list_scenes",
    "load_scene",
]

SCENE_FORMATS = ("re10k", "dl3dv", "nerf", "colmap", "llff")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FORMAT_HINT = (
    "pass format= one of 're10k' (<root>/<split>/images/<seq>), 'dl3dv' (<batch>/<hash> with "
    "transforms.json and images_4/), 'nerf' (transforms.json), 'colmap' (sparse/0 or a model "
    "folder), 'llff' (poses_bounds.npy)"
)
_MAX_LISTED = 5


# ----------------------------------------------------------------------------- entry points


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
        format: one of ``SCENE_FORMATS``; detected from the files when None.
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
        return _load_scene(Path(path), format, scene_id, split, image_dir, require_images)
    try:
        return _load_scene(Path(path), format, scene_id, split, image_dir, True)
    except MissingImagesError as error:
        warnings.warn(f"{error}; reading the cameras alone", stacklevel=2)
        return _load_scene(Path(path), format, scene_id, split, image_dir, False)


def _load_scene(
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
                f"loading scene_id={scene_id!r} from a root needs format=; {_FORMAT_HINT}"
            )
        format = detect_format(path)  # noqa: A001
    if format not in SCENE_FORMATS:
        raise ValueError(f"unknown scene format {format!r}; {_FORMAT_HINT}")
    if format == "re10k":
        return _read_re10k(path, scene_id, split)
    if format == "dl3dv":
        scene_dir = _resolve_dl3dv(path, scene_id)
        return _read_transforms(
            _transforms_file(scene_dir, None),
            scene_id=f"{scene_dir.parent.name}/{scene_dir.name}",
            image_dir=image_dir or "images_4",
            require_images=require_images,
            source_format="dl3dv",
        )
    scene_path, name = _single_scene_path(path, scene_id)
    if format == "nerf":
        json_path = _transforms_file(scene_path, split)
        return _read_transforms(
            json_path,
            scene_id=name or json_path.parent.name,
            image_dir=image_dir,
            require_images=require_images,
            source_format="nerf",
        )
    if format == "colmap":
        return _read_colmap(scene_path, name, image_dir, require_images)
    return _read_llff(scene_path, name, image_dir)


def detect_format(path: str | Path) -> str:
    """Scene format of ``path`` from the files present (see :func:`load_scene`).

    A folder with both ``poses_bounds.npy`` and a COLMAP model is read as COLMAP (the exact
    source of the LLFF file: per-frame focal lengths and distortion).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"scene path {path} does not exist")
    if path.is_file():
        if path.name == "poses_bounds.npy":
            return "llff"
        if path.stem in ("cameras", "images", "points3D") and path.suffix in (".bin", ".txt"):
            return "colmap"
        if path.suffix == ".json":
            return _json_format(path)
        raise ValueError(f"cannot detect the scene format of file {path}; {_FORMAT_HINT}")
    if (
        path.parent.name == "images"
        and (path.parent.parent / "metadata" / f"{path.name}.json").is_file()
    ):
        return "re10k"
    transforms = path / "transforms.json"
    if not transforms.is_file() and (path / "nerfstudio" / "transforms.json").is_file():
        return "dl3dv"
    if transforms.is_file():
        return "dl3dv" if (path / "images_4").is_dir() else "nerf"
    if _find_colmap_model(path) is not None:
        return "colmap"
    if (path / "poses_bounds.npy").is_file():
        return "llff"
    if any(path.glob("transforms_*.json")):
        return "nerf"
    raise ValueError(f"cannot detect the scene format of folder {path}; {_FORMAT_HINT}")


def list_scenes(root: str | Path, format: str, split: str | None = None) -> list[str]:  # noqa: A002
    """Sorted scene ids under ``root``; ``load_scene(root, format, scene_id=id, split=split)``
    reads each. Re10k ids are sequence names (from ``full_list.txt`` when present), DL3DV ids
    ``<batch>/<hash>``, others sub-folder paths (``"."`` when ``root`` itself is the scene)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder")
    if format == "re10k":
        split_dir = _re10k_split_dir(root, split)
        full_list = split_dir / "full_list.txt"
        if full_list.is_file():
            names = [Path(line.strip()).stem for line in full_list.read_text().splitlines()]
            return sorted(n for n in names if n)
        return sorted(p.stem for p in (split_dir / "metadata").glob("*.json"))
    if format == "dl3dv":
        found = {p.parent for p in root.glob("*/*/transforms.json")}
        found |= {p.parent.parent for p in root.glob("*/*/nerfstudio/transforms.json")}
        return sorted(f"{d.parent.name}/{d.name}" for d in found)
    if format not in SCENE_FORMATS:
        raise ValueError(f"unknown scene format {format!r}; {_FORMAT_HINT}")
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    found = []
    for candidate in candidates:
        try:
            detected = detect_format(candidate)
        except ValueError:
            continue
        if detected == format:
            found.append("." if candidate == root else candidate.name)
            if candidate == root:
                break
    return found


# ----------------------------------------------------------------------------- helpers


def _json_format(path: Path) -> str:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    frames = data.get("frames") if isinstance(data, dict) else None
    if not frames or not isinstance(frames, list) or not isinstance(frames[0], dict):
        raise ValueError(f"{path} has no 'frames' list; {_FORMAT_HINT}")
    if "w2c" in frames[0]:
        return "re10k"
    if "transform_matrix" in frames[0]:
        return "dl3dv" if (path.parent / "images_4").is_dir() else "nerf"
    raise ValueError(f"{path}: frames have neither 'w2c' nor 'transform_matrix'; {_FORMAT_HINT}")


def _single_scene_path(path: Path, scene_id: str | None) -> tuple[Path, str | None]:
    if scene_id is None:
        return path, None
    if scene_id == ".":
        return path, path.name
    return path / scene_id, scene_id


def _sorted_frames(paths: Sequence[Path], base: Path) -> list[int]:
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


class MissingImagesError(FileNotFoundError):
    """Image files named by a scene's camera metadata are not on disk."""


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder {folder} does not exist; pass image_dir= if the images are elsewhere"
        )
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _check_files(paths: Sequence[Path], what: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:_MAX_LISTED])
        more = f" (and {len(missing) - _MAX_LISTED} more)" if len(missing) > _MAX_LISTED else ""
        raise MissingImagesError(
            f"{len(missing)} of {len(paths)} image files of {what} are missing: {shown}{more}; "
            "check the image folder (image_dir=) or pass require_images=False to read cameras only"
        )


def _disk_sizes(paths: Sequence[Path], what: str) -> torch.Tensor:
    _check_files(paths, what)
    return torch.tensor([read_image_size(p) for p in paths], dtype=torch.int64).reshape(-1, 2)


def _rescale_intrinsics(
    fxfycxcy: torch.Tensor, declared_hw: torch.Tensor, disk_hw: torch.Tensor, what: str
) -> torch.Tensor:
    """Scale intrinsics given at ``declared_hw`` (N, 2) to the image sizes ``disk_hw`` (N, 2)."""
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


def _distortion_or_none(params: torch.Tensor) -> torch.Tensor | None:
    return params if bool((params != 0).any()) else None


# ----------------------------------------------------------------------------- Re10k


def _re10k_split_dir(root: Path, split: str | None) -> Path:
    if split is None:
        if (root / "metadata").is_dir():
            return root
        raise ValueError(f"Re10k root {root}: pass split= ('train' or 'test')")
    for candidate in (root / split, root / "re10k" / split):
        if (candidate / "metadata").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no Re10k split {split!r} under {root}: expected {root / split / 'metadata'} (LVSM "
        "layout <root>/<split>/{images,metadata}, full_list.txt)"
    )


def _read_re10k(path: Path, scene_id: str | None, split: str | None) -> Scene:
    if scene_id is not None:
        split_dir, seq = _re10k_split_dir(path, split), scene_id
    elif path.suffix == ".json":
        split_dir, seq = path.parent.parent, path.stem
    elif path.parent.name == "images":
        split_dir, seq = path.parent.parent, path.name
    else:
        raise ValueError(
            f"{path} is not a Re10k scene: pass <root>/<split>/images/<seq>, "
            "<root>/<split>/metadata/<seq>.json, or the root with scene_id= and split="
        )
    meta_path = split_dir / "metadata" / f"{seq}.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"Re10k metadata {meta_path} does not exist (scene {seq!r})")
    frames = _json_frames(meta_path)
    image_folder = split_dir / "images" / seq
    files = _list_images(image_folder)
    what = f"Re10k scene {seq!r}"
    if len(files) != len(frames):
        raise ValueError(
            f"{what}: inconsistent frame counts: {meta_path} lists {len(frames)} frames but "
            f"{image_folder} holds {len(files)} images; re-extract the scene"
        )
    if all("image_path" in f for f in frames):
        by_name = {p.name: p for p in files}
        names = [Path(f["image_path"]).name for f in frames]
        missing = [n for n in names if n not in by_name]
        if missing:
            raise FileNotFoundError(
                f"{what}: {len(missing)} images listed in {meta_path} are not in {image_folder} "
                f"(e.g. {missing[0]}); re-extract the scene"
            )
        paths = [by_name[n] for n in names]
    else:  # no names: frames follow the sorted file order
        paths = files
    try:
        w2c = torch.tensor([f["w2c"] for f in frames], dtype=torch.float64)
        fxfycxcy = torch.tensor([f["fxfycxcy"] for f in frames], dtype=torch.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{meta_path}: every frame needs 'w2c' (4x4) and 'fxfycxcy' (4): {error}"
        ) from error
    if w2c.shape[1:] != (4, 4) or fxfycxcy.shape[1:] != (4,):
        raise ValueError(f"{meta_path}: 'w2c' must be 4x4 and 'fxfycxcy' 4 numbers per frame")
    order = _sorted_frames(paths, image_folder)
    paths = [paths[i] for i in order]
    return Scene(
        scene_id=seq,
        frame_ids=_frame_ids(paths, image_folder),
        image_paths=paths,
        image_sizes=_disk_sizes(paths, what),
        c2w=torch.linalg.inv(w2c[order]),
        fxfycxcy=fxfycxcy[order],
        distortion=None,
        source_format="re10k",
    )


def _json_frames(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path} has no non-empty 'frames' list")
    return frames


# ----------------------------------------------------------------------------- NeRF / DL3DV


def _resolve_dl3dv(path: Path, scene_id: str | None) -> Path:
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
    raise ValueError(f"DL3DV scene {scene_id!r} is ambiguous under {path}: {matches[:_MAX_LISTED]}")


def _transforms_file(path: Path, split: str | None) -> Path:
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


_UNSUPPORTED_NERF_KEYS = ("k4", "is_fisheye", "fisheye")


def _nerf_frame_path(base: Path, file_path: str, image_dir: str | None) -> Path:
    rel = Path(file_path)
    if image_dir is not None:  # DL3DV: "images/frame_00001.png" -> "images_4/frame_00001.png"
        parts = rel.parts
        rel = Path(image_dir, *parts[1:]) if len(parts) > 1 else Path(image_dir, rel.name)
    path = base / rel
    if not path.suffix and not path.exists():  # Blender: "./train/r_0" -> r_0.png
        path = path.with_suffix(".png")
    return path


def _read_transforms(
    json_path: Path,
    scene_id: str,
    image_dir: str | None,
    require_images: bool,
    source_format: str,
) -> Scene:
    try:
        data = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path} is not valid JSON: {error}") from error
    frames = _json_frames(json_path)
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
        if any(merged.get(k) for k in _UNSUPPORTED_NERF_KEYS):
            raise ValueError(
                f"{json_path}: frame {index} uses a fisheye / k4 lens model, which is not "
                "supported; undistort the images first"
            )
        try:
            path = _nerf_frame_path(base, merged["file_path"], image_dir)
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
        disk = _disk_sizes(paths, what)
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
            _nerf_intrinsics(m, h, w, json_path, i)
            for i, (m, (h, w)) in enumerate(zip(intrinsics, sizes, strict=True))
        ],
        dtype=torch.float64,
    )
    if require_images:
        fxfycxcy = _rescale_intrinsics(fxfycxcy, declared_hw, disk, what)
        image_sizes = disk
    else:
        image_sizes = declared_hw.round().to(torch.int64)

    order = _sorted_frames(paths, base)
    paths = [paths[i] for i in order]
    idx = torch.tensor(order, dtype=torch.int64)
    params = torch.tensor(distortion, dtype=torch.float64)[idx]
    c2w_gl = torch.from_numpy(np.stack(c2w))[idx]
    return Scene(
        scene_id=scene_id,
        frame_ids=_frame_ids(paths, base),
        image_paths=paths,
        image_sizes=image_sizes[idx],
        c2w=opengl_to_opencv_c2w(c2w_gl),
        fxfycxcy=fxfycxcy[idx],
        distortion=_distortion_or_none(params),
        source_format=source_format,
        distortion_model="OPENCV" if bool((params != 0).any()) else None,
    )


def _nerf_intrinsics(
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


# ----------------------------------------------------------------------------- COLMAP


def _find_colmap_model(path: Path) -> Path | None:
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
    model = _find_colmap_model(path)
    if model is None:
        find_model_files(path / "sparse" / "0")  # raises a FileNotFoundError naming the files
    return model  # type: ignore[return-value]


def _colmap_scene_root(model_dir: Path) -> Path:
    if model_dir.parent.name == "sparse":
        return model_dir.parent.parent
    return model_dir.parent


_COLMAP_INTRINSICS = {
    # name: (indices of fx, fy, cx, cy in params, indices of k1, k2, p1, p2 (None = 0))
    "SIMPLE_PINHOLE": ((0, 0, 1, 2), (None, None, None, None)),
    "PINHOLE": ((0, 1, 2, 3), (None, None, None, None)),
    "SIMPLE_RADIAL": ((0, 0, 1, 2), (3, None, None, None)),
    "RADIAL": ((0, 0, 1, 2), (3, 4, None, None)),
    "OPENCV": ((0, 1, 2, 3), (4, 5, 6, 7)),
}


def _read_colmap(
    path: Path, name: str | None, image_dir: str | None, require_images: bool
) -> Scene:
    model_dir = colmap_model_dir(path)
    root = _colmap_scene_root(model_dir)
    model: ColmapModel = read_colmap_model(model_dir, read_points=False)
    scene_id = name or root.name
    what = f"COLMAP scene {scene_id!r}"
    if not model.images:
        raise ValueError(f"{what}: the model in {model_dir} has no registered images")
    images = sorted(model.images.values(), key=lambda im: (Path(im.name).name, im.name))
    folder = root / (image_dir or "images")
    paths = [folder / im.name for im in images]
    intrinsics, distortion, declared, models = [], [], [], set()
    for im in images:
        if im.camera_id not in model.cameras:
            raise ValueError(f"{what}: image {im.name} refers to missing camera {im.camera_id}")
        cam = model.cameras[im.camera_id]
        if cam.model not in _COLMAP_INTRINSICS:
            raise ValueError(
                f"{what}: camera model {cam.model} is not supported (supported: "
                f"{', '.join(_COLMAP_INTRINSICS)}); undistort with 'colmap image_undistorter'"
            )
        focal_idx, dist_idx = _COLMAP_INTRINSICS[cam.model]
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
        sizes = _disk_sizes(paths, what)
        fxfycxcy = _rescale_intrinsics(fxfycxcy, declared_hw, sizes, what)
    else:
        sizes = declared_hw
    params = torch.tensor(distortion, dtype=torch.float64)
    dist = _distortion_or_none(params)
    return Scene(
        scene_id=scene_id,
        frame_ids=_frame_ids(paths, folder),
        image_paths=paths,
        image_sizes=sizes,
        c2w=c2w,
        fxfycxcy=fxfycxcy,
        distortion=dist,
        source_format="colmap",
        distortion_model=", ".join(sorted(models)) if dist is not None else None,
    )


# ----------------------------------------------------------------------------- LLFF


def _read_llff(path: Path, name: str | None, image_dir: str | None) -> Scene:
    npy = path if path.is_file() else path / "poses_bounds.npy"
    if not npy.is_file():
        raise FileNotFoundError(f"LLFF file {npy} does not exist")
    root = npy.parent
    scene_id = name or root.name
    what = f"LLFF scene {scene_id!r}"
    array = np.load(npy).astype(np.float64)
    if array.ndim != 2 or array.shape[1] != 17:
        raise ValueError(f"{npy} must have shape (N, 17) (3x5 pose + near, far), got {array.shape}")
    folder = root / (image_dir or "images")
    paths = _list_images(folder)
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
    sizes = _disk_sizes(paths, what)
    fxfycxcy = _rescale_intrinsics(fxfycxcy, torch.stack([height, width], -1), sizes, what)
    return Scene(
        scene_id=scene_id,
        frame_ids=_frame_ids(paths, folder),
        image_paths=paths,
        image_sizes=sizes,
        c2w=c2w,
        fxfycxcy=fxfycxcy,
        distortion=None,
        source_format="llff",
        bounds=torch.from_numpy(array[:, 15:17]),
    )
