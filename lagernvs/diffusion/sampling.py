"""Sampling novel views with the denoiser and any matching diffusers scheduler.

:func:`sample_views` is the sampled mode of the pipeline. The scene is prepared once (for
``cross_attention`` its keys/values are computed once for every sample, step and target), the
``num_samples`` samples are laid side by side with the target views (targets never attend to each
other, so this is exact and batches all samples into one forward pass per step), and the
scheduler sees images in the diffusion range [-1, 1].

* Schedulers: DDPM, DDIM, DPM-Solver++ (``DPMSolverMultistepScheduler``) for the variance
  preserving objectives, ``FlowMatchEulerDiscreteScheduler`` for ``flow``; swap with
  ``NewScheduler.from_config(scheduler.config)``. The denoiser predicts x0, converted to the
  scheduler's ``prediction_type`` (:func:`lagernvs.diffusion.objective.x0_to_model_output`).
  The given scheduler is not modified (a copy is stepped).
* Classifier-free guidance: ``x0 = x0_null + guidance_scale * (x0_scene - x0_null)`` with the
  learned null scene; it equals guidance on epsilon / v / velocity, which are affine in x0.
  ``guidance_scale=1`` runs the conditional branch only.
* Strength: sampling starts from the deterministic render noised to the level of the first of
  the last ``int(num_inference_steps * strength)`` steps (diffusers' img2img rule); with no step
  left the deterministic render is returned.
* Video consistency: ``same_noise=True`` draws one initial noise per sample and scene and shares
  it by all target views (frames). Deterministic samplers (DDIM with eta 0, DPM-Solver++, flow
  Euler) then depend on the noise only through it; DDPM still draws fresh noise per frame at
  every step. :func:`flicker` measures the effect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from lagernvs.diffusion.denoiser import DenoisingRenderer
from lagernvs.diffusion.objective import is_flow_scheduler, x0_to_model_output

Generator = torch.Generator | list[torch.Generator] | None


@torch.no_grad()
def sample_views(
    denoiser: DenoisingRenderer,
    scheduler: SchedulerMixin,
    scene_tokens: Tensor,
    target_rays: Tensor,
    *,
    num_inference_steps: int = 50,
    guidance_scale: float = 1.0,
    strength: float = 1.0,
    generator: Generator = None,
    num_samples: int = 1,
    deterministic_render: Tensor | None = None,
    same_noise: bool = False,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Sample target views of encoded scenes.

    Args:
        denoiser: the diffusion decoder.
        scheduler: a diffusers scheduler matching the denoiser's objective (see module doc).
        scene_tokens: (B, V, Np, W) from the frozen encoder (``LagerNVSModel.encode``).
        target_rays: (B, T, 6, H, W) Plücker ray maps of the target views.
        num_inference_steps: scheduler steps for strength 1 (>= 1).
        guidance_scale: classifier-free guidance scale (>= 0; 1 = none, 0 = unconditional).
        strength: in (0, 1]; below 1 sampling starts from ``deterministic_render`` noised.
        generator: a torch generator, or a list of ``num_samples`` (one per sample, so sample i
            does not depend on ``num_samples``).
        num_samples: samples per target view.
        deterministic_render: (B, T, 3, H, W) deterministic renders in [0, 1]; needed when
            strength < 1.
        same_noise: share each sample's initial noise by all T target views (video frames).
        progress: wraps the timestep iterable (e.g. ``pipeline.progress_bar``).
        chunk_size: target views (times samples) per denoiser call (None: all); bounds memory.

    Returns:
        (num_samples, B, T, 3, H, W) images in [0, 1].
    """
    _check_arguments(
        denoiser, scheduler, scene_tokens, target_rays, num_inference_steps, guidance_scale,
        strength, generator, num_samples, deterministic_render, same_noise, chunk_size,
    )
    batch, targets, _, height, width = target_rays.shape
    device, dtype = target_rays.device, denoiser.dtype
    scheduler = type(scheduler).from_config(scheduler.config)
    scheduler.set_timesteps(num_inference_steps, device=device)
    kept = min(int(num_inference_steps * strength), num_inference_steps)
    start = (num_inference_steps - kept) * scheduler.order
    timesteps = scheduler.timesteps[start:]
    if strength < 1 and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    shape = (num_samples, batch, targets, 3, height, width)
    if kept == 0:
        return deterministic_render.float()[None].expand(shape).clone()

    noise_shape = (num_samples, batch, 1 if same_noise else targets, 3, height, width)
    noise = randn_tensor(noise_shape, generator=generator, device=device, dtype=torch.float32)
    noise = noise.expand(shape)
    if strength < 1:
        start_image = (deterministic_render.float() * 2 - 1)[None].expand(shape)
        first = timesteps[:1].repeat(num_samples)
        if is_flow_scheduler(scheduler):
            latents = scheduler.scale_noise(start_image, first, noise)
        else:
            latents = scheduler.add_noise(start_image, noise, first)
    else:
        # Flow schedulers start at sigma 1 and have no init_noise_sigma.
        latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)

    rays = target_rays.to(dtype)[:, None].expand(batch, num_samples, *target_rays.shape[1:])
    rays = rays.flatten(1, 2)
    scene = denoiser.prepare_scene(scene_tokens.to(dtype))
    null_scene = None
    if guidance_scale != 1:
        null_scene = denoiser.prepare_scene(scene_tokens.to(dtype), drop=True)
    for timestep in progress(timesteps) if progress is not None else timesteps:
        model_input = latents
        if hasattr(scheduler, "scale_model_input"):  # flow schedulers have none
            model_input = scheduler.scale_model_input(latents, timestep)
        x0 = _predict_x0(denoiser, scene, model_input, timestep, rays, chunk_size)
        if null_scene is not None:
            x0_null = _predict_x0(denoiser, null_scene, model_input, timestep, rays, chunk_size)
            x0 = x0_null + guidance_scale * (x0 - x0_null)
        output = x0_to_model_output(scheduler, x0, model_input, timestep)
        latents = scheduler.step(output, timestep, latents, generator=generator).prev_sample
    return ((latents + 1) / 2).clamp(0.0, 1.0)


