"""The pipeline's sampling loop: seeds, schedulers, guidance, strength, consistency, callbacks,
arguments; and the noise schedules' conversions and the sample-variation measures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback, SDCFGCutoffCallback
from test_denoiser import perturb

from lagernvs import Cameras, LagerNVSPipeline
from lagernvs.cameras import plucker_rays
from lagernvs.diffusion import DenoisingRenderer, NoiseSchedule, build_noise_scheduler
from lagernvs.diffusion.objective import add_noise, noise_scales, x0_to_model_output
from lagernvs.diffusion.variation import flicker, spread_by_visibility
from lagernvs.models import LagerNVSModel

T, HW = 2, 16
STEPS = 4


def make_model() -> LagerNVSModel:
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset(
        "tiny", attention_type="cross_attention", image_size=(HW, HW), encoder_image_size=56
    ).eval()
    torch.nn.init.normal_(model.renderer.final_layer.linear.weight, std=0.5)
    return model


def make_denoiser(objective: str = "sample", trained: bool = True) -> DenoisingRenderer:
    """A denoiser from the tiny model; ``trained``: new parameters moved away from zero."""
    denoiser = DenoisingRenderer.from_renderer(make_model(), objective=objective).eval()
    return perturb(denoiser, std=0.1) if trained else denoiser


def make_pipe(denoiser, scheduler) -> LagerNVSPipeline:
    pipe = LagerNVSPipeline(model=make_model(), denoiser=denoiser, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def scheduler() -> DDPMScheduler:
    return build_noise_scheduler(NoiseSchedule())


@pytest.fixture(scope="module")
def pipe(scheduler) -> LagerNVSPipeline:
    return make_pipe(make_denoiser(), scheduler)


def source_images() -> torch.Tensor:
    return torch.rand(2, 3, HW, HW, generator=torch.Generator().manual_seed(1))


def targets(count: int = T) -> Cameras:
    """Unposed targets: cameras in the first source camera's frame."""
    eyes = [[0.1 * (i + 1), 0.0, 0.0] for i in range(count)]
    return Cameras.look_at(eyes, [[0.0, 0.0, 1.0]] * count, fov_deg=60, image_size=(HW, HW))


def sample(pipe, seed=0, cameras=None, **options) -> torch.Tensor:
    """(T * num_images_per_prompt, 3, H, W) samples of the unposed test scene."""
    options = {"num_inference_steps": STEPS, **options}
    generator = options.pop("generator", torch.Generator().manual_seed(seed))
    scene = pipe.encode(source_images())
    cameras = targets() if cameras is None else cameras
    return pipe.render(scene, cameras, mode="sampled", generator=generator, **options).images


def by_sample(images: torch.Tensor, count: int) -> torch.Tensor:
    """(T * count, ...) target-major pipeline output -> (count, T, ...)."""
    return images.unflatten(0, (-1, count)).transpose(0, 1)


def deterministic(pipe) -> torch.Tensor:
    """The deterministic render (T, 3, H, W) of the model the denoisers start from."""
    return pipe.render(pipe.encode(source_images()), targets()).images


def test_same_seed_same_samples_different_seeds_differ(pipe) -> None:
    first = by_sample(sample(pipe, seed=3, num_images_per_prompt=2), 2)
    assert first.shape == (2, T, 3, HW, HW)
    assert first.min() >= 0 and first.max() <= 1
    torch.testing.assert_close(by_sample(sample(pipe, seed=3, num_images_per_prompt=2), 2), first)
    other = by_sample(sample(pipe, seed=4, num_images_per_prompt=2), 2)
    assert (other - first).abs().mean() > 1e-3
    assert (first[0] - first[1]).abs().mean() > 1e-3  # the samples of one call differ too


def test_a_list_of_generators_seeds_each_sample(pipe) -> None:
    generators = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    pair = by_sample(sample(pipe, num_images_per_prompt=2, generator=generators), 2)
    torch.testing.assert_close(pair[1], sample(pipe, seed=6))


def test_num_samples_is_an_alias_of_num_images_per_prompt(pipe) -> None:
    torch.testing.assert_close(
        sample(pipe, seed=2, num_samples=2), sample(pipe, seed=2, num_images_per_prompt=2)
    )
    with pytest.raises(ValueError, match="pass only num_images_per_prompt"):
        sample(pipe, num_samples=2, num_images_per_prompt=3)


SCHEDULERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {}),
    "ddim-epsilon": (DDIMScheduler, {"prediction_type": "epsilon"}),
    "dpm++-v": (DPMSolverMultistepScheduler, {"prediction_type": "v_prediction"}),
    "unipc": (UniPCMultistepScheduler, {}),  # its step takes no generator
    "euler-ancestral": (EulerAncestralDiscreteScheduler, {"prediction_type": "epsilon"}),
    "lcm": (LCMScheduler, {}),  # the bundled demo's: x0, then fresh noise to the next step
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_variance_preserving_scheduler_runs(name, scheduler) -> None:
    cls, overrides = SCHEDULERS[name]
    swapped = cls.from_config(scheduler.config, **overrides)
    samples = by_sample(sample(make_pipe(make_denoiser(), swapped), num_images_per_prompt=2), 2)
    assert samples.shape == (2, T, 3, HW, HW) and torch.isfinite(samples).all()
    assert (samples[0] - samples[1]).abs().mean() > 1e-3
    # An untrained denoiser predicts the deterministic render at every step, and every sampler
    # must then end on it: checks the x0 -> epsilon / v conversions against the schedulers.
    identity = make_pipe(make_denoiser(trained=False), swapped)
    torch.testing.assert_close(sample(identity), deterministic(identity), atol=2e-4, rtol=0)


def test_flow_matching_scheduler_runs() -> None:
    config = NoiseSchedule(prediction_type="flow", flow_shift=2.0)
    flow = build_noise_scheduler(config)
    assert isinstance(flow, FlowMatchEulerDiscreteScheduler)
    samples = by_sample(sample(make_pipe(make_denoiser("flow"), flow), num_images_per_prompt=2), 2)
    assert torch.isfinite(samples).all() and (samples[0] - samples[1]).abs().mean() > 1e-3
    identity = make_pipe(make_denoiser("flow", trained=False), flow)
    torch.testing.assert_close(sample(identity), deterministic(identity), atol=2e-4, rtol=0)
    with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler"):
        sample(make_pipe(make_denoiser("flow"), DDIMScheduler()))
    with pytest.raises(ValueError, match="DDPM, DDIM or DPM-Solver"):
        sample(make_pipe(make_denoiser("sample"), flow))


