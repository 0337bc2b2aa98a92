"""The synthetic scenes of a protocol: generated once per output folder, with a view index.

``dataset.format: synthetic`` (and the extrapolation distance sweep) evaluate procedural scenes
(:mod:`lagernvs.data.synthetic`, Re10k layout, with depth) written under the run's output
folder, so such protocols run anywhere and know exactly which target pixels the context sees.
Scenes of the ``modes`` family also keep every alternative of what their context does not see
(:func:`load_alternatives`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lagernvs.evaluation.protocol import SweepConfig, SyntheticConfig

__all__ = ["load_alternatives", "modes_folder", "write_synthetic_split"]


def write_synthetic_split(
    root: Path, config: SyntheticConfig | SweepConfig, image_size: tuple[int, int], split: str
) -> tuple[Path, list[str]]:
    """Generate synthetic scenes (with depth) and a pixelSplat-style index, once per folder.

    Returns the index file and the scene ids. A folder generated earlier with the same settings
    is reused (resumed runs), one with other settings is an error.
    """
    from lagernvs.data.synthetic import write_synthetic_dataset

    if isinstance(config, SweepConfig):
        context, target = config.views()
    else:
        context, target = list(config.context), list(config.target)
    settings = {**dataclasses.asdict(config), "image_size": list(image_size), "split": split}
    stamp = root / "settings.json"
    index_path = root / "index.json"
    if stamp.is_file():
        if json.loads(stamp.read_text()) != settings:
            raise ValueError(
                f"{root} holds synthetic scenes generated with other settings; delete it or use "
                "another --output-dir"
            )
        return index_path, list(json.loads(index_path.read_text()))
    ids = write_synthetic_dataset(
        root,
        config.num_scenes,
        split=split,
        seed=config.seed,
        num_frames=config.num_frames,
        height=image_size[0],
        width=image_size[1],
        save_depth=True,
        family=getattr(config, "family", "default"),
        sources=context,
        save_alternatives=True,
    )
    index = {scene: {"context": context, "target": target} for scene in ids}
    index_path.write_text(json.dumps(index, indent=1))
    stamp.write_text(json.dumps(settings))
    return index_path, ids


def modes_folder(root: Path, split: str) -> Path:
    """Where :func:`write_synthetic_split` keeps the alternatives of modes scenes."""
    return root / split / "modes"


def load_alternatives(folder: Path, scene: str, frames: list[int]) -> Tensor | None:
    """(T, K, 3, H, W) float alternatives of `frames` of a modes scene in `folder` (None for a
    scene of another family)."""
    path = folder / f"{scene}.npz"
    if not path.is_file():
        return None
    with np.load(path) as stored:
        alternatives = torch.from_numpy(stored["alternatives"][:, frames])  # (K, T, H, W, 3)
    return alternatives.permute(1, 0, 4, 2, 3).float() / 255.0