def _predict_x0(
    denoiser: DenoisingRenderer,
    scene: Any,
    latents: Tensor,
    timestep: Tensor,
    rays: Tensor,
    chunk_size: int | None,
) -> Tensor:
    """x0 (S, B, T, 3, H, W) of latents in that layout; samples folded into the target axis."""
    samples, batch, targets = latents.shape[:3]
    noisy = latents.transpose(0, 1).flatten(1, 2).to(denoiser.dtype)  # (B, S*T, 3, H, W)
    size = noisy.shape[1] if chunk_size is None else chunk_size
    chunks = [
        denoiser.denoise(scene, noisy[:, i : i + size], timestep, rays[:, i : i + size])
        for i in range(0, noisy.shape[1], size)
    ]
    x0 = torch.cat(chunks, dim=1).float().unflatten(1, (samples, targets))
    return x0.transpose(0, 1)


def flicker(frames: Tensor) -> Tensor:
    """Mean absolute difference between consecutive frames: (..., F, 3, H, W) -> (...).

    Frames in [0, 1] along a camera path; lower is steadier. Compare ``same_noise`` on and off
    for the same path to report the reduction.
    """
    if frames.dim() < 4 or frames.shape[-4] < 2:
        raise ValueError(
            f"flicker needs frames (..., F, 3, H, W) with F >= 2, got {tuple(frames.shape)}"
        )
    return (frames[..., 1:, :, :, :] - frames[..., :-1, :, :, :]).abs().mean(dim=(-4, -3, -2, -1))


