"""Sampling with the denoiser: seeds, schedulers, guidance, strength, consistency, arguments."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from test_denoiser import perturb

from lagernvs.cameras import plucker_rays
from lagernvs.diffusion import DenoisingRenderer, NoiseSchedule, build_noise_scheduler
from lagernvs.diffusion.objective import add_noise, noise_scales, x0_to_model_output
from lagernvs.diffusion.sampling import flicker, sample_views, spread_by_visibility
from lagernvs.models import LagerNVSModel

B, T, V, NP, HW = 1, 2, 2, 9, 16
STEPS = 4


def make_model() -> LagerNVSModel:
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny", attention_type="cross_attention").eval()
    torch.nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.5)
    return model


def make_denoiser(objective: str = "sample", trained: bool = True) -> DenoisingRenderer:
    """A denoiser from the tiny model; ``trained``: new parameters moved away from zero."""
    denoiser = DenoisingRenderer.from_renderer(make_model(), objective=objective).eval()
    return perturb(denoiser, std=0.1) if trained else denoiser


@pytest.fixture(scope="module")
def denoiser() -> DenoisingRenderer:
    return make_denoiser()


@pytest.fixture(scope="module")
def scheduler() -> DDPMScheduler:
    return build_noise_scheduler(NoiseSchedule())


def scene_and_rays(targets: int = T, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scene = torch.randn(B, V, NP, 32, generator=generator)
    return scene, torch.randn(B, targets, 6, HW, HW, generator=generator)


def deterministic(scene: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """The deterministic render of the model the denoisers start from."""
    with torch.no_grad():
        return make_model().render(scene, rays)


def sample(denoiser, scheduler, seed=0, **options) -> torch.Tensor:
    scene, rays = scene_and_rays()
    options = {"num_inference_steps": STEPS, **options}
    generator = options.pop("generator", torch.Generator().manual_seed(seed))
    return sample_views(denoiser, scheduler, scene, rays, generator=generator, **options)


def test_same_seed_same_samples_different_seeds_differ(denoiser, scheduler) -> None:
    first = sample(denoiser, scheduler, seed=3, num_samples=2)
    assert first.shape == (2, B, T, 3, HW, HW)
    assert first.min() >= 0 and first.max() <= 1
    torch.testing.assert_close(sample(denoiser, scheduler, seed=3, num_samples=2), first)
    other = sample(denoiser, scheduler, seed=4, num_samples=2)
    assert (other - first).abs().mean() > 1e-3
    assert (first[0] - first[1]).abs().mean() > 1e-3  # the samples of one call differ too


def test_a_list_of_generators_seeds_each_sample(denoiser, scheduler) -> None:
    pair = sample(
        denoiser,
        scheduler,
        num_samples=2,
        generator=[torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)],
    )
    torch.testing.assert_close(pair[1], sample(denoiser, scheduler, seed=6)[0])


SCHEDULERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {}),
    "ddim-epsilon": (DDIMScheduler, {"prediction_type": "epsilon"}),
    "dpm++-v": (DPMSolverMultistepScheduler, {"prediction_type": "v_prediction"}),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_variance_preserving_scheduler_runs(name, denoiser, scheduler) -> None:
    cls, overrides = SCHEDULERS[name]
    swapped = cls.from_config(scheduler.config, **overrides)
    samples = sample(denoiser, swapped, num_samples=2)
    assert samples.shape == (2, B, T, 3, HW, HW) and torch.isfinite(samples).all()
    assert (samples[0] - samples[1]).abs().mean() > 1e-3
    # An untrained denoiser predicts the deterministic render at every step, and every sampler
    # must then end on it: checks the x0 -> epsilon / v conversions against the schedulers.
    identity = make_denoiser(trained=False)
    scene, rays = scene_and_rays()
    expected = deterministic(scene, rays)
    torch.testing.assert_close(sample(identity, swapped)[0], expected, atol=2e-4, rtol=0)


def test_flow_matching_scheduler_runs() -> None:
    config = NoiseSchedule(prediction_type="flow", flow_shift=2.0)
    flow = build_noise_scheduler(config)
    assert isinstance(flow, FlowMatchEulerDiscreteScheduler)
    samples = sample(make_denoiser("flow"), flow, num_samples=2)
    assert torch.isfinite(samples).all() and (samples[0] - samples[1]).abs().mean() > 1e-3
    identity = make_denoiser("flow", trained=False)
    scene, rays = scene_and_rays()
    expected = deterministic(scene, rays)
    torch.testing.assert_close(sample(identity, flow)[0], expected, atol=2e-4, rtol=0)
    with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler"):
        sample(make_denoiser("flow"), DDIMScheduler())
    with pytest.raises(ValueError, match="DDPM, DDIM or DPM-Solver"):
        sample(make_denoiser("sample"), flow)


def reference_ddim(denoiser, scheduler, seed: int, guidance: float) -> torch.Tensor:
    """A plain DDIM loop written out: conditional (and null-scene) predictions, then a step."""
    scene, rays = scene_and_rays()
    ddim = DDIMScheduler.from_config(scheduler.config)
    ddim.set_timesteps(STEPS)
    x = torch.randn((1, B, T, 3, HW, HW), generator=torch.Generator().manual_seed(seed))[0]
    with torch.no_grad():
        for t in ddim.timesteps:
            x0 = denoiser(x, t, rays, scene)
            if guidance != 1:
                null = denoiser(x, t, rays, scene, drop_scene=True)
                x0 = null + guidance * (x0 - null)
            x = ddim.step(x0, t, x).prev_sample
    return ((x + 1) / 2).clamp(0, 1)


def test_guidance_scale_one_equals_no_guidance(denoiser, scheduler) -> None:
    ddim = DDIMScheduler.from_config(scheduler.config)
    unguided = reference_ddim(denoiser, scheduler, seed=2, guidance=1.0)
    torch.testing.assert_close(sample(denoiser, ddim, seed=2, guidance_scale=1.0)[0], unguided)
    guided = sample(denoiser, ddim, seed=2, guidance_scale=3.0)[0]
    torch.testing.assert_close(guided, reference_ddim(denoiser, scheduler, 2, guidance=3.0))
    assert (guided - unguided).abs().mean() > 1e-3


def test_strength_to_zero_returns_the_deterministic_render(denoiser, scheduler) -> None:
    scene, rays = scene_and_rays()
    render = deterministic(scene, rays)
    ddim = DDIMScheduler.from_config(scheduler.config)
    # Fewer than one of the 10 steps left: the deterministic render itself, for every sample.
    exact = sample(
        denoiser, ddim, num_inference_steps=10, strength=0.05, deterministic_render=render,
        num_samples=2,
    )
    torch.testing.assert_close(exact, render[None].expand(2, -1, -1, -1, -1, -1))


@pytest.mark.parametrize("objective", ["sample", "flow"])
def test_strength_starts_from_the_noised_deterministic_render(objective, monkeypatch) -> None:
    denoiser = make_denoiser(objective)
    chosen = build_noise_scheduler(NoiseSchedule(prediction_type=objective))
    scene, rays = scene_and_rays()
    render = deterministic(scene, rays)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    denoise = denoiser.denoise

    def spy(prepared, noisy, timestep, target_rays):
        calls.append((noisy.clone(), timestep))
        return denoise(prepared, noisy, timestep, target_rays)

    monkeypatch.setattr(denoiser, "denoise", spy)
    sample(denoiser, chosen, seed=9, num_inference_steps=10, strength=0.3,
           deterministic_render=render)
    full = type(chosen).from_config(chosen.config)
    full.set_timesteps(10)
    assert [float(t) for _, t in calls] == [float(t) for t in full.timesteps[-3:]]
    noise = torch.randn((1, B, T, 3, HW, HW), generator=torch.Generator().manual_seed(9))[0]
    start = add_noise(chosen, render * 2 - 1, noise, calls[0][1])
    torch.testing.assert_close(calls[0][0], start)


def test_same_noise_reduces_flicker(denoiser, scheduler) -> None:
    """Frames of a slow dolly: sharing the initial noise keeps the sampled details in place."""
    frames = 4
    c2w = torch.eye(4).repeat(frames, 1, 1)
    c2w[:, 0, 3] = torch.linspace(0.0, 0.03, frames)
    intrinsics = torch.tensor([[HW, HW, HW / 2, HW / 2]]).repeat(frames, 1)
    rays = plucker_rays(c2w, intrinsics, HW, HW)[None]
    scene = scene_and_rays()[0]
    ddim = DDIMScheduler.from_config(scheduler.config)

    def video(same_noise: bool) -> torch.Tensor:
        return sample_views(
            denoiser, ddim, scene, rays, num_inference_steps=STEPS, num_samples=2,
            same_noise=same_noise, generator=torch.Generator().manual_seed(1),
        )

    independent, shared = flicker(video(False)), flicker(video(True))
    assert independent.shape == (2, B)
    assert shared.mean() < 0.5 * independent.mean()


def test_flicker_is_the_mean_absolute_frame_difference() -> None:
    frames = torch.zeros(2, 3, 3, 4, 4)
    frames[0, 1] = 0.5
    frames[1, 2] = 1.0
    torch.testing.assert_close(flicker(frames), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="F >= 2"):
        flicker(frames[:, :1])


def test_noise_and_conversions_match_the_diffusers_schedulers() -> None:
    x0 = torch.rand(3, 2, 3, 8, 8) * 2 - 1
    noise = torch.randn_like(x0)
    ddpm = build_noise_scheduler(NoiseSchedule())
    timesteps = torch.tensor([0, 500, 999])
    torch.testing.assert_close(
        add_noise(ddpm, x0, noise, timesteps), ddpm.add_noise(x0, noise, timesteps)
    )
    flow = build_noise_scheduler(NoiseSchedule(prediction_type="flow", flow_shift=3.0))
    flow_t = flow.timesteps[torch.tensor([0, 400, 998])]
    torch.testing.assert_close(
        add_noise(flow, x0, noise, flow_t), flow.scale_noise(x0, flow_t, noise)
    )
    noisy = add_noise(ddpm, x0, noise, timesteps[1])
    alpha, sigma = noise_scales(ddpm, timesteps[1])
    eps_scheduler = DDIMScheduler.from_config(ddpm.config, prediction_type="epsilon")
    torch.testing.assert_close(x0_to_model_output(eps_scheduler, x0, noisy, timesteps[1]), noise)
    v_scheduler = DDIMScheduler.from_config(ddpm.config, prediction_type="v_prediction")
    torch.testing.assert_close(
        x0_to_model_output(v_scheduler, x0, noisy, timesteps[1]), alpha * noise - sigma * x0
    )
    flow_noisy = add_noise(flow, x0, noise, flow_t[1])
    torch.testing.assert_close(
        x0_to_model_output(flow, x0, flow_noisy, flow_t[1]), noise - x0, atol=1e-5, rtol=1e-5
    )


def test_bad_arguments_raise_clear_errors(denoiser, scheduler) -> None:
    scene, rays = scene_and_rays()
    render = deterministic(scene, rays)
    cases = [
        ({"num_inference_steps": 0}, "num_inference_steps must be an int >= 1"),
        ({"num_inference_steps": 2.5}, "num_inference_steps must be an int >= 1"),
        ({"strength": 0.0}, r"strength must be in \(0, 1\]"),
        ({"strength": 1.5}, r"strength must be in \(0, 1\]"),
        ({"strength": 0.5}, "pass deterministic_render"),
        ({"strength": 0.5, "deterministic_render": render[:, :1]}, "deterministic_render must be"),
        ({"guidance_scale": -1.0}, "guidance_scale must be"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be"),
        ({"num_samples": 0}, "num_samples must be an int >= 1"),
        ({"generator": [torch.Generator()] * 3, "num_samples": 2}, "3 generators for 2 samples"),
        ({"chunk_size": 0}, "chunk_size must be"),
        ({"same_noise": 1}, "same_noise must be a bool"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            sample_views(denoiser, scheduler, scene, rays, **options)
    with pytest.raises(ValueError, match="needs a DenoisingRenderer"):
        sample_views(torch.nn.Identity(), scheduler, scene, rays)
    with pytest.raises(ValueError, match="diffusers scheduler"):
        sample_views(denoiser, object(), scene, rays)
    with pytest.raises(ValueError, match="target_rays must be"):
        sample_views(denoiser, scheduler, scene, rays[0])
    with pytest.raises(ValueError, match="do not match target_rays"):
        sample_views(denoiser, scheduler, scene.repeat(2, 1, 1, 1), rays)


def test_chunked_denoising_matches_one_pass(denoiser, scheduler) -> None:
    torch.testing.assert_close(
        sample(denoiser, scheduler, num_samples=2, chunk_size=3),
        sample(denoiser, scheduler, num_samples=2),
    )


def test_spread_by_visibility_splits_the_sample_spread() -> None:
    samples = torch.zeros(2, 1, 3, 2, 2)
    samples[1, 0, :, 0, 0] = 1.0  # one unseen pixel differs between the two samples
    seen = torch.tensor([[[False, True], [True, True]]])
    spread = spread_by_visibility(samples, seen)
    assert spread["spread_seen"] == 0.0
    assert spread["spread_unseen"] == pytest.approx(2**-0.5)
    with pytest.raises(ValueError, match="seen must be"):
        spread_by_visibility(samples, seen[0])