def reference_ddim(
    pipe, seed: int, guidance: float, guided: Callable[[int], bool] = lambda step: True
) -> torch.Tensor:
    """A plain DDIM loop written out: conditional (and, on the `guided` steps, null-scene)
    predictions, then a step."""
    denoiser, scene = pipe.denoiser, pipe.encode(source_images())
    cameras = targets()
    rays = plucker_rays(cameras.c2w.float(), cameras.fxfycxcy.float(), HW, HW)[None]
    ddim = DDIMScheduler.from_config(pipe.scheduler.config)
    ddim.set_timesteps(STEPS)
    x = torch.randn((1, T, 3, HW, HW), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for step, t in enumerate(ddim.timesteps):
            x0 = denoiser(x, t, rays, scene.scene_tokens)
            if guidance != 1 and guided(step):
                null = denoiser(x, t, rays, scene.scene_tokens, drop_scene=True)
                x0 = null + guidance * (x0 - null)
            x = ddim.step(x0, t, x).prev_sample
    return ((x[0] + 1) / 2).clamp(0, 1)


def test_guidance_scale_one_equals_no_guidance(pipe) -> None:
    ddim = make_pipe(pipe.denoiser, DDIMScheduler.from_config(pipe.scheduler.config))
    unguided = reference_ddim(ddim, seed=2, guidance=1.0)
    torch.testing.assert_close(sample(ddim, seed=2, guidance_scale=1.0), unguided)
    guided = sample(ddim, seed=2, guidance_scale=3.0)
    torch.testing.assert_close(guided, reference_ddim(ddim, 2, guidance=3.0))
    assert (guided - unguided).abs().mean() > 1e-3


def test_guidance_interval_guides_only_its_steps(pipe) -> None:
    """guidance_start / guidance_end: fractions of the steps, the noisiest first (diffusers'
    control_guidance_start / _end rule); the other steps skip the unconditional pass."""
    ddim = make_pipe(pipe.denoiser, DDIMScheduler.from_config(pipe.scheduler.config))
    assert STEPS == 4
    early = sample(ddim, seed=2, guidance_scale=3.0, guidance_end=0.5)
    torch.testing.assert_close(early, reference_ddim(ddim, 2, 3.0, lambda step: step < 2))
    late = sample(ddim, seed=2, guidance_scale=3.0, guidance_start=0.5)
    torch.testing.assert_close(late, reference_ddim(ddim, 2, 3.0, lambda step: step >= 2))
    everywhere = sample(ddim, seed=2, guidance_scale=3.0)
    assert (early - everywhere).abs().mean() > 1e-4 and (late - everywhere).abs().mean() > 1e-4
    # too short to hold a whole step: no guidance at all
    torch.testing.assert_close(
        sample(ddim, seed=2, guidance_scale=3.0, guidance_end=0.2), sample(ddim, seed=2)
    )


def test_strength_to_zero_returns_the_deterministic_render(pipe) -> None:
    ddim = make_pipe(pipe.denoiser, DDIMScheduler.from_config(pipe.scheduler.config))
    render = deterministic(ddim)
    # Fewer than one of the 10 steps left: the deterministic render itself, for every sample.
    exact = sample(ddim, num_inference_steps=10, strength=0.05, num_images_per_prompt=2)
    torch.testing.assert_close(by_sample(exact, 2), render[None].expand(2, -1, -1, -1, -1))


@pytest.mark.parametrize("objective", ["sample", "flow"])
def test_strength_starts_from_the_noised_deterministic_render(objective) -> None:
    chosen = build_noise_scheduler(NoiseSchedule(prediction_type=objective))
    pipe = make_pipe(make_denoiser(objective), chosen)
    render = deterministic(pipe)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(module, args, kwargs):
        if kwargs.get("mode", "denoise") == "denoise":
            calls.append((args[0].clone(), args[1]))

    handle = pipe.denoiser.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        sample(pipe, seed=9, num_inference_steps=10, strength=0.3)
    finally:
        handle.remove()
    full = type(chosen).from_config(chosen.config)
    full.set_timesteps(10)
    assert [float(t) for _, t in calls] == [float(t) for t in full.timesteps[-3:]]
    noise = torch.randn((1, T, 3, HW, HW), generator=torch.Generator().manual_seed(9))
    start = add_noise(chosen, render[None] * 2 - 1, noise, calls[0][1])
    torch.testing.assert_close(calls[0][0], start)


def test_same_noise_reduces_flicker(pipe) -> None:
    """Frames of a slow dolly: sharing the initial noise keeps the sampled details in place."""
    frames = 4
    c2w = torch.eye(4).repeat(frames, 1, 1)
    c2w[:, 0, 3] = torch.linspace(0.0, 0.03, frames)
    intrinsics = torch.tensor([[HW, HW, HW / 2, HW / 2]]).repeat(frames, 1)
    dolly = Cameras(c2w, intrinsics, (HW, HW))
    ddim = make_pipe(pipe.denoiser, DDIMScheduler.from_config(pipe.scheduler.config))

    def video(same_noise: bool) -> torch.Tensor:
        images = sample(ddim, seed=1, cameras=dolly, num_images_per_prompt=2, same_noise=same_noise)
        return by_sample(images, 2)

    independent, shared = flicker(video(False)), flicker(video(True))
    assert independent.shape == (2,)
    assert shared.mean() < 0.5 * independent.mean()


def test_callback_on_step_end_sees_and_replaces_the_latents(pipe) -> None:
    seen: list[tuple[int, float, tuple[int, ...]]] = []

    def callback(pipeline, step_index, timestep, callback_kwargs):
        assert pipeline is pipe
        seen.append((step_index, float(timestep), tuple(callback_kwargs["latents"].shape)))
        if step_index == STEPS - 1:
            return {"latents": torch.zeros_like(callback_kwargs["latents"])}
        return callback_kwargs

    images = sample(pipe, num_images_per_prompt=2, callback_on_step_end=callback)
    schedule = type(pipe.scheduler).from_config(pipe.scheduler.config)
    schedule.set_timesteps(STEPS)
    assert [s[:2] for s in seen] == list(enumerate(float(t) for t in schedule.timesteps))
    assert {s[2] for s in seen} == {(2, T, 3, HW, HW)}
    torch.testing.assert_close(images, torch.full_like(images, 0.5))  # latent 0 -> grey
    untouched = sample(pipe, num_images_per_prompt=2, callback_on_step_end=lambda *a: None)
    torch.testing.assert_close(untouched, sample(pipe, num_images_per_prompt=2))


def record_timesteps(pipe, **options) -> tuple[list[int], torch.Tensor]:
    """The timesteps a sampled render goes through, and its samples."""
    seen: list[int] = []

    def callback(pipeline, step_index, timestep, callback_kwargs):
        seen.append(int(timestep))
        return callback_kwargs

    return seen, sample(pipe, callback_on_step_end=callback, **options)


@pytest.mark.parametrize("cls", [DDPMScheduler, DPMSolverMultistepScheduler, LCMScheduler])
def test_custom_timesteps_replace_num_inference_steps(cls, scheduler) -> None:
    """``timesteps`` (diffusers' convention): the sampler goes through exactly those, the
    noisiest first; its own schedule given as a list samples what num_inference_steps does."""
    swapped = make_pipe(make_denoiser(), cls.from_config(scheduler.config))
    custom = [999, 980, 900, 700]
    seen, images = record_timesteps(swapped, seed=3, timesteps=custom)
    assert seen == custom and torch.isfinite(images).all()
    schedule = cls.from_config(scheduler.config)
    schedule.set_timesteps(STEPS)
    default = [int(t) for t in schedule.timesteps]
    seen, own = record_timesteps(swapped, seed=3, timesteps=default, num_inference_steps=1)
    assert seen == default
    torch.testing.assert_close(own, sample(swapped, seed=3))
    seen, _ = record_timesteps(swapped, timesteps=custom, strength=0.5)  # the img2img rule
    assert seen == custom[2:]


def test_bad_custom_timesteps_raise_clear_errors(pipe) -> None:
    cases = [
        ([500, 900], "decreasing integers in \\[0, 999\\]"),
        ([1000, 10], "decreasing integers"),
        ([], "non-empty list"),
        ([900.5, 10], "decreasing integers"),
        ("999", "decreasing integers"),
    ]
    for timesteps, message in cases:
        with pytest.raises(ValueError, match=message):
            sample(pipe, timesteps=timesteps)
    ddim = make_pipe(pipe.denoiser, DDIMScheduler.from_config(pipe.scheduler.config))
    with pytest.raises(ValueError, match="DDIMScheduler takes no custom timesteps"):
        sample(ddim, timesteps=[999, 500])


class ZeroLastLatents(PipelineCallback):
    """A diffusers callback object: it names its own tensor inputs."""

    tensor_inputs = ["latents"]

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        if step_index == STEPS - 1:
            callback_kwargs["latents"] = torch.zeros_like(callback_kwargs["latents"])
        return callback_kwargs


def test_diffusers_callback_objects_work(pipe) -> None:
    images = sample(pipe, callback_on_step_end=ZeroLastLatents())
    torch.testing.assert_close(images, torch.full_like(images, 0.5))
    both = MultiPipelineCallbacks([ZeroLastLatents(), ZeroLastLatents()])
    torch.testing.assert_close(sample(pipe, callback_on_step_end=both), images)
    with pytest.raises(ValueError, match="must be a list of"):
        sample(pipe, callback_on_step_end=SDCFGCutoffCallback())  # needs prompt_embeds


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


class NotAScheduler:
    """Something that is no diffusers scheduler."""


def test_bad_arguments_raise_clear_errors(pipe) -> None:
    cases = [
        ({"num_inference_steps": 0}, "num_inference_steps must be an int >= 1"),
        ({"num_inference_steps": 2.5}, "num_inference_steps must be an int >= 1"),
        ({"strength": 0.0}, r"strength must be in \(0, 1\]"),
        ({"strength": 1.5}, r"strength must be in \(0, 1\]"),
        ({"guidance_scale": -1.0}, "guidance_scale must be"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be"),
        ({"guidance_start": 0.5, "guidance_end": 0.5}, "0 <= guidance_start < guidance_end"),
        ({"guidance_end": 1.5}, "0 <= guidance_start < guidance_end <= 1"),
        ({"guidance_start": -0.1}, "0 <= guidance_start"),
        ({"num_images_per_prompt": 0}, r"num_images_per_prompt \(num_samples\) must be an int"),
        ({"num_samples": 0}, r"num_images_per_prompt \(num_samples\) must be an int"),
        ({"generator": [torch.Generator()] * 3, "num_samples": 2}, "3 generators for 2 samples"),
        ({"chunk_size": 0}, "chunk_size must be"),
        ({"same_noise": 1}, "same_noise must be a bool"),
        ({"callback_on_step_end": "print"}, "callback_on_step_end must be callable"),
        ({"callback_on_step_end_tensor_inputs": ["x0"]}, "must be a list of"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            sample(pipe, **options)
    with pytest.raises(ValueError, match="needs a DenoisingRenderer"):
        sample(make_pipe(make_model(), pipe.scheduler))
    with pytest.raises(ValueError, match="diffusers scheduler"):
        sample(make_pipe(pipe.denoiser, NotAScheduler()))


def test_chunked_denoising_matches_one_pass(pipe) -> None:
    torch.testing.assert_close(
        sample(pipe, num_images_per_prompt=2, chunk_size=3),
        sample(pipe, num_images_per_prompt=2, chunk_size=None),
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
