"""The batch streams of a training run, built from its `data` config section.

* :func:`prepare_synthetic_shards` writes the synthetic shards a config asks for (once);
* :func:`check_shards` fails at start-up, naming the key, when local shard files are missing;
* :func:`build_streams` gives the training stream (datasets mixed by weight, resumable) and the
  fixed validation batches.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState

from lagernvs.data.batch_streams import BatchStream, FixedBatches, MixedStream
from lagernvs.data.config import DataConfig, DatasetConfig, sampler_arguments
from lagernvs.data.shards import write_shards
from lagernvs.data.stream import StreamLoader, TrainingStream, resolve_urls
from lagernvs.data.synthetic import write_synthetic_dataset
from lagernvs.data.views import TrainViewSampler, sampler_preset

__all__ = ["VAL_SEED_OFFSET", "build_streams", "check_shards", "prepare_synthetic_shards"]

VAL_SEED_OFFSET = 1_000_003  # validation views never share the training stream's seed


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
        return TrainViewSampler(sampler_preset(data.recipe, dataset.dataset, **arguments))

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
    data: DataConfig, output_dir: Path, state: PartialState | Accelerator
) -> DataConfig:
    """With `data.synthetic`, write missing synthetic shards (main process) and point to them.

    `state` is the run's Accelerator (or a PartialState): every process waits for the shards.
    """
    if data.synthetic is None:
        return data
    synthetic = data.synthetic
    root = output_dir / "synthetic"
    folders = {"train": root / "train-shards", "test": root / "val-shards"}
    if state.is_main_process:
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
