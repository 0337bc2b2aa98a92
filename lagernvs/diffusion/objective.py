"""Noise schedules of the denoiser and the conversions sampling needs.

Every schedule here writes a noisy image as ``x_t = alpha_t * x0 + sigma_t * eps`` with images in
the diffusion range [-1, 1] (``2 * image - 1``):

* variance-preserving (``sample``, ``epsilon``, ``v_prediction``): diffusers' DDPM schedule,
  ``alpha_t = sqrt(alphas_cumprod[t])``, ``sigma_t = sqrt(1 - alphas_cumprod[t])``; cosine betas by
  default (pixel-space diffusion, terminal SNR near 0, so strength 1 starts from pure noise);
* ``flow`` (rectified flow / flow matching): ``sigma_t = t / num_train_timesteps``,
  ``alpha_t = 1 - sigma_t``, as diffusers' ``FlowMatchEulerDiscreteScheduler``.

The denoiser always outputs the clean image x0 (its pretrained head predicts it through a sigmoid,
so a freshly built denoiser starts at the deterministic render); the other objectives are the exact
conversions ``eps = (x_t - alpha x0) / sigma``, ``v = alpha eps - sigma x0`` and flow velocity
``eps - x0``. Sampling converts x0 to whatever the scheduler's ``prediction_type`` expects
(:func:`x0_to_model_output`), so any variance-preserving scheduler (DDPM, DDIM, DPM-Solver++)
serves every VP objective; flow needs the flow scheduler. The sampling loop itself is the
pipeline's (:class:`~lagernvs.pipeline.LagerNVSPipeline`); it takes its timesteps and its noised
start from :func:`sampling_timesteps` and :func:`scheduler_add_noise`. The training loss and its
per-timestep weights live with the training code (:mod:`lagernvs.training.diffusion_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor

from lagernvs.config import join_key, require

PREDICTION_TYPES = ("sample", "epsilon", "v_prediction", "flow")


@dataclass
class NoiseSchedule:
    """The noise schedule of a denoiser: its objective and the training timesteps."""

    prediction_type: Literal["sample", "epsilon", "v_prediction", "flow"] = "sample"
    num_train_timesteps: int = 1000
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    flow_shift: float = 1.0  # FlowMatchEulerDiscreteScheduler `shift` (flow only)

    def validate(self, prefix: str = "") -> None:
        require(
            self.num_train_timesteps >= 2,
            join_key(prefix, "num_train_timesteps"),
            f"must be >= 2, got {self.num_train_timesteps}",
        )
        require(
            self.flow_shift > 0,
            join_key(prefix, "flow_shift"),
            f"must be > 0, got {self.flow_shift}",
        )


def build_noise_scheduler(config: NoiseSchedule) -> SchedulerMixin:
    """The diffusers scheduler of ``config``: the training schedule, also the default sampler
    saved with the pipeline.

    VP objectives get a ``DDPMScheduler`` (``prediction_type`` = the objective, trailing timestep
    spacing so sampling from pure noise starts at the last training timestep); swap it with
    ``DDIMScheduler.from_config(...)`` or ``DPMSolverMultistepScheduler.from_config(...)``.
    ``flow`` gets a ``FlowMatchEulerDiscreteScheduler``.
    """
    if config.prediction_type == "flow":
        return FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=config.num_train_timesteps, shift=config.flow_shift
        )
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=True,
        timestep_spacing="trailing",
    )


def is_flow_scheduler(scheduler: SchedulerMixin) -> bool:
    """True for flow-matching schedulers (``x_t = (1 - sigma) x0 + sigma eps``)."""
    return isinstance(scheduler, FlowMatchEulerDiscreteScheduler)


def scheduler_prediction_type(scheduler: SchedulerMixin) -> str:
    """What ``scheduler.step`` expects as model output: a PREDICTION_TYPES entry."""
    if is_flow_scheduler(scheduler):
        return "flow"
    if not hasattr(scheduler, "alphas_cumprod"):
        raise ValueError(
            f"{type(scheduler).__name__} is not supported; use DDPM, DDIM, DPM-Solver++ "
            "(variance preserving) or FlowMatchEulerDiscreteScheduler"
        )
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"{type(scheduler).__name__} has unsupported {prediction_type=}")
    return prediction_type


def _trailing(values: Tensor, like: Tensor) -> Tensor:
    """``values`` with singleton dims appended to broadcast against ``like``."""
    return values.reshape(*values.shape, *(1,) * (like.dim() - values.dim()))


def noise_scales(scheduler: SchedulerMixin, timesteps: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha_t, sigma_t) in float32, shaped like ``timesteps``: ``x_t = alpha x0 + sigma eps``."""
    timesteps = torch.as_tensor(timesteps)
    if is_flow_scheduler(scheduler):
        sigma = timesteps.float() / scheduler.config.num_train_timesteps
        return 1.0 - sigma, sigma
    scheduler_prediction_type(scheduler)
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device, torch.float32)
    alpha_bar = alphas_cumprod[timesteps.long()]
    return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()


