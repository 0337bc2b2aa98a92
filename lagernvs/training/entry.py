"""What the training entry points share: checks before a run, its start, its Trainer.

`run_training` and `run_denoiser_training` do, in this order: :func:`check_run_inputs` (every
path and weight file the config names: fails in a second, before anything is written), take
the run folder's lock (:func:`lagernvs.runlock.run_lock`), return at once when the run
:func:`finished_before`, :func:`start_accelerator`, build the model (reading its weights),
:func:`prepare_data` (synthetic shards, the expensive part) and train with
:func:`build_trainer`. The command lines are :mod:`lagernvs.training.command`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from lagernvs.config import to_dict
from lagernvs.data.config import DataConfig
from lagernvs.data.stream import check_readable
from lagernvs.data.training_stream import build_streams, check_shards, prepare_synthetic_shards
from lagernvs.pipeline.estimation import check_vggt_weights
from lagernvs.training.accelerator import build_accelerator
from lagernvs.training.checkpoints import list_checkpoints
from lagernvs.training.config import LoopConfig, ModelConfig, OptimConfig
from lagernvs.training.outputs import LossFn
from lagernvs.training.trainer import Trainer, TrainState

__all__ = [
    "RunConfig",
    "build_trainer",
    "check_run_inputs",
    "finished_before",
    "prepare_data",
    "start_accelerator",
]


class RunConfig(Protocol):
    """The sections every training config has (plus its own model and loss sections)."""

    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    loop: LoopConfig


def check_run_inputs(config: RunConfig) -> None:
    """Fail now, naming the config key, when a path the config names is missing or unusable:
    the model checkpoint, the VGGT weights and the given shards (present, and not all
    unreadable). Synthetic shards are written later and checked then."""
    model = config.model
    if model.checkpoint is not None:
        path = Path(model.checkpoint)
        if not path.exists():
            raise FileNotFoundError(
                f"config key 'model.checkpoint': {path} does not exist; give an official "
                "model.pt or a save_pretrained folder"
            )
        if path.is_dir() and not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"config key 'model.checkpoint': folder {path} holds no config.json; give a "
                "save_pretrained folder (RUN/model of `lagernvs train`) or an official model.pt"
            )
    if model.vggt_weights is not None:
        try:
            check_vggt_weights(model.vggt_weights)
        except OSError as error:
            raise type(error)(f"config key 'model.vggt_weights': {error}") from None
    check_shards(config.data)
    given = [(f"data.train[{i}].shards", d.shards) for i, d in enumerate(config.data.train)]
    for key, urls in [*given, ("data.val_shards", config.data.val_shards)]:
        if urls is not None:
            check_readable(urls, f"config key '{key}'")


def finished_before(output_dir: Path, result: str, max_steps: int) -> TrainState | None:
    """The state of a run that finished before (its `result` folder saved, its latest
    checkpoint at `max_steps` or later); None when there is training left to do."""
    checkpoints = list_checkpoints(output_dir / "checkpoints")
    if not checkpoints or not (output_dir / result).is_dir():
        return None
    saved = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    if int(saved["step"]) < max_steps:
        return None
    return TrainState(
        step=int(saved["step"]), skipped_steps=int(saved["skipped_steps"]), already_finished=True
    )


def start_accelerator(config: RunConfig, output_dir: Path) -> Accelerator:
    """The run's Accelerator, its batch split checked, and the seed set (before the model)."""
    accelerator = build_accelerator(config.loop, output_dir)
    config.loop.gradient_accumulation_steps(accelerator.num_processes)
    set_seed(config.loop.seed)
    return accelerator


def prepare_data(config: RunConfig, output_dir: Path, accelerator: Accelerator) -> DataConfig:
    """Ready shards and `<output_dir>/config.yaml`; returns the data section with the synthetic
    shards filled in."""
    data = prepare_synthetic_shards(config.data, output_dir, accelerator)
    check_shards(data)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return data


def build_trainer(
    config: RunConfig,
    output_dir: Path,
    accelerator: Accelerator,
    data: DataConfig,
    model: nn.Module,
    compute_loss: LossFn,
) -> Trainer:
    """The Trainer of `model` on the run's training stream and validation batches."""
    train_stream, val_batches = build_streams(
        data, config.loop.micro_batch_size, config.loop.seed, accelerator.process_index
    )
    return Trainer(
        model,
        compute_loss,
        train_stream,
        config.optim,
        config.loop,
        output_dir,
        accelerator=accelerator,
        val_batches=val_batches,
        hparams=to_dict(config),
    )
