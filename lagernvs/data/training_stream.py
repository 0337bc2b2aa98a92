"""The batch streams of a training run, built from its `data` config section.

* :func:`prepare_synthetic_shards` writes the synthetic shards a config asks for (once);
* :func:`check_shards` fails at start-up, naming the key, when local shard files are missing;
* :func:`build_streams` gives the training stream (datasets mixed by weight, resumable) and the
  fixed validation batches; a dataset with ``context_frames`` draws its views with
  :class:`FixedContextSampler`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState

from lagernvs.data.batch_streams import BatchStream, FixedBatches, MixedStream
from lagernvs.data.config import DataConfig, DatasetConfig, sampler_arguments
from lagernvs.data.shards import write_shards
from lagernvs.data.stream import StreamLoader, TrainingStream, resolve_urls
from lagernvs.data.synthetic import write_synthetic_dataset
from lagernvs.data.views import (
    SceneTooShortError,
    TrainViewSampler,
    ViewSamplerConfig,
    ViewSelection,
    sampler_preset,
)

__all__ = [
    "VAL_SEED_OFFSET",
    "FixedContextSampler",
    "build_streams",
    "check_shards",
    "prepare_synthetic_shards",
]

VAL_SEED_OFFSET = 1_000_003  # validation views never share the training stream's seed


class FixedContextSampler(TrainViewSampler):
    """Training views with the same context frames in every sample.

    For scene families with designated source frames (the synthetic "modes" family): what
    those sources do not see is what the model must learn to complete. The context is
    ``context`` (its length is the number of conditioning views); the ``num_targets`` targets
    are distinct frames uniform over the others (repeated only if too few), and with
    ``context_as_target_prob`` one of them is replaced by a context frame. The config's
    ``context_gap``, ``expansion_factor`` and ``cond_view_weights`` do not apply.
    """

    def __init__(self, config: ViewSamplerConfig, context: Sequence[int]) -> None:
        super().__init__(replace(config, cond_view_weights={len(context): 1.0}))
        self.context = tuple(int(c) for c in context)

    def min_frames(self, num_cond_views: int) -> int:
        return max(self.context) + 2

    def draw_views(
        self, num_frames: int, num_cond_views: int, rng: np.random.Generator
    ) -> ViewSelection:
        if num_frames < self.min_frames(num_cond_views):
            raise SceneTooShortError(
                f"scene with {num_frames} frames is too short for context frames {self.context}"
            )
        count = self.config.num_targets
        others = np.array([f for f in range(num_frames) if f not in self.context])
        targets = np.sort(rng.choice(others, size=count, replace=len(others) < count))
        if rng.random() < self.config.context_as_target_prob:
            targets[rng.integers(count)] = self.context[rng.integers(len(self.context))]
        return ViewSelection(context=self.context, target=tuple(int(t) for t in targets))


def _loader_kwargs(seed: int) -> dict[str, Any]:
    # An explicit generator keeps the DataLoader from drawing on the global torch RNG.
    return {
        "generator": torch.Generator().manual_seed(seed),
        "pin_memory": torch.cuda.is_available(),
    }


def build_streams(
    data: DataConfig, micro_batch: int, seed: int, rank: int
) -> tuple[BatchStream, FixedBatches | None]:
    """The training stream (mixed over datasets) and the fixed validation batches (or None)."""

    def sampler(dataset: DatasetConfig, **extra: Any) -> TrainViewSampler:
        arguments = {**sampler_arguments(dataset.sampler), **extra}
        config = sampler_preset(data.recipe, dataset.dataset, **arguments)
        if dataset.context_frames is not None:
            return FixedContextSampler(config, dataset.context_frames)
        return TrainViewSampler(config)

    streams = [
        StreamLoader(
            TrainingStream(
                dataset.shards,
                sampler(dataset),
                micro_batch,
                shuffle_buffer=data.shuffle_buffer,
                seed=seed + index,
            ),
            num_workers=data.num_workers,
            **_loader_kwargs(seed),
        )
        for index, dataset in enumerate(data.train)
    ]
    train: BatchStream = streams[0]
    if len(streams) > 1:
        train = MixedStream(streams, [d.weight for d in data.train], seed=seed * 1000 + rank)
    if data.val_shards is None or data.val_batches == 0:
        return train, None

    def val_loader() -> StreamLoader:
        # Held-out views only: a target that repeats a context view would inflate the PSNR.
        val_sampler = sampler(data.train[0], context_as_target_prob=0.0)
        stream = TrainingStream(
            data.val_shards, val_sampler, micro_batch, shuffle_buffer=0, seed=VAL_SEED_OFFSET
        )
        return StreamLoader(stream, **_loader_kwargs(seed))

    return train, FixedBatches(val_loader, data.val_batches)


def check_shards(data: DataConfig) -> None:
    """Fail at start-up, naming the key, when local shard files are missing."""
    entries = [(f"data.train[{i}].shards", d.shards) for i, d in enumerate(data.train)]
    entries.append(("data.val_shards", data.val_shards))
    for key, urls in entries:
        if urls is None:
            continue
        try:
            resolved = resolve_urls(urls)
        except (OSError, ValueError) as error:
            raise FileNotFoundError(f"config key '{key}': {error}") from None
        local = [u for u in resolved if "://" not in u and not u.startswith("pipe:")]
        missing = [u for u in local if not Path(u).is_file()]
        if missing:
            raise FileNotFoundError(
                f"config key '{key}': shard {missing[0]} does not exist ({len(missing)} of "
                f"{len(resolved)} missing); write shards with `lagernvs shards` or fix the path"
            )


def prepare_synthetic_shards(
    data: DataConfig, output_dir: Path, state: PartialState | Accelerator, workers: int = 1
) -> DataConfig:
    """With `data.synthetic`, write missing synthetic shards (main process) and point to them.

    `state` is the run's Accelerator (or a PartialState): every process waits for the shards.
    `workers` processes render the scenes (see :func:`write_synthetic_dataset`).
    """
    if data.synthetic is None:
        return data
    synthetic = data.synthetic
    root = output_dir / "synthetic"
    folders = {"train": root / "train-shards", "test": root / "val-shards"}
    if state.is_main_process:
        _check_settings(root / "settings.json", asdict(synthetic))
        for offset, (split, folder) in enumerate(folders.items()):
            if (folder / "index.json").is_file():  # written last: the shards are complete
                continue
            scenes = root / f"scenes-{split}"
            shutil.rmtree(scenes, ignore_errors=True)
            write_synthetic_dataset(
                scenes,
                synthetic.train_scenes if split == "train" else synthetic.val_scenes,
                split=split,
                seed=synthetic.seed + offset,
                num_frames=synthetic.num_frames,
                height=synthetic.image_size,
                width=synthetic.image_size,
                family=synthetic.family,
                sources=synthetic.sources,
                workers=workers,
            )
            scenes_per_shard = max(1, synthetic.train_scenes // 8)
            write_shards("re10k", scenes, folder, split, scenes_per_shard, progress=False)
            shutil.rmtree(scenes)
    state.wait_for_everyone()
    train = [
        replace(d, shards=d.shards if d.shards is not None else str(folders["train"]))
        for d in data.train
    ]
    val = data.val_shards if data.val_shards is not None else str(folders["test"])
    return replace(data, train=train, val_shards=val)


def _check_settings(stamp: Path, settings: dict[str, Any]) -> None:
    """Record the synthetic settings next to new shards; refuse shards made with others."""
    if stamp.is_file():
        if json.loads(stamp.read_text()) != settings:
            raise ValueError(
                f"{stamp.parent} holds synthetic shards generated with other data.synthetic "
                "settings; delete it or use another output folder"
            )
        return
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(settings))
