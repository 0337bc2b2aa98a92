"""The samples of a protocol's view index, preprocessed exactly as the reference does.

:class:`IndexedViews` reads the scenes an index file names (Re10k, DL3DV or the protocol's
synthetic scenes) through :func:`lagernvs.data.preprocess_views`, the code path of
:class:`lagernvs.data.Re10kEvalDataset`; :func:`build_dataset` makes it from a protocol's
``dataset`` section. Synthetic samples carry per-target visibility masks (``seen``: target
pixels some context view sees).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lagernvs.data.preprocess import preprocess_views, reference_c2w
from lagernvs.data.readers import IMAGE_EXTENSIONS, list_scenes, load_scene
from lagernvs.data.views import IndexEntry, read_view_index
from lagernvs.evaluation.protocol import FORMATS, DatasetConfig, expand_path
from lagernvs.evaluation.synthetic import write_synthetic_split

__all__ = ["IndexedViews", "build_dataset", "check_dataset_paths", "sample_ids"]

_LISTED = 10  # how many offending scenes an error message names


def sample_ids(entries: Sequence[IndexEntry]) -> list[str]:
    """One id per entry: the scene, or ``scene#k`` for scenes with several entries."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.scene] = counts.get(entry.scene, 0) + 1
    seen: dict[str, int] = {}
    ids = []
    for entry in entries:
        k = seen.get(entry.scene, 0)
        seen[entry.scene] = k + 1
        ids.append(entry.scene if counts[entry.scene] == 1 else f"{entry.scene}#{k}")
    return ids


def _re10k_frame_counts(root: Path, split: str, scenes: Sequence[str]) -> dict[str, int]:
    """Number of image files of each Re10k sequence (the reference indexes the sorted list)."""
    split_dir = next(
        (d for d in (root / split, root / "re10k" / split) if (d / "images").is_dir()), None
    )
    if split_dir is None:
        raise FileNotFoundError(f"no Re10k images under {root / split} or {root / 're10k' / split}")
    counts = {}
    for scene in scenes:
        with os.scandir(split_dir / "images" / scene) as files:
            counts[scene] = sum(Path(f.name).suffix.lower() in IMAGE_EXTENSIONS for f in files)
    return counts


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" (and {len(items) - _LISTED} more)" if len(items) > _LISTED else "")


