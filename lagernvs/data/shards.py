"""WebDataset shards of scenes: the sample format, the writer and the shard index.

One sample per scene. Its tar members are ``<key>.cameras.json`` (``Scene.to_dict`` plus the
member name of every frame) and ``<key>.<frame index:05d>.<ext>`` holding the frame files exactly
as read from disk (never re-encoded). ``index.json`` next to the shards maps each scene to its
shard and frame count, so readers can list shards and count scenes without opening them.
The streaming reader lives in :mod:`lagernvs.data.stream`.

A shard folder is complete when it has its ``index.json``: :func:`write_shards` writes the shards
into a hidden staging folder, moves them in only once every scene is written, and writes the
index last (atomically), so an interrupt never leaves a half-written shard under a final name,
nor a mix of two runs listed by the index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds
from torch import Tensor
from tqdm.auto import tqdm

from lagernvs.data.images import decode_image
from lagernvs.data.readers import SCENE_FORMATS, list_scenes, load_scene
from lagernvs.data.scene import Scene
from lagernvs.io import atomic_path
from lagernvs.staging import pid_alive

__all__ = [
    "CAMERAS_MEMBER",
    "INDEX_NAME",
    "SHARD_PATTERN",
    "ShardRecord",
    "parse_sample",
    "read_index",
    "scene_to_sample",
    "write_shards",
]

CAMERAS_MEMBER = "cameras.json"
INDEX_NAME = "index.json"
SHARD_PATTERN = "shard-%06d.tar"
FORMAT_VERSION = 1


@dataclass
class ShardRecord:
    """A scene as read from a shard: cameras plus the frames, still encoded.

    ``scene.image_paths`` hold the original file names (not files on disk); ``frames[i]`` is the
    encoded file of frame i, byte-identical to what was on disk.
    """

    scene: Scene
    frames: list[bytes]
    key: str
    url: str

    def decode(self, indices: list[int]) -> list[Tensor]:
        """Decoded frames (3, H, W) float32 in [0, 1] at ``indices`` (errors name shard+frame)."""
        return [
            decode_image(self.frames[i], name=f"{self.url}:{self.key} frame {i}") for i in indices
        ]


def sample_key(scene_id: str) -> str:
    """Tar-safe sample key of a scene id (WebDataset splits member names at the first dot)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", scene_id)


def scene_to_sample(scene: Scene, key: str | None = None) -> dict[str, Any]:
    """WebDataset sample of a scene on disk: encoded frame bytes and a ``cameras.json``."""
    key = sample_key(scene.scene_id) if key is None else key
    sample: dict[str, Any] = {"__key__": key}
    members = []
    for index, path in enumerate(scene.image_paths):
        member = f"{index:05d}{path.suffix.lower()}"
        sample[member] = Path(path).read_bytes()
        members.append(member)
    cameras = scene.to_dict()
    cameras["members"] = members
    sample[CAMERAS_MEMBER] = json.dumps(cameras).encode("utf-8")
    return sample


def parse_sample(sample: dict[str, Any]) -> ShardRecord:
    """Inverse of :func:`scene_to_sample` on a sample grouped by WebDataset.

    Raises ValueError naming the shard and sample when the cameras are unreadable or frames are
    missing (a truncated shard yields incomplete samples).
    """
    key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
    where = f"sample {key!r} of shard {url}"
    if CAMERAS_MEMBER not in sample:
        raise ValueError(f"{where} has no {CAMERAS_MEMBER}; the shard is truncated or foreign")
    try:
        cameras = json.loads(sample[CAMERAS_MEMBER])
        members = cameras["members"]
        scene = Scene.from_dict(cameras)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"{where}: unreadable {CAMERAS_MEMBER}: {error}") from error
    if len(members) != scene.num_frames:
        raise ValueError(
            f"{where}: {CAMERAS_MEMBER} lists {len(members)} frame files for "
            f"{scene.num_frames} frames"
        )
    missing = [m for m in members if m not in sample]
    if missing:
        raise ValueError(
            f"{where} lacks {len(missing)} of {len(members)} frames (e.g. {missing[0]}); the "
            "shard is truncated, rewrite it with `lagernvs shards`"
        )
    return ShardRecord(scene=scene, frames=[sample[m] for m in members], key=key, url=url)


def read_index(path: str | Path) -> dict[str, Any]:
    """The index of a shard folder (``index.json``; pass the folder or the file)."""
    path = Path(path)
    if path.is_dir():
        path = path / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"shard index {path} does not exist; write shards with `lagernvs shards`, or pass "
            "shard URLs instead of a folder"
        )
    index = json.loads(path.read_text())
    if index.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {index.get('format_version')!r}, expected "
            f"{FORMAT_VERSION}; rewrite the shards with this version of lagernvs"
        )
    return index


