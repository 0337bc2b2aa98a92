"""The Accelerator of a training run: processes, mixed precision and trackers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

from lagernvs.training.config import LoopConfig
from lagernvs.training.tracking import TENSORBOARD_OFF, JsonlTracker, notice, use_tensorboard

__all__ = ["build_accelerator", "resolve_mixed_precision"]


def resolve_mixed_precision(setting: str) -> str:
    """`auto` -> bf16 on a CUDA device that supports it, else full fp32."""
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def build_accelerator(loop: LoopConfig, output_dir: str | Path) -> Accelerator:
    """Accelerator for `loop` writing logs under `<output_dir>/logs`.

    The schedule is stepped once per optimizer step by the loop itself, hence
    `step_scheduler_with_optimizer=False`. Scalar logs always go to `logs/metrics.jsonl`;
    TensorBoard too when installed (`auto`, else said once) or required (`tensorboard`).
    """
    logging_dir = Path(output_dir) / "logs"
    tensorboard = use_tensorboard(loop.log_with)
    trackers: list[Any] = [JsonlTracker(logging_dir), *(["tensorboard"] if tensorboard else [])]
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = Accelerator(
        # Without CUDA, Accelerate only joins a torchrun/`accelerate launch` group when told
        # to run on CPU (gloo); otherwise every process would silently train alone.
        cpu=world_size > 1 and not torch.cuda.is_available(),
        mixed_precision=resolve_mixed_precision(loop.mixed_precision),
        log_with=trackers,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(logging_dir)
        ),
        step_scheduler_with_optimizer=False,
    )
    if accelerator.num_processes != world_size:
        raise ValueError(
            f"WORLD_SIZE is {world_size} but Accelerate joined {accelerator.num_processes} "
            "process(es); launch with `accelerate launch` or `torchrun` on a supported backend"
        )
    if loop.log_with == "auto" and not tensorboard:
        notice(TENSORBOARD_OFF.format(path=logging_dir / "metrics.jsonl"))
    return accelerator
