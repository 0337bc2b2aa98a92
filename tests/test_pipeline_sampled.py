"""LagerNVSPipeline in mode="sampled": layout, reproducibility, save/load, strength, errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler
from safetensors.torch import load_file

from lagernvs import Cameras, LagerNVSModel, LagerNVSPipeline
from lagernvs.diffusion import DenoisingRenderer, NoiseSchedule, build_noise_scheduler

SIZE = (64, 64)


def _perturbed_denoiser(model: LagerNVSModel) -> DenoisingRenderer:
    """A denoiser moved away from its identity initialisation, so that noise matters."""
    denoiser = DenoisingRenderer.from_renderer(model).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in denoiser.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return denoiser


@pytest.fixture(scope="module")
def pipe() -> LagerNVSPipeline:
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset("tiny").eval()
    scheduler = DDIMScheduler.from_config(build_noise_scheduler(NoiseSchedule()).config)
    pipeline = LagerNVSPipeline(
        model=model, denoiser=_perturbed_denoiser(model), scheduler=scheduler
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _inputs() -> tuple[torch.Tensor, Cameras, Cameras]:
    images = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    sources = Cameras.look_at(
        [[0, 0, -1], [0.3, 0, -1]], [[0, 0, 1]] * 2, fov_deg=60, image_size=SIZE
    )
    targets = Cameras.look_at(
        [[0.1, 0, -1], [0.2, 0, -1], [0.6, 0, -1]], [[0, 0, 1]] * 3, fov_deg=60, image_size=SIZE
    )
    return images, sources, targets


def _sample(pipeline: LagerNVSPipeline, seed: int, **kwargs) -> torch.Tensor:
    images, sources, targets = _inputs()
    options = {"num_inference_steps": 3, "output_type": "pt"} | kwargs
    generator = torch.Generator().manual_seed(seed)
    return pipeline(
        images, sources, target_cameras=targets, mode="sampled", generator=generator, **options
    ).images


def test_samples_are_per_target_consecutive_and_seeded(pipe: LagerNVSPipeline) -> None:
    first = _sample(pipe, 0, num_samples=2)
    assert first.shape == (3 * 2, 3, *SIZE)
    assert torch.equal(first, _sample(pipe, 0, num_samples=2))
    assert (first - _sample(pipe, 1, num_samples=2)).abs().max() > 1e-4
    assert (first[0] - first[1]).abs().max() > 1e-4  # two samples of target 0 differ


def test_save_load_round_trip_gives_identical_samples(
    pipe: LagerNVSPipeline, tmp_path: Path
) -> None:
    pipe.save_pretrained(tmp_path)
    loaded = LagerNVSPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.denoiser) is DenoisingRenderer
    assert type(loaded.scheduler) is DDIMScheduler
    assert torch.equal(_sample(pipe, 5), _sample(loaded, 5))


@pytest.mark.parametrize("argument", ["dtype", "torch_dtype"])
def test_from_pretrained_takes_dtype_and_torch_dtype(
    pipe: LagerNVSPipeline, tmp_path: Path, argument: str
) -> None:
    """diffusers reads both (``torch_dtype`` with its own deprecation warning)."""
    pipe.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch_dtype` is deprecated", FutureWarning)
        loaded = LagerNVSPipeline.from_pretrained(tmp_path, **{argument: torch.bfloat16})
    assert loaded.model.dtype == torch.bfloat16 and loaded.denoiser.dtype == torch.bfloat16


def test_small_strength_returns_the_deterministic_render(pipe: LagerNVSPipeline) -> None:
    images, sources, targets = _inputs()
    deterministic = pipe(images, sources, target_cameras=targets, output_type="pt").images
    nearly = _sample(pipe, 0, strength=1e-3, num_inference_steps=10)
    assert (nearly - deterministic).abs().max() < 1e-2
    assert (_sample(pipe, 0) - deterministic).abs().max() > 1e-3


def test_sampled_mode_errors(pipe: LagerNVSPipeline) -> None:
    images, sources, targets = _inputs()
    deterministic_only = LagerNVSPipeline(model=pipe.model)
    with pytest.raises(ValueError, match="denoiser"):
        deterministic_only(images, sources, target_cameras=targets, mode="sampled")
    with pytest.raises(ValueError, match="strength"):
        _sample(pipe, 0, strength=1.5)
    with pytest.raises(ValueError, match="num_inference_steps"):
        _sample(pipe, 0, num_inference_steps=0)


def test_sampled_demo_reports_spread_in_seen_and_unseen_pixels(
    pipe: LagerNVSPipeline, tmp_path: Path
) -> None:
    from lagernvs.demo import SAMPLED_SEEDS, run_sampled_demo

    # The demo's sampler: custom timesteps through the bundled denoiser's LCMScheduler.
    lcm = LCMScheduler.from_config(pipe.scheduler.config)
    demo_like = LagerNVSPipeline(model=pipe.model, denoiser=pipe.denoiser, scheduler=lcm)
    summary = run_sampled_demo(demo_like, tmp_path)
    for key in ("spread_seen", "spread_unseen", "psnr_seen", "psnr_seen_deterministic"):
        assert torch.isfinite(torch.tensor(summary[key])), key
    assert summary["spread_unseen"] > 0 and summary["spread_seen"] > 0
    assert 0 < summary["unseen_fraction"] < 1
    assert sorted(p.name for p in tmp_path.glob("sampled_*.png")) == sorted(
        f"sampled_{seed}.png" for seed in SAMPLED_SEEDS
    )


def test_saved_pipeline_with_denoiser_loads_in_a_fresh_process(
    pipe: LagerNVSPipeline, tmp_path: Path
) -> None:
    import subprocess
    import sys

    pipe.save_pretrained(tmp_path)
    code = (
        "import sys; from lagernvs import LagerNVSPipeline; "
        "p = LagerNVSPipeline.from_pretrained(sys.argv[1]); print(type(p.denoiser).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("DenoisingRenderer")


# Numerics of the sampling loop. tests/data/sampling_reference.safetensors holds the samples
# that the pipeline drew before the loop moved into it (commit d702b10) for the models, inputs
# and settings below (weights set by sorted parameter name, independent of init order).
SAMPLING_REFERENCE = Path(__file__).parent / "data" / "sampling_reference.safetensors"
REFERENCE_SIZE = (32, 32)


def _filled(module: torch.nn.Module, seed: int, std: float, skip: str = "~") -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(module.named_parameters()):
            if not name.startswith(skip):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def _reference_pipeline(objective: str, scheduler) -> LagerNVSPipeline:
    model = LagerNVSModel.from_preset(
        "tiny", attention_type="cross_attention", image_size=REFERENCE_SIZE,
        encoder_image_size=56,
    ).eval()  # fmt: skip
    _filled(model, seed=21, std=0.2)
    denoiser = DenoisingRenderer.from_renderer(model, timestep_channels=16, objective=objective)
    _filled(denoiser, seed=22, std=0.1, skip="renderer.")
    pipeline = LagerNVSPipeline(model=model, denoiser=denoiser.eval(), scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _reference_samples(case: str) -> torch.Tensor:
    vp = build_noise_scheduler(NoiseSchedule())
    if case == "ddpm_guided":
        pipeline = _reference_pipeline("sample", vp)
        options = {
            "num_inference_steps": 3, "guidance_scale": 2.0, "num_samples": 2,
            "generator": [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)],
        }  # fmt: skip
    elif case == "ddim_strength":
        pipeline = _reference_pipeline("sample", DDIMScheduler.from_config(vp.config))
        options = {
            "num_inference_steps": 4, "strength": 0.5, "chunk_size": 1,
            "generator": torch.Generator().manual_seed(3),
        }  # fmt: skip
    else:
        flow = build_noise_scheduler(NoiseSchedule(prediction_type="flow", flow_shift=2.0))
        pipeline = _reference_pipeline("flow", flow)
        options = {
            "num_inference_steps": 3, "num_samples": 2, "same_noise": True,
            "generator": torch.Generator().manual_seed(7),
        }  # fmt: skip
    images = torch.rand(2, 3, *REFERENCE_SIZE, generator=torch.Generator().manual_seed(23))
    sources = Cameras.look_at(
        [[0, 0, -1], [0.3, 0, -1]], [[0, 0, 1]] * 2, fov_deg=60, image_size=REFERENCE_SIZE
    )
    targets = Cameras.look_at(
        [[0.1, 0, -1], [0.6, 0, -1]], [[0, 0, 1]] * 2, fov_deg=60, image_size=REFERENCE_SIZE
    )
    return pipeline(
        images, sources, target_cameras=targets, mode="sampled", output_type="pt", **options
    ).images


@pytest.mark.parametrize("case", ["ddpm_guided", "ddim_strength", "flow_same_noise"])
def test_sampling_keeps_its_numerics(case: str) -> None:
    expected = load_file(SAMPLING_REFERENCE)[case]
    torch.testing.assert_close(_reference_samples(case), expected, atol=1e-5, rtol=0)
