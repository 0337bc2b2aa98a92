"""Fine-tune the renderer of a trained LagerNVS model into the diffusion decoder.

    accelerate launch -m lagernvs.training.train_denoiser \
        --config configs/train/denoiser_re10k.yaml --output-dir runs/denoiser [--set k=v ...]

The deterministic model comes from ``model.checkpoint``: a ``save_pretrained`` folder or an
official ``model.pt`` read with ``model.preset``. It is frozen whole: scene tokens are computed
under ``torch.no_grad`` and only the :class:`~lagernvs.diffusion.DenoisingRenderer` (a copy of
the renderer plus its new parameters) trains, with the shared loop (resume, EMA, logging,
multi-GPU) and the data streams of the deterministic entry point.

Writes ``<output-dir>/config.yaml``, ``checkpoints/checkpoint-<step>/`` while training (re-run
the same command to resume) and, at the end, ``<output-dir>/pipeline/`` (atomically): a
``LagerNVSPipeline.save_pretrained`` folder with the frozen ``model``, the ``denoiser`` (EMA
weights when EMA is on) and the training noise ``scheduler``. Stops, exit codes, the lock and
the checks before the run are those of ``lagernvs train`` (:mod:`lagernvs.training.train`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.logging import get_logger
from torch import Tensor, nn

from lagernvs.config import join_key, load_config, require, run_command
from lagernvs.data.config import DataConfig
from lagernvs.diffusion.denoiser import DenoisingRenderer, renderer_config
from lagernvs.io import atomic_folder
from lagernvs.models.checkpoints import load_pretrained_model
from lagernvs.runlock import run_lock
from lagernvs.training.command import TRAIN_DENOISER
from lagernvs.training.config import LoopConfig, ModelConfig, OptimConfig, check_schedule
from lagernvs.training.diffusion_loss import DiffusionLoss, ObjectiveConfig
from lagernvs.training.entry import (
    build_trainer,
    check_run_inputs,
    finished_before,
    prepare_data,
    start_accelerator,
)
from lagernvs.training.train import build_model
from lagernvs.training.trainer import Trainer, TrainState

logger = get_logger(__name__)

VAL_SEED = 20_260_101  # validation draws (timesteps, noise) are the same at every evaluation


@dataclass
class DenoiserOptions:
    """Where the denoiser starts: the deterministic renderer plus new parameters (their
    options here), or, with ``checkpoint``, a saved denoiser to fine-tune further (the
    ``denoiser/`` folder of a pipeline; its own config then holds the options)."""

    timestep_channels: int = 256
    checkpoint: str | None = None

    def validate(self, prefix: str) -> None:
        require(
            self.timestep_channels >= 2 and self.timestep_channels % 2 == 0,
            join_key(prefix, "timestep_channels"),
            f"must be an even number >= 2, got {self.timestep_channels}",
        )


@dataclass
class DenoiserTrainConfig:
    """Everything a denoiser fine-tuning run needs (see configs/train/denoiser_*.yaml)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    denoiser: DenoiserOptions = field(default_factory=DenoiserOptions)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def validate(self, prefix: str) -> None:
        check_schedule(self.optim, self.loop)
        require(
            self.model.vggt_weights is None,
            "model.vggt_weights",
            "the denoiser starts from a trained model; set model.checkpoint to its "
            "save_pretrained folder or official model.pt instead",
        )


def load_denoiser_config(
    path: str | Path | None, overrides: Sequence[str] = ()
) -> DenoiserTrainConfig:
    """Read a denoiser YAML with ``key=value`` overrides into a validated config."""
    return load_config(DenoiserTrainConfig, path, list(overrides))