class IndexedViews(Dataset):
    """The samples of a protocol's view index, preprocessed exactly as the reference does.

    Each item is :func:`~lagernvs.data.preprocess_views`' dict (context views first) plus
    ``sample_id``, ``scene``, ``position`` (index in this dataset), ``context`` / ``target``
    (frame indices) and, for synthetic scenes, ``seen`` (T, H, W) bool visibility masks of the
    targets. Re10k (and synthetic) poses go through :func:`~lagernvs.data.preprocess.
    reference_c2w` as in :class:`~lagernvs.data.Re10kEvalDataset`.

    The constructor checks the whole index against the dataset and lists every scene it names
    that the dataset lacks and every frame index beyond a scene's frames.
    """

    def __init__(
        self,
        root: str | Path,
        index_file: str | Path,
        format: str,  # noqa: A002
        image_size: tuple[int, int],
        split: str = "test",
        index_format: str | None = None,
        num_cond_views: int | None = None,
        posed: bool = True,
        skip_missing: bool = False,
        max_samples: int | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown dataset format {format!r}; use one of {FORMATS}")
        self.root = expand_path(str(root))
        self.format = format
        self.reader = "dl3dv" if format == "dl3dv" else "re10k"
        self.split = split
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.posed = posed
        index_file = expand_path(str(index_file))
        entries = read_view_index(index_file, format=index_format)
        entries, self.missing = self._check_scenes(entries, index_file, skip_missing)
        self._check_frames(entries, index_file)
        if num_cond_views is not None:
            wrong = sorted({e.scene for e in entries if len(e.context) != num_cond_views})
            if wrong:
                raise ValueError(
                    f"{index_file} has entries with another number of context views than "
                    f"dataset.num_cond_views={num_cond_views}: {_listed(wrong)}"
                )
        ids = sample_ids(entries)
        if max_samples is not None:
            entries, ids = entries[:max_samples], ids[:max_samples]
        self.entries, self.ids = entries, ids

    def _check_scenes(
        self, entries: list[IndexEntry], index_file: Path, skip_missing: bool
    ) -> tuple[list[IndexEntry], list[str]]:
        available = list_scenes(self.root, self.reader, split=self.split)
        self.scene_dirs = {s: s for s in available}
        if self.reader == "dl3dv":  # indices may name a DL3DV scene by its bare hash
            self.scene_dirs.update({s.rsplit("/", 1)[-1]: s for s in available})
        missing = sorted({e.scene for e in entries} - set(self.scene_dirs))
        if missing and not skip_missing:
            where = f"{self.root}" + (f" split {self.split!r}" if self.reader == "re10k" else "")
            raise FileNotFoundError(
                f"{index_file} names {len(missing)} scenes that {where} lacks: {_listed(missing)}; "
                "check dataset.root and dataset.split, or --set dataset.skip_missing=true to "
                "evaluate the scenes present"
            )
        return [e for e in entries if e.scene in self.scene_dirs], missing

    def _frame_counts(self, scenes: Sequence[str]) -> dict[str, int]:
        if self.reader == "re10k":
            return _re10k_frame_counts(self.root, self.split, scenes)
        return {s: self._dl3dv_frames(self.scene_dirs[s]) for s in scenes}

    def _dl3dv_frames(self, scene_id: str) -> int:
        try:  # from transforms.json alone when it declares the image size
            scene = load_scene(self.root, "dl3dv", scene_id=scene_id, require_images=False)
        except ValueError:
            scene = load_scene(self.root, "dl3dv", scene_id=scene_id)
        return scene.num_frames

    def _check_frames(self, entries: list[IndexEntry], index_file: Path) -> None:
        counts = self._frame_counts(sorted({e.scene for e in entries}))
        bad = sorted(
            {
                f"{e.scene} (frame {max(e.indices)} of {counts[e.scene]} frames)"
                for e in entries
                if max(e.indices) >= counts[e.scene]
            }
        )
        if bad:
            raise ValueError(
                f"{index_file} asks for frames that {len(bad)} scenes of {self.root} lack: "
                f"{_listed(bad)}; the index does not match this version of the dataset"
            )

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, position: int) -> dict[str, Any]:
        entry = self.entries[position]
        scene = load_scene(
            self.root, self.reader, scene_id=self.scene_dirs[entry.scene], split=self.split
        )
        views = scene.select(entry.indices)
        c2w = reference_c2w(views.c2w) if self.reader == "re10k" else views.c2w
        sample = preprocess_views(
            views.image_paths,
            c2w,
            views.fxfycxcy,
            self.image_size,
            num_cond_views=len(entry.context),
            split="test",
            zero_cond_cameras=not self.posed,
            image_ids=[f"{entry.scene}_{p.name.removesuffix('.jpg')}" for p in views.image_paths],
        )
        sample.update(
            sample_id=self.ids[position],
            scene=entry.scene,
            position=position,
            context=list(entry.context),
            target=list(entry.target),
        )
        if self.format == "synthetic":
            sample["seen"] = self._visibility(entry, views)
        return sample

    def _visibility(self, entry: IndexEntry, views: Any) -> Tensor:
        """(T, H, W) masks of target pixels that some context view sees (synthetic depth)."""
        from lagernvs.data.synthetic import visibility_mask

        size = tuple(views.image_sizes[0].tolist())
        if size != self.image_size:
            raise ValueError(
                f"synthetic scene {entry.scene} was generated at {size} but the protocol "
                f"evaluates at {self.image_size}; delete the generated folder {self.root}"
            )
        depth_file = self.root / self.split / "depth" / f"{entry.scene}.npy"
        depth = torch.from_numpy(np.load(depth_file))[list(entry.indices)]
        count = len(entry.context)
        return torch.stack(
            [
                visibility_mask(
                    depth[t],
                    views.c2w[t],
                    views.fxfycxcy[t],
                    depth[:count],
                    views.c2w[:count],
                    views.fxfycxcy[:count],
                )
                for t in range(count, len(entry.indices))
            ]
        )


def check_dataset_paths(config: DatasetConfig) -> None:
    """Fail now, naming the key, when the dataset root or index file is missing (synthetic
    scenes are generated, and checked, later)."""
    if config.format == "synthetic":
        return
    root, index = expand_path(str(config.root)), expand_path(str(config.index))
    if not root.is_dir():
        kind = "is a file" if root.exists() else "does not exist"
        raise FileNotFoundError(
            f"config key 'dataset.root': {root} {kind}; give the {config.format} dataset folder"
        )
    if not index.is_file():
        kind = "is a folder" if index.exists() else "does not exist"
        raise FileNotFoundError(
            f"config key 'dataset.index': {index} {kind}; give the view index file of the split"
        )


def build_dataset(
    config: DatasetConfig, image_size: tuple[int, int], output_dir: Path
) -> IndexedViews:
    """The protocol's dataset; synthetic scenes are generated under ``output_dir/synthetic``
    (or ``dataset.root``) on first use."""
    if config.format == "synthetic":
        assert config.synthetic is not None  # checked by DatasetConfig.validate
        root = expand_path(config.root) if config.root else output_dir / "synthetic"
        index, _ = write_synthetic_split(root, config.synthetic, image_size, config.split)
    else:
        root, index = expand_path(str(config.root)), expand_path(str(config.index))
    return IndexedViews(
        root,
        index,
        config.format,
        image_size,
        split=config.split,
        index_format=None if config.index_format == "auto" else config.index_format,
        num_cond_views=config.num_cond_views,
        posed=config.posed,
        skip_missing=config.skip_missing,
        max_samples=config.max_samples,
    )
