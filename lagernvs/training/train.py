"""Train the deterministic LagerNVS model on WebDataset shards with the shared loop.

    accelerate launch -m lagernvs.training.train --config configs/train/re10k.yaml \
        --output-dir runs/re10k [--set optim.lr=1e-4 ...]

Writes `<output-dir>/config.yaml` (the resolved config), `checkpoints/checkpoint-<step>/`
while training (re-running the same command resumes from the latest) and the final model to
`<output-dir>/model/` with `save_pretrained` (atomically). SIGTERM / Ctrl-C save a checkpoint
and exit 143 / 130; re-running a finished run says so and does nothing. One process at a time
per output folder (a lock; the processes of one multi-GPU launch share it). Every path the
config names is checked before anything is written, and the model's weights are read before
synthetic data is generated. `run_training(config, output_dir)` is the same without argparse
(the command line is :mod:`lagernvs.training.command`).

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lagernvs.config import load_config, run_command
from lagernvs.data.config import DataConfig
from lagernvs.runlock import run_lock
from lagernvs.training.command import TRAIN
from lagernvs.training.config import LoopConfig, ModelConfig, OptimConfig, check_schedule
from lagernvs.training.entry import (
    build_trainer,
    check_run_inputs,
    finished_before,
    prepare_data,
    start_accelerator,
)
from lagernvs.training.losses import LossConfig, RenderLoss
from lagernvs.training.tracking import notice
from lagernvs.training.trainer import TrainState


@dataclass
class TrainConfig:
    """Everything a deterministic training run needs (see configs/train/*.yaml)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def validate(self, prefix: str) -> None:
        check_schedule(self.optim, self.loop)


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML with `key=value` overrides into a validated TrainConfig."""
    return load_config(TrainConfig, path, list(overrides))


# ----------------------------------------------------------------------------- model
def build_model(config: ModelConfig) -> nn.Module:
    """A LagerNVSModel from a preset, an official `model.pt` or any folder
    :func:`~lagernvs.pipeline.load_pipeline` reads (a run, model or pipeline folder; loaded
    strictly: weights that do not match the config, or are not finite, are refused)."""
    from lagernvs.models import LagerNVSModel, load_vggt_weights
    from lagernvs.models.checkpoints import preset_name_conflict
    from lagernvs.pipeline import load_pipeline

    if config.checkpoint is not None:
        path = Path(config.checkpoint)
        if path.is_dir():
            if config.overrides:
                raise ValueError(
                    "config key 'model.overrides' cannot change a save_pretrained model "
                    f"({path}); remove the overrides"
                )
            model = load_pipeline(path, with_denoiser=False).model
        elif path.is_file():
            if conflict := preset_name_conflict(path, config.preset):
                notice(f"note: config key 'model.preset': {conflict}")
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


# ------------------------------------------------------------------------------- run
def run_training(config: TrainConfig, output_dir: str | Path) -> TrainState:
    """Train (or resume) into `output_dir`; returns the final TrainState.

    When the run reaches `loop.max_steps`, the model is saved to `<output_dir>/model/`; a run
    stopped by a signal only leaves its checkpoint (re-run to resume); a run that finished
    before returns its state at once (`already_finished`).
    """
    output_dir = Path(output_dir)
    check_run_inputs(config)
    with run_lock(output_dir, TRAIN.prog):
        if (done := finished_before(output_dir, "model", config.loop.max_steps)) is not None:
            return done
        accelerator = start_accelerator(config, output_dir)
        model = build_model(config.model)
        data = prepare_data(config, output_dir, accelerator)
        render_loss = RenderLoss(config.loss).to(accelerator.device)
        trainer = build_trainer(
            config, output_dir, accelerator, data, model, NovelViewLoss(render_loss)
        )
        state = trainer.train()
        if not state.stopped:
            trainer.save_model(output_dir / "model")
        trainer.close()
        return state


main = TRAIN.main  # `main(argv)`: parse, train, return the exit code


if __name__ == "__main__":
    raise SystemExit(run_command(TRAIN.prog, main))
