"""Which scene formats a path holds (:func:`detect_format`) and the scenes under a root
(:func:`list_scenes`).

A folder may hold several formats: LLFF's ``poses_bounds.npy`` is usually exported next to the
COLMAP model it was made from. Detection then prefers the more exact source (COLMAP: per-frame
focal lengths and distortion), while an explicit format reads (and lists) the other one too.
"""

from __future__ import annotations

from pathlib import Path

from lagernvs.data.readers.colmap import find_colmap_model
from lagernvs.data.readers.common import load_json
from lagernvs.data.readers.dl3dv import is_dl3dv_scene_folder, list_dl3dv_scenes
from lagernvs.data.readers.llff import POSES_FILE
from lagernvs.data.readers.re10k import is_re10k_scene_folder, list_re10k_scenes

SCENE_FORMATS = ("re10k", "dl3dv", "nerf", "colmap", "llff")
FORMAT_CHOICES = (
    "one of 're10k' (<root>/<split>/images/<seq>), 'dl3dv' (<batch>/<hash> with transforms.json "
    "and images_4/), 'nerf' (transforms.json), 'colmap' (sparse/0 or a model folder), 'llff' "
    "(poses_bounds.npy)"
)
FORMAT_OPTION = "format= (--format on the command line)"
FORMAT_HINT = f"pass {FORMAT_OPTION}, {FORMAT_CHOICES}"


def folder_formats(path: Path) -> list[str]:
    """The formats whose camera files are in folder ``path``, the preferred one first."""
    found = []
    if is_re10k_scene_folder(path):
        found.append("re10k")
    if is_dl3dv_scene_folder(path):
        found.append("dl3dv")
    elif (path / "transforms.json").is_file():
        found.append("nerf")
    if find_colmap_model(path) is not None:
        found.append("colmap")
    if (path / POSES_FILE).is_file():
        found.append("llff")
    if "nerf" not in found and any(path.glob("transforms_*.json")):
        found.append("nerf")
    return found


def detect_format(path: str | Path) -> str:
    """Scene format of ``path`` from the files present (see :func:`load_scene`).

    A folder with both ``poses_bounds.npy`` and a COLMAP model is read as COLMAP (the exact
    source of the LLFF file); pass ``format="llff"`` to read the LLFF file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"scene path {path} does not exist")
    if path.is_file():
        if path.name == POSES_FILE:
            return "llff"
        if path.stem in ("cameras", "images", "points3D") and path.suffix in (".bin", ".txt"):
            return "colmap"
        if path.suffix == ".json":
            return _json_format(path)
        raise ValueError(f"cannot detect the scene format of file {path}; {FORMAT_HINT}")
    formats = folder_formats(path)
    if not formats:
        raise ValueError(f"cannot detect the scene format of folder {path}; {FORMAT_HINT}")
    return formats[0]


def _json_format(path: Path) -> str:
    data = load_json(path)
    frames = data.get("frames") if isinstance(data, dict) else None
    if not frames or not isinstance(frames, list) or not isinstance(frames[0], dict):
        raise ValueError(f"{path} has no 'frames' list; {FORMAT_HINT}")
    if "w2c" in frames[0]:
        return "re10k"
    if "transform_matrix" in frames[0]:
        return "dl3dv" if (path.parent / "images_4").is_dir() else "nerf"
    raise ValueError(f"{path}: frames have neither 'w2c' nor 'transform_matrix'; {FORMAT_HINT}")


def list_scenes(root: str | Path, format: str, split: str | None = None) -> list[str]:  # noqa: A002
    """Sorted scene ids under ``root``; ``load_scene(root, format, scene_id=id, split=split)``
    reads each. Re10k ids are sequence names (from ``full_list.txt`` when present), DL3DV ids
    ``<batch>/<hash>``, others sub-folder paths (``"."`` when ``root`` itself is the scene).
    A folder holding several formats is listed under each of them."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"dataset root {root} is a file; give the folder holding scenes")
    if format == "re10k":
        return list_re10k_scenes(root, split)
    if format == "dl3dv":
        return list_dl3dv_scenes(root)
    if format not in SCENE_FORMATS:
        raise ValueError(f"unknown scene format {format!r}; {FORMAT_HINT}")
    if format in folder_formats(root):
        return ["."]
    return [p.name for p in sorted(root.iterdir()) if p.is_dir() and format in folder_formats(p)]
