"""Synthetic datasets on disk: rendered worlds written in the Re10k LVSM layout."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lagernvs.cameras import c2w_to_w2c
from lagernvs.data.synthetic.modes import MODE_SOURCES, render_modes_scene
from lagernvs.data.synthetic.render import render_synthetic_scene

FAMILIES = ("default", "modes")


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
    """
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be at least 1, got {num_scenes}")
    if family not in FAMILIES:
        raise ValueError(f"unknown synthetic family {family!r}; use one of {FAMILIES}")
    split_dir = Path(root) / split
    (split_dir / "metadata").mkdir(parents=True, exist_ok=True)
    scene_seeds = np.random.SeedSequence(seed).generate_state(num_scenes)
    scene_ids = []
    for scene_seed in scene_seeds:
        scene_id = f"synth{int(scene_seed):010d}"
        metadata: dict = {"scene_name": scene_id}
        if family == "modes":
            render = render_modes_scene(int(scene_seed), num_frames, height, width, sources)
            metadata["modes"] = {"sources": list(render.sources), "mode": render.mode}
            if save_alternatives:
                (split_dir / "modes").mkdir(exist_ok=True)
                np.savez_compressed(
                    split_dir / "modes" / f"{scene_id}.npz",
                    alternatives=_to_uint8(render.alternatives.permute(0, 1, 3, 4, 2)),
                    hidden=render.hidden.numpy(),
                    mode=render.mode,
                    sources=np.asarray(render.sources),
                )
        else:
            render = render_synthetic_scene(int(scene_seed), num_frames, height, width)
        image_dir = split_dir / "images" / scene_id
        image_dir.mkdir(parents=True, exist_ok=True)
        pixels = _to_uint8(render.images.permute(0, 2, 3, 1))
        w2c = c2w_to_w2c(render.c2w)
        frames = []
        for index in range(num_frames):
            name = f"{index:05d}.png"
            Image.fromarray(pixels[index]).save(image_dir / name)
            frames.append(
                {
                    "image_path": f"{split}/images/{scene_id}/{name}",
                    "fxfycxcy": render.fxfycxcy[index].tolist(),
                    "w2c": w2c[index].tolist(),
                }
            )
        metadata["frames"] = frames
        (split_dir / "metadata" / f"{scene_id}.json").write_text(json.dumps(metadata, indent=1))
        if save_depth:
            (split_dir / "depth").mkdir(exist_ok=True)
            np.save(split_dir / "depth" / f"{scene_id}.npy", render.depth.numpy())
        scene_ids.append(scene_id)
    full_list = [f"{split}/metadata/{scene_id}.json" for scene_id in scene_ids]
    (split_dir / "full_list.txt").write_text("\n".join(full_list) + "\n")
    return scene_ids


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (channels last) as uint8, rounded."""
    return (images * 255.0).round().to(torch.uint8).numpy()
