"""Configuration sections of the training entry points (read with :mod:`lagernvs.config`).

`OptimConfig` and `LoopConfig` are shared by every entry point that uses the training loop;
`ModelConfig` says which model to start from. The `data` section is the data layer's
(:class:`lagernvs.data.config.DataConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from diffusers.optimization import SchedulerType

from lagernvs.config import join_key, require


@dataclass
class OptimConfig:
    """AdamW, learning-rate schedule, clipping and EMA (shared by every training entry point)."""

    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.05
    # Parameters whose names contain one of these (plus every 1-D parameter) get no decay.
    no_decay_keywords: list[str] = field(default_factory=lambda: ["token", "register", "pos_embed"])
    lr_schedule: str = "cosine"  # any diffusers SchedulerType name
    warmup_steps: int = 3000
    grad_clip: float | None = 1.0  # null: no clipping (non-finite norms still skip the step)
    skip_factor: float = 5.0  # skip the step when grad norm > skip_factor * grad_clip
    ema_decay: float | None = None  # null: no EMA

    def validate(self, prefix: str) -> None:
        require(self.lr > 0, join_key(prefix, "lr"), f"must be > 0, got {self.lr}")
        for i, beta in enumerate(self.betas):
            require(
                0 <= beta < 1, join_key(prefix, f"betas[{i}]"), f"must be in [0, 1), got {beta}"
            )
        require(self.eps > 0, join_key(prefix, "eps"), f"must be > 0, got {self.eps}")
        require(self.weight_decay >= 0, join_key(prefix, "weight_decay"), "must be >= 0")
        names = [s.value for s in SchedulerType]
        require(
            self.lr_schedule in names,
            join_key(prefix, "lr_schedule"),
            f"unknown schedule {self.lr_schedule!r}; choose one of {', '.join(names)}",
        )
        require(self.warmup_steps >= 0, join_key(prefix, "warmup_steps"), "must be >= 0")
        require(
            self.grad_clip is None or self.grad_clip > 0,
            join_key(prefix, "grad_clip"),
            f"must be > 0 or null, got {self.grad_clip}",
        )
        require(
            self.skip_factor >= 1,
            join_key(prefix, "skip_factor"),
            f"must be >= 1, got {self.skip_factor}",
        )
        require(
            self.ema_decay is None or 0 < self.ema_decay < 1,
            join_key(prefix, "ema_decay"),
            f"must be in (0, 1) or null, got {self.ema_decay}",
        )


@dataclass
class LoopConfig:
    """Steps, batch sizes, precision, checkpointing and logging of the training loop.

    `global_batch_size` is the number of samples per optimizer step summed over all processes;
    each process runs micro batches of `micro_batch_size`, and the gradient accumulation steps
    are derived from the world size, so the same file gives the same global batch on 1 or 64
    GPUs (it must divide evenly).
    """

    max_steps: int = 100_000
    global_batch_size: int = 512
    micro_batch_size: int = 8
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    gradient_checkpointing: bool = True
    seed: int = 0
    checkpoint_every: int = 1000
    checkpoints_total_limit: int | None = 3  # null keeps every checkpoint
    log_every: int = 50
    eval_every: int = 2000  # 0 disables periodic evaluation
    image_every: int = 2000  # 0 disables image grids
    log_with: Literal["auto", "tensorboard", "none"] = "auto"  # auto: tensorboard if installed

    def validate(self, prefix: str) -> None:
        for name in ("max_steps", "global_batch_size", "micro_batch_size", "checkpoint_every"):
            value = getattr(self, name)
            require(value >= 1, join_key(prefix, name), f"must be >= 1, got {value}")
        for name in ("log_every", "eval_every", "image_every"):
            value = getattr(self, name)
            require(value >= 0, join_key(prefix, name), f"must be >= 0, got {value}")
        require(
            self.checkpoints_total_limit is None or self.checkpoints_total_limit >= 1,
            join_key(prefix, "checkpoints_total_limit"),
            "must be >= 1 or null",
        )
        require(
            self.global_batch_size % self.micro_batch_size == 0,
            join_key(prefix, "global_batch_size"),
            f"{self.global_batch_size} is not divisible by micro_batch_size "
            f"{self.micro_batch_size}",
        )

    def gradient_accumulation_steps(self, world_size: int, prefix: str = "loop") -> int:
        """Micro batches per process per optimizer step; fails if the global batch cannot split."""
        per_step = self.micro_batch_size * world_size
        require(
            self.global_batch_size % per_step == 0,
            join_key(prefix, "global_batch_size"),
            f"{self.global_batch_size} is not divisible by micro_batch_size "
            f"({self.micro_batch_size}) x number of processes ({world_size}); change "
            "loop.global_batch_size or loop.micro_batch_size",
        )
        return self.global_batch_size // per_step


@dataclass
class ModelConfig:
    """Which model to train and how to initialise it.

    `checkpoint` is either a `save_pretrained` folder of this package or an official LagerNVS
    `model.pt` (read with `preset` + `overrides` as its config); `vggt_weights` initialises the
    encoder's aggregator of a fresh model from a VGGT(-1B) checkpoint. `freeze_encoder` freezes
    the VGGT aggregator (the official `freeze_vggt`); the camera-token MLP, the connector and
    the renderer always train.
    """

    preset: str = "re10k_2v_256"
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    vggt_weights: str | None = None
    freeze_encoder: bool = False

    def validate(self, prefix: str) -> None:
        from lagernvs.models.presets import PRESETS

        require(
            self.preset in PRESETS,
            join_key(prefix, "preset"),
            f"unknown preset {self.preset!r}; choose one of {', '.join(sorted(PRESETS))}",
        )
        require(
            self.checkpoint is None or self.vggt_weights is None,
            join_key(prefix, "vggt_weights"),
            "cannot be combined with model.checkpoint (which already holds the encoder)",
        )


def check_schedule(optim: OptimConfig, loop: LoopConfig) -> None:
    """The warm-up must end before the run does (a rule across the two sections)."""
    require(
        optim.warmup_steps < loop.max_steps,
        "optim.warmup_steps",
        f"{optim.warmup_steps} must be smaller than loop.max_steps ({loop.max_steps})",
    )
