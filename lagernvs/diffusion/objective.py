"""Diffusion objective of the denoiser: noise schedule, training target, loss weighting.

Every schedule here writes a noisy image as ``x_t = alpha_t * x0 + sigma_t * eps`` with images in
the diffusion range [-1, 1] (``2 * image - 1``):

* variance-preserving (``sample``, ``epsilon``, ``v_prediction``): diffusers' DDPM schedule,
  ``alpha_t = sqrt(alphas_cumprod[t])``, ``sigma_t = sqrt(1 - alphas_cumprod[t])``; cosine betas by
  default (pixel-space diffusion, terminal SNR near 0, so strength 1 starts from pure noise);
* ``flow`` (rectified flow / flow matching): ``sigma_t = t / num_train_timesteps``,
  ``alpha_t = 1 - sigma_t``, as diffusers' ``FlowMatchEulerDiscreteScheduler``.

Default objective ``sample`` (x0): the denoiser's pretrained head already predicts the clean image
through its sigmoid, so x0 prediction reuses it unchanged and a freshly built denoiser starts at
the deterministic render. The denoiser always outputs x0; the other objectives are the exact
conversions ``eps = (x_t - alpha x0) / sigma``, ``v = alpha eps - sigma x0`` and flow velocity
``eps - x0``. Their losses differ from the x0 loss only by a per-timestep weight, so the loss is
computed in x0 space with that weight: ``1`` (sample), ``SNR`` (epsilon), ``1 / sigma^2``
(v_prediction and flow), or, with ``loss_weighting="min_snr"``, ``min(SNR, gamma)`` for all of
them (Min-SNR-gamma, Hang et al. 2023, written in x0 space). The default keeps the objective's
own weights: for x0 that is a uniform weight, which keeps teaching the high-noise steps to return
the posterior mean (the deterministic render where the scene is known). Min-SNR's x0 weight
vanishes there and lets the noise leak into the prediction: fine-tuning the demo model for
400-600 steps, min-SNR gave 1.6x the sample spread and 1.5 dB lower PSNR in seen pixels than
uniform weights. Sampling converts x0 to whatever the scheduler's ``prediction_type`` expects
(:func:`x0_to_model_output`), so any variance-preserving scheduler (DDPM, DDIM, DPM-Solver++)
serves every VP objective; flow needs the flow scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor, nn

PREDICTION_TYPES = ("sample", "epsilon", "v_prediction", "flow")
LOSS_WEIGHTINGS = ("min_snr", "none")


@dataclass
class ObjectiveConfig:
    """Training objective of the denoiser (the ``objective`` section of a denoiser config)."""

    prediction_type: Literal["sample", "epsilon", "v_prediction", "flow"] = "sample"
    num_train_timesteps: int = 1000
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    flow_shift: float = 1.0  # FlowMatchEulerDiscreteScheduler `shift` (flow only)
    loss_weighting: Literal["min_snr", "none"] = "none"  # none: the objective's own weights
    min_snr_gamma: float = 5.0
    perceptual_weight: float = 0.0  # VGG-19 perceptual loss on the predicted clean image
    perceptual_random_features: bool = False  # random VGG weights (tests only)
    cond_drop_prob: float = 0.1  # scene replaced by the null scene (classifier-free guidance)

    def validate(self, prefix: str = "objective") -> None:
        def fail(name: str, message: str) -> ValueError:
            key = f"{prefix}.{name}" if prefix else name
            return ValueError(f"config key '{key}': {message}")

        if self.num_train_timesteps < 2:
            raise fail("num_train_timesteps", f"must be >= 2, got {self.num_train_timesteps}")
        if not self.flow_shift > 0:
            raise fail("flow_shift", f"must be > 0, got {self.flow_shift}")
        if not self.min_snr_gamma > 0:
            raise fail("min_snr_gamma", f"must be > 0, got {self.min_snr_gamma}")
        if not self.perceptual_weight >= 0:
            raise fail("perceptual_weight", f"must be >= 0, got {self.perceptual_weight}")
        if not 0 <= self.cond_drop_prob < 1:
            raise fail("cond_drop_prob", f"must be in [0, 1), got {self.cond_drop_prob}")


def build_noise_scheduler(config: ObjectiveConfig) -> SchedulerMixin:
    """The training schedule of ``config``, also the default sampler saved with the pipeline.

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


