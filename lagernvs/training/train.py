"""Train the deterministic LagerNVS model on WebDataset shards with the shared loop.

    accelerate launch -m lagernvs.training.train --config configs/train/re10k.yaml \
        --output-dir runs/re10k [--set optim.lr=1e-4 ...]

Writes `<output-dir>/config.yaml` (the resolved config), `checkpoints/checkpoint-<step>/`
while training (re-running the same command resumes from the latest) and the final model to
`<output-dir>/model/` with `save_pretrained`. SIGTERM / Ctrl-C save a checkpoint and exit.
`run_training(config, output_dir)` is the same without argparse (used by `lagernvs train`).

Scale out (the config's global batch holds on any number of processes):
  8 GPUs:   accelerate launch --multi_gpu --num_processes 8 -m lagernvs.training.train ...
  N nodes:  accelerate launch --multi_gpu --num_machines N --machine_rank R \
                --main_process_ip HOST --main_process_port PORT --num_processes 8N -m ...
            (or torchrun --nnodes N --nproc_per_node 8 ...; FSDP: an `accelerate config` file)
  CPU:      torchrun --nproc_per_node 2 -m lagernvs.training.train ... (gloo)
Shards are a local folder (index.json), a brace pattern or URLs (`s3://bucket/x-{000..099}.tar`
streams through `aws s3 cp`); every process reads its own share of the resampled stream.
Checkpoints assume a filesystem shared by all nodes.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch import Tensor, nn

from lagernvs.config import config_parser, load_config, to_dict
from lagernvs.training.config import (
    DataConfig,
    DatasetConfig,
    LoopConfig,
    ModelConfig,
    OptimConfig,
    sampler_arguments,
)
from lagernvs.training.loop import BatchStream, Trainer, TrainState, build_accelerator
from lagernvs.training.losses import LossConfig, RenderLoss

VAL_SEED_OFFSET = 1_000_003  # validation views never share the training stream's seed


@dataclass
class TrainConfig:
    """Everything a deterministic training run needs (see configs/train/*.yaml)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def validate(self, prefix: str) -> None:
        if self.optim.warmup_steps >= self.loop.max_steps:
            raise ValueError(
                f"config key 'optim.warmup_steps': {self.optim.warmup_steps} must be smaller "
                f"than loop.max_steps ({self.loop.max_steps})"
            )


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML with `key=value` overrides into a validated TrainConfig."""
    return load_config(TrainConfig, path, list(overrides))


# ----------------------------------------------------------------------------- model
def build_model(config: ModelConfig) -> nn.Module:
    """A LagerNVSModel from a preset, an official `model.pt` or a `save_pretrained` folder."""
    from lagernvs.models import LagerNVSModel, load_vggt_weights

    if config.checkpoint is not None:
        path = Path(config.checkpoint)
        if path.is_dir():
            if config.overrides:
                raise ValueError(
                    "config key 'model.overrides' cannot change a save_pretrained model "
                    f"({path}); remove the overrides"
                )
            model = LagerNVSModel.from_pretrained(str(path))
        elif path.is_file():
            model = LagerNVSModel.from_original_checkpoint(path, config.preset, **config.overrides)
        else:
            raise FileNotFoundError(
                f"model.checkpoint {path} does not exist; give an official model.pt or a "
                "save_pretrained folder"
            )
    else:
        model = LagerNVSModel.from_preset(config.preset, **config.overrides)
        if config.vggt_weights is not None:
            load_vggt_weights(model, config.vggt_weights)
    model.train()
    if config.freeze_encoder:
        model.reconstructor.vggt.requires_grad_(False)
    return model


class NovelViewLoss:
    """`compute_loss` of the loop: render the batch's targets and score them with RenderLoss."""

    def __init__(self, render_loss: RenderLoss) -> None:
        self.render_loss = render_loss

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        num_cond = int(batch["num_cond_views"])
        output = model(batch["images"], batch["rays"], batch["cam_tokens"], num_cond)
        prediction = output[:, num_cond:].float()
        target = batch["images"][:, num_cond:]
        losses = self.render_loss(prediction, target)
        return {**losses, "prediction": prediction, "target": target}


# ------------------------------------------------------------------------------ data
class MixedStream:
    """Batches from several resumable streams, each drawn with a fixed probability.

    The choice sequence is seeded per process; the state is the number of choices made plus
    every stream's own state, so resuming replays the choices (cheap) and resumes each stream.
    """

    def __init__(self, streams: Sequence[BatchStream], weights: Sequence[float], seed: int) -> None:
        self.streams = list(streams)
        probs = np.asarray(weights, dtype=np.float64)
        self.probs = probs / probs.sum()
        self.seed = seed
        self._draws = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng(self.seed)
        rng.choice(len(self.streams), size=self._draws, p=self.probs)
        iterators = [iter(stream) for stream in self.streams]
        while True:
            choice = int(rng.choice(len(self.streams), p=self.probs))
            self._draws += 1
            yield next(iterators[choice])

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self._draws, "streams": [s.state_dict() for s in self.streams]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._draws = int(state["draws"])
        for stream, sub_state in zip(self.streams, state["streams"], strict=True):
            stream.load_state_dict(sub_state)


class FixedBatches:
    """The first `num_batches` batches of a freshly built stream: the same views every time."""

    def __init__(self, make_loader: Any, num_batches: int) -> None:
        self.make_loader = make_loader
        self.num_batches = num_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return islice(iter(self.make_loader()), self.num_batches)


def _loader_kwargs(seed: int) -> dict[str, Any]:
    # An explicit generator keeps the DataLoader from drawing on the global torch RNG.
    return {
        "generator": torch.Generator().manual_seed(seed),
        "pin_memory": torch.cuda.is_available(),
    }


def build_streams(
    data: DataConfig, micro_batch: int, seed: int, rank: int
) -> tuple[BatchStream, Iterable[dict[str, Any]] | None]:
    """The training stream (mixed over datasets) and the fixed validation batches (or None)."""
    from lagernvs.data.stream import StreamLoader, TrainingStream
    from lagernvs.data.views import TrainViewSampler, sampler_preset

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
    from lagernvs.data.stream import resolve_urls

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
    data: DataConfig, output_dir: Path, accelerator: Accelerator
) -> DataConfig:
    """With `data.synthetic`, write missing synthetic shards (main process) and point to them."""
    if data.synthetic is None:
        return data
    from lagernvs.data.shards import write_shards
    from lagernvs.data.synthetic import write_synthetic_dataset

    synthetic = data.synthetic
    root = output_dir / "synthetic"
    folders = {"train": root / "train-shards", "test": root / "val-shards"}
    if accelerator.is_main_process:
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
    accelerator.wait_for_everyone()
    train = [
        replace(d, shards=d.shards if d.shards is not None else str(folders["train"]))
        for d in data.train
    ]
    val = data.val_shards if data.val_shards is not None else str(folders["test"])
    return replace(data, train=train, val_shards=val)


# ------------------------------------------------------------------------------- run
def run_training(config: TrainConfig, output_dir: str | Path) -> TrainState:
    """Train (or resume) into `output_dir`; returns the final TrainState.

    When the run reaches `loop.max_steps`, the model is saved to `<output_dir>/model/`; a run
    stopped by a signal only leaves its checkpoint (re-run to resume).
    """
    output_dir = Path(output_dir)
    accelerator = build_accelerator(config.loop, output_dir)
    config.loop.gradient_accumulation_steps(accelerator.num_processes)
    set_seed(config.loop.seed)
    data = prepare_synthetic_shards(config.data, output_dir, accelerator)
    check_shards(data)
    model = build_model(config.model)
    render_loss = RenderLoss(config.loss).to(accelerator.device)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    train_stream, val_batches = build_streams(
        data, config.loop.micro_batch_size, config.loop.seed, accelerator.process_index
    )
    trainer = Trainer(
        model,
        NovelViewLoss(render_loss),
        train_stream,
        config.optim,
        config.loop,
        output_dir,
        accelerator=accelerator,
        val_batches=val_batches,
        hparams=to_dict(config),
    )
    state = trainer.train()
    if not state.stopped:
        trainer.save_model(output_dir / "model")
    trainer.close()
    return state


def build_parser() -> argparse.ArgumentParser:
    return config_parser(
        "lagernvs train",
        "Train the deterministic LagerNVS model.",
        "training YAML file",
        "--set optim.lr=1e-4",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_train_config(args.config, args.overrides)
    state = run_training(config, args.output_dir)
    PartialState().print(state.summary(args.output_dir / "model"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
