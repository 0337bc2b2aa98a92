"""Synthetic datasets on disk: rendered worlds written in the Re10k LVSM layout."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lagernvs.cameras import c2w_to_w2c
from lagernvs.data.synthetic.modes import MODE_SOURCES, render_modes_scene
from lagernvs.data.synthetic.render import render_synthetic_scene

FAMILIES = ("default", "modes")


@dataclass(frozen=True)
class _SceneSettings:
    """What every scene of one dataset shares (sent once to each worker process)."""

    split_dir: Path
    split: str
    num_frames: int
    height: int
    width: int
    save_depth: bool
    family: str
    sources: tuple[int, ...]
    save_alternatives: bool


def write_synthetic_dataset(
    root: str | Path,
    num_scenes: int,
    split: str = "train",
    seed: int = 0,
    num_frames: int = 8,
    height: int = 64,
    width: int = 64,
    save_depth: bool = False,
    family: str = "default",
    sources: Sequence[int] = MODE_SOURCES,
    save_alternatives: bool = False,
    workers: int = 1,
) -> list[str]:
    """Render `num_scenes` scenes into the Re10k LVSM layout under `root/split`; return their ids.

    Writes `images/<seq>/<5-digit>.png`, `metadata/<seq>.json` (`scene_name`, `frames[]` with
    `image_path`, `fxfycxcy` and 4x4 `w2c`) and `full_list.txt` (one metadata path per line,
    relative to `root`). Scene i uses seed (seed, i); with `save_depth`, `depth/<seq>.npy` holds
    the (N, H, W) float32 z-depth.

    `family` "modes" renders :func:`~lagernvs.data.synthetic.render_modes_scene` scenes with
    the designated source frames `sources` (recorded in the metadata with the scene's
    alternative); with `save_alternatives`, `modes/<seq>.npz` holds every alternative
    (`alternatives`, (K, N, H, W, 3) uint8), the `hidden` (N, H, W) mask, `mode` and `sources`.

    With `workers` > 1 the scenes are rendered by that many processes (one torch thread each);
    the files are the same as with one.
    """
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be at least 1, got {num_scenes}")
    if family not in FAMILIES:
        raise ValueError(f"unknown synthetic family {family!r}; use one of {FAMILIES}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    split_dir = Path(root) / split
    (split_dir / "metadata").mkdir(parents=True, exist_ok=True)
    if family == "modes" and save_alternatives:
        (split_dir / "modes").mkdir(exist_ok=True)
    if save_depth:
        (split_dir / "depth").mkdir(exist_ok=True)
    settings = _SceneSettings(
        split_dir,
        split,
        num_frames,
        height,
        width,
        save_depth,
        family,
        tuple(sources),
        save_alternatives,
    )
    scene_seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(num_scenes)]
    write = partial(_write_scene, settings)
    if workers == 1:
        scene_ids = [write(scene_seed) for scene_seed in scene_seeds]
    else:
        # Spawned workers: forking a process whose OpenMP pool is running can hang the child.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            workers, context, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            scene_ids = list(pool.map(write, scene_seeds, chunksize=4))
    full_list = [f"{split}/metadata/{scene_id}.json" for scene_id in scene_ids]
    (split_dir / "full_list.txt").write_text("\n".join(full_list) + "\n")
    return scene_ids


def _write_scene(settings: _SceneSettings, scene_seed: int) -> str:
    """Render one scene and write its images, metadata (and extras); return its id."""
    split_dir = settings.split_dir
    scene_id = f"synth{scene_seed:010d}"
    metadata: dict = {"scene_name": scene_id}
    size = (settings.num_frames, settings.height, settings.width)
    if settings.family == "modes":
        render = render_modes_scene(scene_seed, *size, settings.sources)
        metadata["modes"] = {"sources": list(render.sources), "mode": render.mode}
        if settings.save_alternatives:
            np.savez_compressed(
                split_dir / "modes" / f"{scene_id}.npz",
                alternatives=_to_uint8(render.alternatives.permute(0, 1, 3, 4, 2)),
                hidden=render.hidden.numpy(),
                mode=render.mode,
                sources=np.asarray(render.sources),
            )
    else:
        render = render_synthetic_scene(scene_seed, *size)
    image_dir = split_dir / "images" / scene_id
    image_dir.mkdir(parents=True, exist_ok=True)
    pixels = _to_uint8(render.images.permute(0, 2, 3, 1))
    w2c = c2w_to_w2c(render.c2w)
    frames = []
    for index in range(settings.num_frames):
        name = f"{index:05d}.png"
        Image.fromarray(pixels[index]).save(image_dir / name)
        frames.append(
            {
                "image_path": f"{settings.split}/images/{scene_id}/{name}",
                "fxfycxcy": render.fxfycxcy[index].tolist(),
                "w2c": w2c[index].tolist(),
            }
        )
    metadata["frames"] = frames
    (split_dir / "metadata" / f"{scene_id}.json").write_text(json.dumps(metadata, indent=1))
    if settings.save_depth:
        np.save(split_dir / "depth" / f"{scene_id}.npy", render.depth.numpy())
    return scene_id


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (channels last) as uint8, rounded."""
    return (images * 255.0).round().to(torch.uint8).numpy()