def add_noise(
    scheduler: SchedulerMixin, x0: Tensor, noise: Tensor, timesteps: Tensor
) -> Tensor:
    """``alpha_t x0 + sigma_t noise``; ``timesteps`` broadcast against the leading dims.

    Equals ``DDPMScheduler.add_noise`` / ``FlowMatchEulerDiscreteScheduler.scale_noise`` (tested),
    for any number of leading dims.
    """
    alpha, sigma = noise_scales(scheduler, timesteps)
    alpha, sigma = _trailing(alpha, x0).to(x0.dtype), _trailing(sigma, x0).to(x0.dtype)
    return alpha * x0 + sigma * noise


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


def loss_weights(
    prediction_type: str, alpha: Tensor, sigma: Tensor, weighting: str, gamma: float
) -> Tensor:
    """Per-timestep weight of the x0-space squared error (see the module docstring)."""
    snr = alpha.square() / sigma.square()
    if weighting == "min_snr":
        return snr.clamp(max=gamma)
    if weighting != "none":
        raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {LOSS_WEIGHTINGS}")
    if prediction_type == "sample":
        return torch.ones_like(snr)
    if prediction_type == "epsilon":
        return snr
    return sigma.square().reciprocal()


class DiffusionLoss(nn.Module):
    """One denoising training step's loss for a batch of target views.

    Draws a timestep and noise per target image, drops the scene of a sample with probability
    ``cond_drop_prob`` (training only), predicts x0 with the denoiser and returns
    ``{"total", "diffusion", "x0_mse"[, "perceptual"], "prediction", "target"}``: the weighted
    x0-space loss, its unweighted mean squared error, and the predicted / true clean images in
    [0, 1] (the loop's PSNR and image grids).
    """

    def __init__(self, config: ObjectiveConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.scheduler = build_noise_scheduler(config)
        self.perceptual: nn.Module | None = None
        if config.perceptual_weight > 0:
            from lagernvs.perceptual import VGGPerceptualLoss

            self.perceptual = VGGPerceptualLoss(config.perceptual_random_features)

    def sample_timesteps(
        self, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
    ) -> Tensor:
        """Training timesteps, uniform over the schedule's training steps."""
        steps = self.config.num_train_timesteps
        index = torch.randint(0, steps, shape, device=device, generator=generator)
        if is_flow_scheduler(self.scheduler):
            return self.scheduler.timesteps.to(device)[index]
        return index

    def forward(
        self,
        denoiser: nn.Module,
        scene_tokens: Tensor,
        target_rays: Tensor,
        target_images: Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Loss of ``denoiser`` (called, so DDP-wrapped models work) on (B, T) target views.

        ``generator`` fixes the draws (timesteps, noise, dropout), e.g. for validation.
        """
        batch, targets = target_images.shape[:2]
        device = target_images.device
        x0 = target_images.float() * 2 - 1
        timesteps = self.sample_timesteps((batch, targets), device, generator)
        noise = torch.randn(x0.shape, device=device, generator=generator)
        noisy = add_noise(self.scheduler, x0, noise, timesteps)
        drop = None
        if self.training and self.config.cond_drop_prob > 0:
            draws = torch.rand(batch, device=device, generator=generator)
            drop = draws < self.config.cond_drop_prob
        prediction = denoiser(noisy, timesteps, target_rays, scene_tokens, drop_scene=drop).float()
        alpha, sigma = noise_scales(self.scheduler, timesteps)
        weights = loss_weights(
            self.config.prediction_type,
            alpha,
            sigma,
            self.config.loss_weighting,
            self.config.min_snr_gamma,
        )
        squared = (prediction - x0).square().flatten(2).mean(-1)  # (B, T)
        losses = {"diffusion": (weights * squared).mean(), "x0_mse": squared.mean().detach()}
        image_pred, image_true = (prediction + 1) / 2, target_images.float()
        total = losses["diffusion"]
        if self.perceptual is not None:
            flat_pred, flat_true = image_pred.flatten(0, 1), image_true.flatten(0, 1)
            losses["perceptual"] = self.perceptual(flat_pred, flat_true)
            total = total + self.config.perceptual_weight * losses["perceptual"]
        return {"total": total, **losses, "prediction": image_pred, "target": image_true}


__all__ = [
    "LOSS_WEIGHTINGS",
    "PREDICTION_TYPES",
    "DiffusionLoss",
    "ObjectiveConfig",
    "add_noise",
    "build_noise_scheduler",
    "is_flow_scheduler",
    "loss_weights",
    "noise_scales",
    "scheduler_prediction_type",
    "x0_to_model_output",
]
