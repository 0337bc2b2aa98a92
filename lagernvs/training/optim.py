"""AdamW parameter groups (no decay on norms, biases and tokens), LR schedule and EMA.

AdamW is fused: one kernel per step, and it can skip an update on the device (its `found_inf`
tensor), which :mod:`lagernvs.training.update` uses for skipped steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import torch
from diffusers.optimization import get_scheduler
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from lagernvs.training.config import OptimConfig

if TYPE_CHECKING:
    from diffusers.training_utils import EMAModel


def uses_weight_decay(name: str, param: torch.Tensor, no_decay_keywords: Iterable[str]) -> bool:
    """Decay only matrices/kernels: 1-D tensors (norms, biases, scales) and tokens are exempt."""
    return param.ndim > 1 and not any(keyword in name for keyword in no_decay_keywords)


def parameter_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """Two AdamW groups over the trainable parameters: with and without weight decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        target = decay if uses_weight_decay(name, param, config.no_decay_keywords) else no_decay
        target.append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters; unfreeze at least one module")
    return [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """Fused AdamW with the configured betas/eps over `parameter_groups`."""
    return torch.optim.AdamW(
        parameter_groups(model, config),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        fused=True,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, max_steps: int
) -> LRScheduler:
    """The diffusers schedule named by `config.lr_schedule` (default: warmup then cosine to 0)."""
    return get_scheduler(
        config.lr_schedule,
        optimizer,
        num_warmup_steps=config.warmup_steps,
        num_training_steps=max_steps,
    )


def build_ema(model: nn.Module, config: OptimConfig) -> EMAModel | None:
    """A diffusers EMAModel of `model`'s parameters when `config.ema_decay` is set."""
    if config.ema_decay is None:
        return None
    # Imported here: diffusers.training_utils pulls in every UNet (seconds of start-up).
    from diffusers.training_utils import EMAModel

    return EMAModel(model.parameters(), decay=config.ema_decay)


@contextlib.contextmanager
def ema_weights(ema: EMAModel | None, model: nn.Module) -> Iterator[None]:
    """Inside, `model` holds the EMA weights (when there is an EMA); its own weights after."""
    if ema is None:
        yield
        return
    params = list(model.parameters())
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)