def add_noise(scheduler: SchedulerMixin, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
    """``alpha_t x0 + sigma_t noise``; ``timesteps`` broadcast against the leading dims.

    Equals ``DDPMScheduler.add_noise`` / ``FlowMatchEulerDiscreteScheduler.scale_noise`` (tested),
    for any number of leading dims.
    """
    alpha, sigma = noise_scales(scheduler, timesteps)
    alpha, sigma = _trailing(alpha, x0).to(x0.dtype), _trailing(sigma, x0).to(x0.dtype)
    return alpha * x0 + sigma * noise


def sampling_timesteps(
    scheduler: SchedulerMixin,
    num_inference_steps: int,
    strength: float,
    device: torch.device | str | None = None,
    timesteps: Sequence[int] | None = None,
) -> Tensor:
    """Set ``scheduler``'s timesteps (``num_inference_steps`` of them, or the custom
    ``timesteps``); return the ones a run of ``strength`` goes through.

    diffusers' img2img rule: the last ``int(steps * strength)`` steps (none when that is 0);
    below strength 1 the scheduler is told where it begins.
    """
    if timesteps is None:
        scheduler.set_timesteps(num_inference_steps, device=device)
    else:
        scheduler.set_timesteps(timesteps=list(timesteps), device=device)
        num_inference_steps = len(timesteps)
    kept = min(int(num_inference_steps * strength), num_inference_steps)
    start = (num_inference_steps - kept) * scheduler.order
    if strength < 1 and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:]


def scheduler_add_noise(
    scheduler: SchedulerMixin, x0: Tensor, noise: Tensor, timesteps: Tensor
) -> Tensor:
    """``x0`` noised to ``timesteps`` (one per leading index) by the scheduler's own rule:
    ``add_noise`` (variance preserving) or ``scale_noise`` (flow)."""
    if is_flow_scheduler(scheduler):
        return scheduler.scale_noise(x0, timesteps, noise)
    return scheduler.add_noise(x0, noise, timesteps)


def x0_to_model_output(
    scheduler: SchedulerMixin, x0: Tensor, noisy: Tensor, timesteps: Tensor
) -> Tensor:
    """Convert a clean-image prediction into what ``scheduler.step`` expects."""
    prediction_type = scheduler_prediction_type(scheduler)
    if prediction_type == "sample":
        return x0
    alpha, sigma = noise_scales(scheduler, timesteps)
    alpha, sigma = _trailing(alpha, x0).to(x0.dtype), _trailing(sigma, x0).to(x0.dtype)
    if prediction_type == "flow":
        return (noisy - x0) / sigma
    eps = (noisy - alpha * x0) / sigma
    return eps if prediction_type == "epsilon" else alpha * eps - sigma * x0


__all__ = [
    "PREDICTION_TYPES",
    "NoiseSchedule",
    "add_noise",
    "build_noise_scheduler",
    "is_flow_scheduler",
    "noise_scales",
    "sampling_timesteps",
    "scheduler_add_noise",
    "scheduler_prediction_type",
    "x0_to_model_output",
]
