"""Fine-tune the renderer of a trained LagerNVS model into the diffusion decoder.

    accelerate launch -m lagernvs.training.train_denoiser \
        --config configs/train/denoiser_re10k.yaml --output-dir runs/denoiser [--set k=v ...]

The deterministic model comes from ``model.checkpoint``: a ``save_pretrained`` folder or an
official ``model.pt`` read with ``model.preset``. It is frozen whole: scene tokens are computed
under ``torch.no_grad`` and only the :class:`~lagernvs.diffusion.DenoisingRenderer` (a copy of
the renderer plus its new parameters) trains, with the shared loop (resume, EMA, logging,
multi-GPU) and the data streams of the deterministic entry point.

Writes ``<output-dir>/config.yaml``, ``checkpoints/checkpoint-<step>/`` while training (re-run
the same command to resume) and, at the end, ``<output-dir>/pipeline/``: a
``LagerNVSPipeline.save_pretrained`` folder with the frozen ``model``, the ``denoiser`` (EMA
weights when EMA is on) and the training noise ``scheduler``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import PartialState
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch import Tensor, nn

from lagernvs.config import config_parser, load_config, to_dict
from lagernvs.diffusion.denoiser import DenoisingRenderer
from lagernvs.diffusion.objective import DiffusionLoss, ObjectiveConfig
from lagernvs.training.config import (
    DataConfig,
    LoopConfig,
    ModelConfig,
    OptimConfig,
)
from lagernvs.training.loop import Trainer, TrainState, build_accelerator
from lagernvs.training.train import build_model, build_streams, prepare_synthetic_shards

logger = get_logger(__name__)

VAL_SEED = 20_260_101  # validation draws (timesteps, noise) are the same at every evaluation


@dataclass
class DenoiserOptions:
    """New parameters of the denoiser (the rest is read from the deterministic renderer)."""

    timestep_channels: int = 256

    def validate(self, prefix: str) -> None:
        if self.timestep_channels < 2 or self.timestep_channels % 2:
            raise ValueError(
                f"config key '{prefix}.timestep_channels': must be an even number >= 2, "
                f"got {self.timestep_channels}"
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
        if self.optim.warmup_steps >= self.loop.max_steps:
            raise ValueError(
                f"config key 'optim.warmup_steps': {self.optim.warmup_steps} must be smaller "
                f"than loop.max_steps ({self.loop.max_steps})"
            )
        if self.model.vggt_weights is not None:
            raise ValueError(
                "config key 'model.vggt_weights': the denoiser starts from a trained model; set "
                "model.checkpoint to its save_pretrained folder or official model.pt instead"
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


def run_denoiser_training(config: DenoiserTrainConfig, output_dir: str | Path) -> TrainState:
    """Fine-tune (or resume) into ``output_dir``; returns the final TrainState.

    When the run reaches ``loop.max_steps`` the pipeline is saved to ``<output_dir>/pipeline``;
    a run stopped by a signal only leaves its checkpoint (re-run to resume).
    """
    from lagernvs.pipeline import LagerNVSPipeline

    output_dir = Path(output_dir)
    accelerator = build_accelerator(config.loop, output_dir)
    config.loop.gradient_accumulation_steps(accelerator.num_processes)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    set_seed(config.loop.seed)
    data = prepare_synthetic_shards(config.data, output_dir, accelerator)
    model = build_frozen_model(config.model).to(accelerator.device)
    denoiser = DenoisingRenderer.from_renderer(
        model,
        timestep_channels=config.denoiser.timestep_channels,
        objective=config.objective.prediction_type,
    )
    objective = DiffusionLoss(config.objective).to(accelerator.device)
    train_stream, val_batches = build_streams(
        data, config.loop.micro_batch_size, config.loop.seed, accelerator.process_index
    )
    trainer = Trainer(
        denoiser,
        DenoiserBatchLoss(model, objective),
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
        final = output_dir / "pipeline"
        trainer.save_model(final / "denoiser")
        if accelerator.is_main_process:
            pipeline = LagerNVSPipeline(
                model=model.cpu(),
                denoiser=DenoisingRenderer.from_pretrained(str(final / "denoiser")),
                scheduler=objective.scheduler,
            )
            pipeline.save_pretrained(str(final))
        accelerator.wait_for_everyone()
    trainer.close()
    return state


def build_parser() -> argparse.ArgumentParser:
    return config_parser(
        "lagernvs train-denoiser",
        "Fine-tune the renderer of a trained model into the diffusion decoder.",
        "denoiser training YAML",
        "--set objective.prediction_type=flow",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_denoiser_config(args.config, args.overrides)
    state = run_denoiser_training(config, args.output_dir)
    PartialState().print(state.summary(args.output_dir / "pipeline"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
