"""The bundled demo denoiser varies more where no source view looked.

On scenes of the synthetic "modes" family, where it is known which target pixels the source
views see and what every plausible completion of the rest is, samples of extrapolated views must
vary more in unseen pixels than in seen ones, and stay close to the ground truth in seen pixels.
The goals of the sampled demo (mode error <= 0.6x deterministic, 2x spread, coverage >= 0.5) are
not reached by the bundled denoiser yet (README, "The sampled demo"); these are the bars it
meets. Runs the sampled part of the demo (``lagernvs demo --mode
sampled``) on the bundled demo model (frozen encoder) and the demo denoiser fine-tuned from it
(``lagernvs/assets/demo_denoiser``, see its ``training.json``).
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
    """Measured on the modes family (``lagernvs demo --mode sampled``): spread 0.023 in seen vs
    0.030 in unseen pixels (1.29x); seen-pixel PSNR 16.9 dB sampled vs 18.6 deterministic."""
    mean = sampled_demo
    assert mean["unseen_fraction"] > 0.1, mean  # the targets do reach unseen surfaces
    assert mean["spread_unseen"] > 1.25 * mean["spread_seen"], mean
    assert mean["spread_unseen"] > 0.01, mean  # the samples do differ where nothing was seen
    assert mean["psnr_seen"] > 15.0, mean
    assert mean["psnr_seen"] > mean["psnr_seen_deterministic"] - 2.5, mean


def test_mode_metrics_are_reported_per_scene_and_consistent(sampled_demo) -> None:
    """Measured: mode error 0.157 sampled vs 0.144 deterministic, coverage 0.33 (one of the
    three alternatives per scene)."""
    mean, k = sampled_demo, sampled_demo["num_alternatives"]
    assert k == 3 and len(mean["per_scene"]) == mean["scenes"]
    for row in mean["per_scene"]:
        chosen = [c for target in row["chosen_alternatives"] for c in target]
        assert len(chosen) == 2 * mean["num_samples"] and set(chosen) <= set(range(k))
        assert 1 / k <= row["mode_coverage"] <= 1
    assert 0 < mean["mode_error_sampled"] < 1 and 0 < mean["mode_error_deterministic"] < 1
