"""What the training entry points share: the start of a run, its Trainer and its command line.

`lagernvs train` and `lagernvs train-denoiser` (`python -m lagernvs.training.train[_denoiser]`)
read `--config FILE --output-dir DIR [--set key=value ...]`, start the run the same way
(:func:`start_run`), train with the shared loop on the config's streams (:func:`build_trainer`)
and print the run's summary line (:class:`TrainingCommand`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch import nn

from lagernvs.config import config_parser, to_dict
from lagernvs.data.config import DataConfig
from lagernvs.data.training_stream import build_streams, check_shards, prepare_synthetic_shards
from lagernvs.training.accelerator import build_accelerator
from lagernvs.training.config import LoopConfig, OptimConfig
from lagernvs.training.outputs import LossFn
from lagernvs.training.trainer import Trainer, TrainState

__all__ = ["RunConfig", "TrainingCommand", "build_trainer", "start_run"]


class RunConfig(Protocol):
    """The sections every training config has (plus its own model and loss sections)."""

    data: DataConfig
    optim: OptimConfig
    loop: LoopConfig


def start_run(config: RunConfig, output_dir: Path) -> tuple[Accelerator, DataConfig]:
    """Accelerator, seed, ready shards and `<output_dir>/config.yaml`: how every run starts.

    Returns the Accelerator and the data section with the synthetic shards filled in.
    """
    accelerator = build_accelerator(config.loop, output_dir)
    config.loop.gradient_accumulation_steps(accelerator.num_processes)
    set_seed(config.loop.seed)
    data = prepare_synthetic_shards(config.data, output_dir, accelerator)
    check_shards(data)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return accelerator, data


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


@dataclass(frozen=True)
class TrainingCommand:
    """A training command line: read the config, run, print the summary, return the exit code.

    `load(path, overrides)` reads and validates the config; `run(config, output_dir)` trains
    and returns the final state; `result` names the folder under `--output-dir` that holds
    what a finished run saved.
    """

    prog: str
    description: str
    config_help: str
    set_example: str
    load: Callable[[str, Sequence[str]], Any]
    run: Callable[[Any, Path], TrainState]
    result: str

    def main(self, argv: Sequence[str] | None = None) -> int:
        parser = config_parser(self.prog, self.description, self.config_help, self.set_example)
        args = parser.parse_args(argv)
        config = self.load(args.config, args.overrides)
        state = self.run(config, args.output_dir)
        PartialState().print(state.summary(args.output_dir / self.result))
        return 0