class DenoiserBatchLoss:
    """``compute_loss`` of the loop: frozen encoder -> scene tokens -> :class:`DiffusionLoss`.

    Batches are those of the deterministic training streams (``images``, ``rays``,
    ``cam_tokens``, ``num_cond_views``): the conditioning views are encoded without gradients
    and the target views are denoised. In eval mode the draws use a fixed seed, so successive
    validations compare the same noise and timesteps; scene dropout is on in training only.
    """

    def __init__(self, model: nn.Module, objective: DiffusionLoss) -> None:
        self.model = model
        self.objective = objective

    def __call__(self, denoiser: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        num_cond = int(batch["num_cond_views"])
        images, cam_tokens = batch["images"], batch["cam_tokens"]
        with torch.no_grad():
            scene_tokens = self.model.encode(images[:, :num_cond], cam_tokens[:, :num_cond])
        generator = None
        if not denoiser.training:
            generator = torch.Generator(images.device).manual_seed(VAL_SEED)
        self.objective.train(denoiser.training)
        return self.objective(
            denoiser, scene_tokens, batch["rays"][:, num_cond:], images[:, num_cond:], generator
        )


def build_frozen_model(config: ModelConfig) -> nn.Module:
    """The deterministic model of ``config``, frozen and in eval mode."""
    if config.checkpoint is None:
        logger.warning(
            "model.checkpoint is null: fine-tuning from a freshly initialised "
            f"{config.preset!r} model (smoke tests only); point it at a trained model",
            main_process_only=True,
        )
    return build_model(config).requires_grad_(False).eval()


def build_denoiser(config: DenoiserTrainConfig, model: nn.Module) -> DenoisingRenderer:
    """The denoiser a run starts from: a copy of ``model``'s renderer with new parameters, or
    the saved denoiser of ``denoiser.checkpoint``, which must fit the model's renderer and
    predict what ``objective.prediction_type`` asks for."""
    options, objective = config.denoiser, config.objective.prediction_type
    if options.checkpoint is None:
        return DenoisingRenderer.from_renderer(
            model, timestep_channels=options.timestep_channels, objective=objective
        )
    denoiser = load_pretrained_model(options.checkpoint, DenoisingRenderer)
    expected = renderer_config(model.renderer)
    found = {key: denoiser.config[key] for key in expected}
    if found != expected or denoiser.config.objective != objective:
        raise ValueError(
            f"config key 'denoiser.checkpoint': {options.checkpoint} is a denoiser of renderer "
            f"{found} predicting {denoiser.config.objective!r}, but model.checkpoint has renderer "
            f"{expected} and objective.prediction_type is {objective!r}; fine-tune a denoiser "
            "of this model with the objective it was trained with"
        )
    return denoiser.train()


def run_denoiser_training(config: DenoiserTrainConfig, output_dir: str | Path) -> TrainState:
    """Fine-tune (or resume) into ``output_dir``; returns the final TrainState.

    When the run reaches ``loop.max_steps`` the pipeline is saved to ``<output_dir>/pipeline``;
    a run stopped by a signal only leaves its checkpoint (re-run to resume); a run that finished
    before returns its state at once (``already_finished``).
    """
    output_dir = Path(output_dir)
    check_run_inputs(config)
    start = config.denoiser.checkpoint
    if start is not None and not (Path(start) / "config.json").is_file():
        raise FileNotFoundError(
            f"config key 'denoiser.checkpoint': {start} is no saved denoiser folder (no "
            "config.json); give the denoiser/ folder of a pipeline, e.g. RUN/pipeline/denoiser"
        )
    with run_lock(output_dir, TRAIN_DENOISER.prog):
        if (done := finished_before(output_dir, "pipeline", config.loop.max_steps)) is not None:
            return done
        accelerator = start_accelerator(config, output_dir)
        model = build_frozen_model(config.model).to(accelerator.device)
        data = prepare_data(config, output_dir, accelerator)
        denoiser = build_denoiser(config, model)
        objective = DiffusionLoss(config.objective).to(accelerator.device)
        compute_loss = DenoiserBatchLoss(model, objective)
        trainer = build_trainer(config, output_dir, accelerator, data, denoiser, compute_loss)
        state = trainer.train()
        if not state.stopped:
            _save_pipeline(trainer, model, objective, output_dir)
        trainer.close()
        return state


def _save_pipeline(
    trainer: Trainer, model: nn.Module, objective: DiffusionLoss, output_dir: Path
) -> None:
    """Write ``<output_dir>/pipeline`` atomically: the trained denoiser (exported first, by every
    process), the frozen model and the noise scheduler."""
    from lagernvs.pipeline import LagerNVSPipeline

    export = output_dir / ".denoiser-export"
    trainer.save_model(export)
    if trainer.accelerator.is_main_process:
        pipeline = LagerNVSPipeline(
            model=model.cpu(),
            denoiser=DenoisingRenderer.from_pretrained(str(export)),
            scheduler=objective.scheduler,
        )
        with atomic_folder(output_dir / "pipeline") as folder:
            pipeline.save_pretrained(str(folder))
        shutil.rmtree(export)
    trainer.accelerator.wait_for_everyone()


main = TRAIN_DENOISER.main  # `main(argv)`: parse, train, return the exit code


if __name__ == "__main__":
    raise SystemExit(run_command(TRAIN_DENOISER.prog, main))
