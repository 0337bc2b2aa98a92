"""The bundled demo denoiser hallucinates only where no source view looked.

On procedural scenes, where it is known which target pixels the source views see, samples of
an extrapolated view must vary much more in unseen pixels than in seen ones, and stay close to
the ground truth in seen pixels. Uses the bundled demo model (frozen encoder) and the demo
denoiser fine-tuned from it (``lagernvs/assets/demo_denoiser``, see its ``training.json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

from lagernvs.data.preprocess import preprocess_views
from lagernvs.data.synthetic import render_synthetic_scene, visibility_mask
from lagernvs.diffusion import DenoisingRenderer, sample_views, spread_by_visibility
from lagernvs.models import LagerNVSModel

ASSETS = Path(__file__).resolve().parents[1] / "lagernvs" / "assets"
DEMO_MODEL = ASSETS / "demo_model" / "model"
DEMO_DENOISER = ASSETS / "demo_denoiser"
# Not among the training scenes (those are seeded with 32-bit draws).
SCENE_SEEDS = (101, 202, 303, 404, 505, 606, 707, 808)
CONTEXT, TARGETS = (3, 6), (0, 9)  # two source views; targets beyond both ends of the walk
NUM_SAMPLES, STEPS, GUIDANCE, SIZE = 6, 10, 2.0, 64


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extrapolation_case(seed: int) -> tuple[dict, torch.Tensor]:
    """One model sample (context then targets) and the (T, H, W) mask of seen target pixels."""
    render = render_synthetic_scene(seed, num_frames=10, height=SIZE, width=SIZE)
    order = [*CONTEXT, *TARGETS]
    sample = preprocess_views(
        list(render.images[order]), render.c2w[order], render.fxfycxcy[order], (SIZE, SIZE),
        num_cond_views=len(CONTEXT),
    )
    context = list(CONTEXT)
    seen = torch.stack([
        visibility_mask(
            render.depth[t], render.c2w[t], render.fxfycxcy[t],
            render.depth[context], render.c2w[context], render.fxfycxcy[context],
        )
        for t in TARGETS
    ])
    return sample, seen


def spread_statistics(
    model: LagerNVSModel, denoiser: DenoisingRenderer, scheduler: DDIMScheduler, seed: int
) -> dict[str, float]:
    """Spread across samples in seen / unseen pixels, PSNR in seen pixels (samples, render)."""
    sample, seen = extrapolation_case(seed)
    num_cond = len(CONTEXT)
    images, rays = sample["images"][None], sample["rays"][None]
    truth = images[0, num_cond:]
    with torch.no_grad():
        scene = model.encode(images[:, :num_cond], sample["cam_tokens"][None, :num_cond])
        deterministic = model.render(scene, rays[:, num_cond:])[0]
    samples = sample_views(
        denoiser, scheduler, scene, rays[:, num_cond:], num_inference_steps=STEPS,
        guidance_scale=GUIDANCE, num_samples=NUM_SAMPLES,
        generator=torch.Generator().manual_seed(seed),
    )[:, 0]

    def psnr_seen(views: torch.Tensor) -> float:
        mse = ((views - truth).square().mean(dim=-3) * seen).sum() / seen.sum()
        return float(-10 * torch.log10(mse))

    return {
        **spread_by_visibility(samples, seen),
        "unseen_fraction": float((~seen).float().mean()),
        "psnr_seen_sampled": sum(psnr_seen(s) for s in samples) / len(samples),
        "psnr_seen_deterministic": psnr_seen(deterministic),
    }


@pytest.fixture(scope="module")
def demo() -> tuple[LagerNVSModel, DenoisingRenderer, DDIMScheduler]:
    for folder in (DEMO_MODEL, DEMO_DENOISER / "denoiser"):
        if not (folder / "config.json").is_file():
            pytest.fail(f"{folder} is missing: the demo model and denoiser ship in lagernvs/assets")
    record = json.loads((DEMO_DENOISER / "training.json").read_text())
    weights = DEMO_MODEL / "diffusion_pytorch_model.safetensors"
    assert record["demo_model_sha256"] == sha256(weights), (
        "the demo model changed since the demo denoiser was fine-tuned from it; fine-tune it "
        "again (see lagernvs/assets/demo_denoiser/training.json)"
    )
    model = LagerNVSModel.from_pretrained(DEMO_MODEL).eval()
    denoiser = DenoisingRenderer.from_pretrained(DEMO_DENOISER, subfolder="denoiser").eval()
    scheduler = DDIMScheduler.from_pretrained(DEMO_DENOISER, subfolder="scheduler")
    return model, denoiser, scheduler


def test_samples_vary_in_unseen_pixels_and_match_the_truth_in_seen_ones(demo) -> None:
    """Measured (training.json): spread 0.033 seen / 0.043 unseen (1.28x), seen PSNR 17.3 dB
    sampled vs 18.5 dB deterministic. The margin is bounded by the demo model, which renders
    even seen texture as a blur (its own RMSE is only ~1.2x larger in unseen pixels)."""
    stats = [spread_statistics(*demo, seed) for seed in SCENE_SEEDS]
    mean = {key: sum(s[key] for s in stats) / len(stats) for key in stats[0]}
    assert mean["unseen_fraction"] > 0.1, mean  # the targets do reach unseen surfaces
    assert mean["spread_unseen"] > 1.15 * mean["spread_seen"], mean
    assert mean["psnr_seen_sampled"] > 15.0, mean
    assert mean["psnr_seen_sampled"] > mean["psnr_seen_deterministic"] - 2.5, mean
