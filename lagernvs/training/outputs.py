"""The contract of a training loss: what `compute_loss(model, batch)` returns and how it is read.

`compute_loss` returns a dict with a scalar `total` (the loss to minimise); other 0-dim tensors
are logged as `loss/<name>`; optional `prediction` and `target` tensors shaped (..., 3, H, W) in
[0, 1] drive PSNR, images/s and the image grids. Nothing here reads a value back to the host.
`psnr_sum` (through torchmetrics) copies a small shape tensor to the device, which waits for the
device, so the trainer measures PSNR only on the steps it logs and in evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lagernvs.quality import psnr

__all__ = ["LossFn", "check_outputs", "count_images", "psnr_sum", "scalars"]

LossFn = Callable[[nn.Module, dict[str, Any]], dict[str, Tensor]]


def check_outputs(outputs: dict[str, Tensor]) -> Tensor:
    """The scalar `total` of a loss's outputs (a ValueError when the contract is broken)."""
    total = outputs.get("total") if isinstance(outputs, dict) else None
    if not isinstance(total, Tensor) or total.ndim != 0:
        raise ValueError("compute_loss must return a dict with a scalar tensor under 'total'")
    return total


def scalars(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """The 0-dim tensors of the outputs, detached, in float32 (what gets logged)."""
    return {
        k: v.detach().float() for k, v in outputs.items() if isinstance(v, Tensor) and v.ndim == 0
    }


def psnr_sum(outputs: dict[str, Tensor]) -> Tensor:
    """[sum of per-image PSNR, image count] of `prediction` vs `target` (zeros if absent)."""
    total = outputs["total"]
    if "prediction" not in outputs or "target" not in outputs:
        return torch.zeros(2, device=total.device)
    values = psnr(outputs["prediction"].detach(), outputs["target"].detach())
    return torch.stack([values.sum(), values.new_full((), float(values.numel()))])


def count_images(outputs: dict[str, Tensor], batch: dict[str, Any]) -> float:
    """Predicted images in this micro batch (else the batch's leading size), from shapes only."""
    if "prediction" in outputs:
        return float(outputs["prediction"].shape[:-3].numel())
    first = next((v for v in batch.values() if isinstance(v, Tensor) and v.ndim > 0), None)
    return float(first.shape[0]) if first is not None else 0.0
