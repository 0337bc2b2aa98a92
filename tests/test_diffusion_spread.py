"""The bundled demo denoiser hallucinates only where no source view looked.

On procedural scenes, where it is known which target pixels the source views see, samples of
extrapolated views must vary much more in unseen pixels than in seen ones, and stay close to
the ground truth in seen pixels. Runs the sampled part of the demo (``lagernvs demo --mode
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
    """Measured (``lagernvs/assets/demo_denoiser/training.json``, ``sampled_demo``): spread
    0.022 in seen vs 0.031 in unseen pixels (1.44x); seen-pixel PSNR 17.7 dB sampled vs 19.7
    deterministic. Another fine-tuning run of the same recipe gave 1.53x, so the bar is 1.25x."""
    mean = sampled_demo
    assert mean["unseen_fraction"] > 0.1, mean  # the targets do reach unseen surfaces
    assert mean["spread_unseen"] > 1.25 * mean["spread_seen"], mean
    assert mean["spread_unseen"] > 0.01, mean  # the samples do differ where nothing was seen
    assert mean["psnr_seen"] > 15.0, mean
    assert mean["psnr_seen"] > mean["psnr_seen_deterministic"] - 2.5, mean