def write_shards(
    source: str,
    root: str | Path,
    output_dir: str | Path,
    split: str | None = None,
    scenes_per_shard: int = 64,
    progress: bool = True,
    scene_ids: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the scenes of a dataset as WebDataset shards plus ``index.json``; return its path.

    Args:
        source: scene format (``re10k``, ``dl3dv``, ``colmap``, ``nerf``, ``llff``).
        root: dataset root (see :func:`lagernvs.data.readers.list_scenes`).
        output_dir: folder for ``shard-000000.tar``, ... and ``index.json`` (created).
        split: dataset split (Re10k ``train``/``test``).
        scenes_per_shard: scenes per tar file.
        progress: show a tqdm progress bar.
        scene_ids: scenes to write (default: every scene under ``root``).
        overwrite: replace the shards of an earlier run; without it a folder holding an
            ``index.json`` is refused (shard files without an index are the leftovers of an
            interrupted run and are replaced). Other files in the folder are left alone.

    Scenes that cannot be read are skipped with a warning and listed under ``skipped`` in the
    index; if none can be read, ValueError.
    """
    if source not in SCENE_FORMATS:
        raise ValueError(f"unknown source {source!r}; use one of {SCENE_FORMATS}")
    if scenes_per_shard < 1:
        raise ValueError(f"scenes_per_shard must be at least 1, got {scenes_per_shard}")
    out = Path(output_dir)
    _check_output(out, overwrite)
    ids = list_scenes(root, source, split=split) if scene_ids is None else list(scene_ids)
    if not ids:
        raise ValueError(f"no {source} scenes found under {root} (split {split!r})")
    staging = _staging_folder(out)
    try:
        index = _write_staged(source, root, split, ids, staging, scenes_per_shard, progress)
        return _commit(staging, out, index)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse a file, an unwritable folder and (unless ``overwrite``) a complete shard set."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} is a file; choose a folder")
    if (out / INDEX_NAME).is_file() and not overwrite:
        raise FileExistsError(
            f"output folder {out} already holds shards ({INDEX_NAME}); choose another folder, "
            "or pass --overwrite (overwrite=True) to replace them"
        )


def _staging_folder(out: Path) -> Path:
    """A fresh hidden folder in ``out`` for this process (staging folders of dead ones go)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for entry in out.glob(".partial-*"):
            pid = entry.name.removeprefix(".partial-")
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
        staging = out / f".partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(
            f"cannot write to output folder {out} ({reason}); choose a folder you can write to"
        ) from None
    return staging


def _write_staged(
    source: str,
    root: str | Path,
    split: str | None,
    ids: list[str],
    staging: Path,
    scenes_per_shard: int,
    progress: bool,
) -> dict[str, Any]:
    """Write every readable scene into shards under ``staging``; return the index."""
    pattern = str(staging).replace("%", "%%") + "/" + SHARD_PATTERN
    scenes: dict[str, dict[str, Any]] = {}
    shards: dict[str, dict[str, int]] = {}
    skipped: dict[str, str] = {}
    keys: set[str] = set()
    with wds.ShardWriter(pattern, maxcount=scenes_per_shard, verbose=0, mtime=0.0) as sink:
        for scene_id in tqdm(ids, desc=f"shards {source}", unit="scene", disable=not progress):
            try:
                scene = load_scene(root, source, scene_id=scene_id, split=split)
                sample = scene_to_sample(scene, _unique(sample_key(scene.scene_id), keys))
            except (OSError, ValueError) as error:
                warnings.warn(f"skipping scene {scene_id!r}: {error}", stacklevel=3)
                skipped[scene_id] = str(error)
                continue
            sink.write(sample)
            shard = Path(sink.fname).name
            scenes[scene.scene_id] = {
                "shard": shard,
                "key": sample["__key__"],
                "num_frames": scene.num_frames,
            }
            stats = shards.setdefault(shard, {"num_scenes": 0, "num_frames": 0})
            stats["num_scenes"] += 1
            stats["num_frames"] += scene.num_frames
    if not scenes:
        raise ValueError(f"none of the {len(ids)} {source} scenes under {root} could be read")
    return {
        "format_version": FORMAT_VERSION,
        "source": source,
        "root": str(root),
        "split": split,
        "num_scenes": len(scenes),
        "num_frames": sum(s["num_frames"] for s in scenes.values()),
        "shards": shards,
        "scenes": scenes,
        "skipped": skipped,
    }


def _commit(staging: Path, out: Path, index: dict[str, Any]) -> Path:
    """Replace the shards of ``out`` by the staged ones, then write the index (last)."""
    index_path = out / INDEX_NAME
    index_path.unlink(missing_ok=True)
    for old in out.glob("shard-*.tar"):
        old.unlink()
    for name in index["shards"]:
        os.replace(staging / name, out / name)
    with atomic_path(index_path) as temporary:
        temporary.write_text(json.dumps(index, indent=1))
    return index_path


def _unique(key: str, used: set[str]) -> str:
    """`key`, or `key-N` if an earlier scene already took it (sanitised ids may collide)."""
    candidate, n = key, 1
    while candidate in used:
        candidate, n = f"{key}-{n}", n + 1
    used.add(candidate)
    return candidate