def spread_by_visibility(samples: Tensor, seen: Tensor) -> dict[str, float]:
    """Per-pixel spread across samples, averaged over seen and over unseen pixels.

    Args:
        samples: (K, ..., 3, H, W) K samples of the same views (K >= 2).
        seen: (..., H, W) bool, True where a source view sees the target pixel.

    Returns:
        ``{"spread_seen", "spread_unseen"}``: the standard deviation over the K samples, averaged
        over RGB, then over the pixels of each kind (NaN when there are none).
    """
    if samples.dim() < 4 or samples.shape[0] < 2:
        raise ValueError(
            f"samples must be (K, ..., 3, H, W) with K >= 2, got {tuple(samples.shape)}"
        )
    if tuple(seen.shape) != tuple(samples.shape[1:-3]) + tuple(samples.shape[-2:]):
        raise ValueError(
            f"seen must be (..., H, W) = {tuple(samples.shape[1:-3] + samples.shape[-2:])}, "
            f"got {tuple(seen.shape)}"
        )
    spread = samples.float().std(dim=0).mean(dim=-3)
    seen = seen.to(torch.bool)
    return {
        "spread_seen": float(spread[seen].mean()) if seen.any() else math.nan,
        "spread_unseen": float(spread[~seen].mean()) if (~seen).any() else math.nan,
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_arguments(
    denoiser: Any,
    scheduler: Any,
    scene_tokens: Any,
    target_rays: Any,
    num_inference_steps: Any,
    guidance_scale: Any,
    strength: Any,
    generator: Any,
    num_samples: Any,
    deterministic_render: Any,
    same_noise: Any,
    chunk_size: Any,
) -> None:
    """Raise ValueError naming the first bad argument of :func:`sample_views` and the fix."""
    if not isinstance(denoiser, DenoisingRenderer):
        raise ValueError(
            f"sampling needs a DenoisingRenderer, got {type(denoiser).__name__}; fine-tune one "
            "with `lagernvs train-denoiser` or build it with DenoisingRenderer.from_renderer"
        )
    if not isinstance(scheduler, SchedulerMixin):
        raise ValueError(f"scheduler must be a diffusers scheduler, got {type(scheduler).__name__}")
    flow_denoiser = denoiser.config.objective == "flow"
    if is_flow_scheduler(scheduler) != flow_denoiser:
        wanted = (
            "FlowMatchEulerDiscreteScheduler" if flow_denoiser else "DDPM, DDIM or DPM-Solver++"
        )
        raise ValueError(
            f"the denoiser was trained with objective {denoiser.config.objective!r} but got a "
            f"{type(scheduler).__name__}; use {wanted}"
        )
    if not _is_int(num_inference_steps) or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be an int >= 1, got {num_inference_steps!r}")
    if not _is_real(guidance_scale) or guidance_scale < 0:
        raise ValueError(
            f"guidance_scale must be a finite number >= 0 (1 = no guidance), got {guidance_scale!r}"
        )
    if not _is_real(strength) or not 0 < strength <= 1:
        raise ValueError(
            f"strength must be in (0, 1] (1 = from pure noise), got {strength!r}"
        )
    if not _is_int(num_samples) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    if isinstance(generator, list) and len(generator) != num_samples:
        raise ValueError(
            f"got {len(generator)} generators for {num_samples} samples; pass one generator "
            "or a list of one per sample"
        )
    if not isinstance(same_noise, bool):
        raise ValueError(f"same_noise must be a bool, got {same_noise!r}")
    if chunk_size is not None and (not _is_int(chunk_size) or chunk_size < 1):
        raise ValueError(f"chunk_size must be an int >= 1 or None, got {chunk_size!r}")
    if not isinstance(target_rays, Tensor) or target_rays.dim() != 5 or target_rays.shape[2] != 6:
        shape = tuple(target_rays.shape) if isinstance(target_rays, Tensor) else target_rays
        raise ValueError(f"target_rays must be a (B, T, 6, H, W) tensor, got {shape!r}")
    if target_rays.shape[1] == 0:
        raise ValueError("target_rays hold no target view (T = 0)")
    width = denoiser.config.width
    if not isinstance(scene_tokens, Tensor) or scene_tokens.dim() != 4:
        raise ValueError(f"scene_tokens must be a (B, V, Np, {width}) tensor")
    if scene_tokens.shape[0] != target_rays.shape[0] or scene_tokens.shape[-1] != width:
        raise ValueError(
            f"scene_tokens {tuple(scene_tokens.shape)} do not match target_rays "
            f"{tuple(target_rays.shape)}: expected (B, V, Np, {width}) with the same B"
        )
    if strength < 1:
        expected = (*target_rays.shape[:2], 3, *target_rays.shape[-2:])
        if deterministic_render is None:
            raise ValueError(
                "strength < 1 starts from the deterministic render: pass deterministic_render "
                f"{expected} (LagerNVSModel.render), or use strength=1"
            )
        if tuple(deterministic_render.shape) != expected:
            raise ValueError(
                f"deterministic_render must be {expected}, got {tuple(deterministic_render.shape)}"
            )
