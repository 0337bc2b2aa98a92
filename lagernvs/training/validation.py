"""Periodic evaluation of a training run: mean losses and PSNR over fixed validation batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch import Tensor, nn

from lagernvs.training.outputs import LossFn, check_outputs, psnr_sum, scalars

__all__ = ["evaluate_batches"]


@torch.no_grad()
def evaluate_batches(
    accelerator: Accelerator,
    model: nn.Module,
    compute_loss: LossFn,
    batches: Iterable[dict[str, Any]],
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """`val/<loss>` means and `val/psnr` over `batches` on all processes, plus the outputs of
    this process's first batch (for the image grid).

    Each process evaluates its own batches; all must yield the same number of them (the forward
    pass of a distributed model is collective). `model` is back in training mode afterwards.
    """
    device = accelerator.device
    model.eval()
    sums: dict[str, Tensor] = {}
    psnr = torch.zeros(2, device=device)
    count = 0
    first: dict[str, Tensor] = {}
    try:
        for raw in batches:
            batch = send_to_device(raw, device, non_blocking=True)
            with accelerator.autocast():
                outputs = compute_loss(model, batch)
            check_outputs(outputs)
            first = first or outputs
            for key, value in scalars(outputs).items():
                sums[key] = sums.get(key, torch.zeros((), device=device)) + value
            psnr += psnr_sum(outputs)
            count += 1
    finally:
        model.train()
    if count == 0:
        raise ValueError("val_batches yielded no batch on this process; give each one a batch")
    keys = sorted(sums)
    packed = torch.stack([*(sums[k] for k in keys), torch.full((), float(count), device=device)])
    reduced = accelerator.reduce(torch.cat([packed, psnr]), reduction="sum").tolist()
    total_count = reduced[len(keys)]
    metrics = {f"val/{k}": reduced[i] / total_count for i, k in enumerate(keys)}
    if reduced[-1] > 0:
        metrics["val/psnr"] = reduced[-2] / reduced[-1]
    return metrics, first
