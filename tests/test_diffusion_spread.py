"""The bundled demo denoiser varies more where no source view looked.

On scenes of the synthetic "modes" family, where it is known which target pixels the source
views see and what every plausible completion of the rest is, samples of extrapolated views must
vary more in unseen pixels than in seen ones, commit to different alternatives there, and stay
close to the ground truth in seen pixels. The bundled denoiser meets all four goals of the
sampled demo (README, "The sampled demo"): mode error <= 0.6x deterministic, spread >= 2x,
coverage >= 0.5, seen PSNR within 1.5 dB; where it meets them with room, the tests hold it to
tighter bars below its measured values.
Runs the sampled part of the demo (``lagernvs demo --mode sampled``) on the bundled demo model
(frozen encoder) and the demo denoiser fine-tuned from it (``lagernvs/assets/demo_denoiser``, see
its ``training.json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lagernvs.demo import DEMO_DENOISER_DIR, DEMO_MODEL_DIR, demo_pipeline, run_sampled_demo


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sampled_demo(tmp_path_factory) -> dict:
    for folder in (DEMO_MODEL_DIR / "model", DEMO_DENOISER_DIR / "denoiser"):
        if not (folder / "config.json").is_file():
            pytest.fail(f"{folder} is missing: the demo model and denoiser ship in lagernvs/assets")
    record = json.loads((DEMO_DENOISER_DIR / "training.json").read_text())
    weights = DEMO_MODEL_DIR / "model" / "diffusion_pytorch_model.safetensors"
    assert record["demo_model_sha256"] == sha256(weights), (
        "the demo model changed since the demo denoiser was fine-tuned from it; fine-tune it "
        "again with scripts/train_demo_denoiser.py"
    )
    return run_sampled_demo(demo_pipeline(with_denoiser=True), tmp_path_factory.mktemp("demo"))


def test_samples_vary_in_unseen_pixels_and_match_the_truth_in_seen_ones(sampled_demo) -> None:
    """Measured on the modes family (``lagernvs demo --mode sampled``): spread 0.026 in seen vs
    0.133 in unseen pixels (5.0x); seen-pixel PSNR 22.20 dB sampled vs 22.66 deterministic."""
    mean = sampled_demo
    assert mean["unseen_fraction"] > 0.1, mean  # the targets do reach unseen surfaces
    assert mean["spread_unseen"] >= 4 * mean["spread_seen"], mean
    assert mean["psnr_seen"] > mean["psnr_seen_deterministic"] - 1.0, mean


def test_samples_commit_to_different_alternatives(sampled_demo) -> None:
    """Measured: mode error 0.077 sampled vs 0.134 deterministic (0.58x), coverage 0.88 (most
    targets get all three alternatives across 6 samples)."""
    mean, k = sampled_demo, sampled_demo["num_alternatives"]
    assert k == 3 and len(mean["per_scene"]) == mean["scenes"]
    for row in mean["per_scene"]:
        chosen = [c for target in row["chosen_alternatives"] for c in target]
        assert len(chosen) == 2 * mean["num_samples"] and set(chosen) <= set(range(k))
        assert 1 / k <= row["mode_coverage"] <= 1
    assert mean["mode_coverage"] >= 0.75, mean
    assert mean["mode_error_sampled"] <= 0.6 * mean["mode_error_deterministic"], mean


def test_bundled_model_and_denoiser_fit_the_budget_with_4x4_patches() -> None:
    """The sampled demo's networks: renderer patch 4 (8x8 patches made blocky samples) and at
    most 30 MB together."""
    model = json.loads((DEMO_MODEL_DIR / "model" / "config.json").read_text())
    denoiser = json.loads((DEMO_DENOISER_DIR / "denoiser" / "config.json").read_text())
    assert model["patch_size"] == denoiser["patch_size"] == 4
    assert model["image_size"] == [64, 64]
    files = [p for folder in (DEMO_MODEL_DIR, DEMO_DENOISER_DIR) for p in folder.rglob("*")]
    assert sum(p.stat().st_size for p in files if p.is_file()) <= 30 * 10**6


def test_demo_pipeline_samples_with_the_bundled_schedule_as_lcm() -> None:
    """The demo's sampler: the bundled noise schedule (as trained) in an LCMScheduler, given
    only the settings LCM takes, so copies and saved configs carry no foreign keys."""
    pipe = demo_pipeline(with_denoiser=True)
    saved = json.loads((DEMO_DENOISER_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    assert "variance_type" in saved and "variance_type" not in pipe.scheduler.config
    for key in ("num_train_timesteps", "beta_schedule", "prediction_type", "clip_sample"):
        assert pipe.scheduler.config[key] == saved[key], key
