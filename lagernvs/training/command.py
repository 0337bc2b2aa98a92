"""The `lagernvs train` and `lagernvs train-denoiser` command lines, light to import.

Arguments are parsed before torch, diffusers or accelerate are imported, so ``--help`` and
argument errors answer at once; the entry module (``train.py``, ``train_denoiser.py``) is
imported only to run. ``main`` returns the exit code: 0, or 130 / 143 when Ctrl-C / SIGTERM
stopped the run (after saving a checkpoint), so ``lagernvs train ... && lagernvs eval ...`` stops
there. Errors propagate; :func:`lagernvs.config.run_command` (``lagernvs`` and ``python -m``)
turns them into one line.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

from lagernvs.config import config_parser
from lagernvs.runlock import launch_rank

__all__ = ["TRAIN", "TRAIN_DENOISER", "TrainingCommand", "train", "train_denoiser"]


@dataclass(frozen=True)
class TrainingCommand:
    """A training command line: parse, read the config, run, print the summary line.

    ``module`` is the entry module; its ``load`` function reads and validates the config
    (``load(path, overrides)``) and its ``run`` function trains (``run(config, output_dir)`` ->
    :class:`~lagernvs.training.trainer.TrainState`); ``result`` names the folder under
    ``--output-dir`` that holds what a finished run saved.
    """

    prog: str
    description: str
    config_help: str
    set_example: str
    module: str
    load: str
    run: str
    result: str

    def main(self, argv: Sequence[str] | None = None) -> int:
        parser = config_parser(self.prog, self.description, self.config_help, self.set_example)
        args = parser.parse_args(argv)
        entry = importlib.import_module(self.module)
        config = getattr(entry, self.load)(args.config, args.overrides)
        state = getattr(entry, self.run)(config, args.output_dir)
        if launch_rank() == 0:
            print(state.summary(args.output_dir / self.result), flush=True)
        return state.exit_code


TRAIN = TrainingCommand(
    prog="lagernvs train",
    description="Train the deterministic LagerNVS model.",
    config_help="training YAML file",
    set_example="--set optim.lr=1e-4",
    module="lagernvs.training.train",
    load="load_train_config",
    run="run_training",
    result="model",
)

TRAIN_DENOISER = TrainingCommand(
    prog="lagernvs train-denoiser",
    description="Fine-tune the renderer of a trained model into the diffusion decoder.",
    config_help="denoiser training YAML",
    set_example="--set objective.prediction_type=flow",
    module="lagernvs.training.train_denoiser",
    load="load_denoiser_config",
    run="run_denoiser_training",
    result="pipeline",
)

train = TRAIN.main
train_denoiser = TRAIN_DENOISER.main
