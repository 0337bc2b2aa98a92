"""The optimizer update of one training step, with its skip decided on the device.

A step is skipped (weights, AdamW moments and EMA untouched) when its loss is non-finite on any
process, its gradient norm is non-finite, or the norm is above `skip_factor * grad_clip`. The
decision is a device tensor that the host never reads, so the step needs no device sync:

* AdamW is fused and receives the decision as its `found_inf` tensor, the mechanism GradScaler
  uses for fp16 overflows: the fused kernel leaves parameters and moments alone and undoes its
  step count;
* the EMA update is multiplied by `1 - skip` (:func:`ema_step`);
* the skips are counted per reason on the device; the trainer reads the counts when it logs or
  saves a checkpoint.

The EMA decay warm-up (diffusers' `EMAModel.get_decay`) advances with every optimizer step,
skipped or not, since the host does not know which steps were skipped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from torch import Tensor, nn

from lagernvs.training.config import OptimConfig

if TYPE_CHECKING:
    from diffusers.training_utils import EMAModel

__all__ = ["GuardedUpdate", "ema_step"]


@torch.no_grad()
def ema_step(ema: EMAModel, parameters: list[nn.Parameter], keep: Tensor) -> None:
    """`EMAModel.step` with the update scaled by the device tensor `keep` (0 or 1)."""
    ema.optimization_step += 1
    decay = ema.get_decay(ema.optimization_step)
    ema.cur_decay_value = decay
    pairs = [(s, p) for s, p in zip(ema.shadow_params, parameters, strict=True) if p.requires_grad]
    shadow = [s for s, _ in pairs]
    deltas = torch._foreach_sub([p for _, p in pairs], shadow)
    torch._foreach_mul_(deltas, keep * (1.0 - decay))
    torch._foreach_add_(shadow, deltas)


class GuardedUpdate:
    """Clip, decide the skip, then step the fused AdamW and the EMA, all on the device.

    `optimizer` is the (Accelerate-wrapped) fused AdamW of `model`; `skip_counts` holds the
    skips per reason (`reasons`, in words) since the last :meth:`take_counts`.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        ema: EMAModel | None,
        config: OptimConfig,
    ) -> None:
        self.inner = getattr(optimizer, "optimizer", optimizer)
        if not all(group.get("fused") for group in self.inner.param_groups):
            raise ValueError("the update needs a fused optimizer, e.g. AdamW(..., fused=True)")
        self.accelerator, self.model, self.optimizer, self.ema = accelerator, model, optimizer, ema
        clip = config.grad_clip
        self.max_norm = clip if clip is not None else math.inf
        self.skip_above = config.skip_factor * clip if clip is not None else math.inf
        self.reasons = (
            "non-finite loss",
            "non-finite gradient norm",
            f"gradient norm > {config.skip_factor} x clip {clip}",
        )
        self.skip_counts = torch.zeros(len(self.reasons), device=accelerator.device)

    def step(self, nonfinite_losses: Tensor) -> Tensor:
        """Apply (or skip) the accumulated gradients; returns the gradient norm (a tensor).

        `nonfinite_losses` counts this process's micro batches whose loss was not finite.
        """
        acc = self.accelerator
        bad_loss = acc.reduce(nonfinite_losses, reduction="sum") > 0
        grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.max_norm)
        finite = torch.isfinite(grad_norm)
        reasons = torch.stack(
            [bad_loss, ~bad_loss & ~finite, ~bad_loss & finite & (grad_norm > self.skip_above)]
        )
        skip = reasons.any().float()
        self.inner.found_inf = skip
        self.optimizer.step()
        if self.ema is not None:
            parameters = list(acc.unwrap_model(self.model).parameters())
            ema_step(self.ema, parameters, 1.0 - skip)
        self.skip_counts += reasons.float()
        return grad_norm

    def take_counts(self) -> list[int]:
        """The skips per reason since the last call, then zero (reads the device: not per step)."""
        counts = [round(c) for c in self.skip_counts.tolist()]
        self.skip_counts.zero_()
        return counts
