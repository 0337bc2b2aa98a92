"""Re10k scenes in the LVSM layout: ``<root>/<split>/{images/<seq>/, metadata/<seq>.json}``.

The metadata stores world-to-camera matrices (``w2c``) and pixel intrinsics (``fxfycxcy``) per
frame; camera-to-world is their float64 inverse. ``full_list.txt`` lists a split's scenes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lagernvs.data.readers.common import (
    disk_sizes,
    json_frames,
    list_images,
    load_json,
    ordered_scene,
)
from lagernvs.data.scene import Scene


def is_re10k_scene_folder(path: Path) -> bool:
    """True for ``<split>/images/<seq>`` with its ``<split>/metadata/<seq>.json``."""
    return (
        path.parent.name == "images"
        and (path.parent.parent / "metadata" / f"{path.name}.json").is_file()
    )


def re10k_split_dir(root: Path, split: str | None) -> Path:
    """The split folder (holding ``metadata/``) under a dataset root, or the root itself."""
    if split is None:
        if (root / "metadata").is_dir():
            return root
        raise ValueError(
            f"Re10k root {root}: pass split= (--split on the command line), 'train' or 'test'"
        )
    for candidate in (root / split, root / "re10k" / split):
        if (candidate / "metadata").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no Re10k split {split!r} under {root}: expected {root / split / 'metadata'} (LVSM "
        "layout <root>/<split>/{images,metadata}, full_list.txt)"
    )


def list_re10k_scenes(root: Path, split: str | None) -> list[str]:
    """Sorted sequence names of a split (from ``full_list.txt`` when present)."""
    split_dir = re10k_split_dir(root, split)
    full_list = split_dir / "full_list.txt"
    if full_list.is_file():
        names = [Path(line.strip()).stem for line in full_list.read_text().splitlines()]
        return sorted(n for n in names if n)
    return sorted(p.stem for p in (split_dir / "metadata").glob("*.json"))


def read_re10k(path: Path, scene_id: str | None, split: str | None) -> Scene:
    """Scene ``<split>/images/<seq>``, ``<split>/metadata/<seq>.json``, or ``scene_id`` (with
    ``split``) under a dataset root."""
    if scene_id is not None:
        split_dir, seq = re10k_split_dir(path, split), scene_id
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
    frames = json_frames(load_json(meta_path), meta_path)
    image_folder = split_dir / "images" / seq
    files = list_images(image_folder)
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
    return ordered_scene(
        seq,
        paths,
        image_folder,
        "re10k",
        image_sizes=disk_sizes(paths, what),
        c2w=torch.linalg.inv(w2c),
        fxfycxcy=fxfycxcy,
    )
