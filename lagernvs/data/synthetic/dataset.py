"""Synthetic datasets on disk: rendered worlds written in the Re10k LVSM layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lagernvs.cameras import c2w_to_w2c
from lagernvs.data.synthetic.render import render_synthetic_scene


def write_synthetic_dataset(
    root: str | Path,
    num_scenes: int,
    split: str = "train",
    seed: int = 0,
    num_frames: int = 8,
    height: int = 64,
    width: int = 64,
    save_depth: bool = False,
) -> list[str]:
    """Render `num_scenes` scenes into the Re10k LVSM layout under `root/split`; return their ids.

    Writes `images/<seq>/<5-digit>.png`, `metadata/<seq>.json` (`scene_name`, `frames[]` with
    `image_path`, `fxfycxcy` and 4x4 `w2c`) and `full_list.txt` (one metadata path per line,
    relative to `root`). Scene i uses seed (seed, i); with `save_depth`, `depth/<seq>.npy` holds
    the (N, H, W) float32 z-depth.
    """
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be at least 1, got {num_scenes}")
    split_dir = Path(root) / split
    (split_dir / "metadata").mkdir(parents=True, exist_ok=True)
    scene_seeds = np.random.SeedSequence(seed).generate_state(num_scenes)
    scene_ids = []
    for scene_seed in scene_seeds:
        render = render_synthetic_scene(int(scene_seed), num_frames, height, width)
        scene_id = f"synth{int(scene_seed):010d}"
        image_dir = split_dir / "images" / scene_id
        image_dir.mkdir(parents=True, exist_ok=True)
        pixels = (render.images.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()
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
        metadata = {"scene_name": scene_id, "frames": frames}
        (split_dir / "metadata" / f"{scene_id}.json").write_text(json.dumps(metadata, indent=1))
        if save_depth:
            (split_dir / "depth").mkdir(exist_ok=True)
            np.save(split_dir / "depth" / f"{scene_id}.npy", render.depth.numpy())
        scene_ids.append(scene_id)
    full_list = [f"{split}/metadata/{scene_id}.json" for scene_id in scene_ids]
    (split_dir / "full_list.txt").write_text("\n".join(full_list) + "\n")
    return scene_ids
