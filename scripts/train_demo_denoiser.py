"""Fine-tune and package the bundled demo denoiser, reproducibly.

    OMP_NUM_THREADS=2 python scripts/train_demo_denoiser.py [--run-dir runs/demo-denoiser]
        [--set key=value ...]

1. Fine-tunes the renderer of the bundled demo model (``lagernvs/assets/demo_model``, encoder
   frozen) into a denoiser with ``configs/train/denoiser_demo.yaml`` (re-running resumes).
2. Copies the denoiser and its scheduler into ``lagernvs/assets/demo_denoiser`` and checks the
   model and denoiser together against the 30 MB budget.
3. Runs the sampled demo on it (the numbers that ``tests/test_diffusion_spread.py`` checks),
   writes its picture ``docs/sampled_demo.png`` (true alternatives, deterministic render and
   samples of the first scenes), measures video flicker with independent and shared initial
   noise, and records config, wall time, the demo model's sha256 and the numbers in
   ``training.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch
from bundled_assets import check_bundle, finish_asset
from PIL import Image

from lagernvs.cameras import Cameras
from lagernvs.config import to_dict
from lagernvs.data.synthetic import render_modes_scene
from lagernvs.demo import (
    DEMO_DENOISER_DIR,
    DEMO_MODEL_DIR,
    SAMPLED_CONTEXT,
    SAMPLED_SEEDS,
    SAMPLED_STEPS,
    demo_pipeline,
    run_sampled_demo,
)
from lagernvs.diffusion import flicker
from lagernvs.pipeline import LagerNVSPipeline
from lagernvs.training.train_denoiser import load_denoiser_config, run_denoiser_training

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "train" / "denoiser_demo.yaml"
FLICKER_SEED, FLICKER_FRAMES = 101, 10
PICTURE = REPO / "docs" / "sampled_demo.png"
PICTURE_SCENES, PICTURE_SCALE = 4, 2


def video_flicker(pipe: LagerNVSPipeline) -> dict[str, float]:
    """Flicker of a 10-frame walk: sampled with independent / shared noise, deterministic."""
    height, width = pipe.model.image_size
    render = render_modes_scene(FLICKER_SEED, FLICKER_FRAMES, height, width)
    context = list(SAMPLED_CONTEXT)
    sources = Cameras(render.c2w[context], render.fxfycxcy[context], (height, width))
    walk = Cameras(render.c2w, render.fxfycxcy, (height, width))
    encoded = pipe.encode(render.images[context], sources)

    def sampled(same_noise: bool) -> torch.Tensor:
        return pipe.render(
            encoded,
            walk,
            mode="sampled",
            num_inference_steps=SAMPLED_STEPS,
            same_noise=same_noise,
            generator=torch.Generator().manual_seed(FLICKER_SEED),
        ).images

    return {
        "independent_noise": round(float(flicker(sampled(False))), 4),
        "same_noise": round(float(flicker(sampled(True))), 4),
        "deterministic": round(float(flicker(pipe.render(encoded, walk).images)), 4),
    }


def write_picture(overview: Path) -> None:
    """The README picture: the first scenes' rows of the sampled demo's overview, enlarged."""
    image = Image.open(overview)
    rows = image.crop((0, 0, image.width, PICTURE_SCENES * image.height // len(SAMPLED_SEEDS)))
    PICTURE.parent.mkdir(exist_ok=True)
    size = (rows.width * PICTURE_SCALE, rows.height * PICTURE_SCALE)
    rows.resize(size, Image.NEAREST).save(PICTURE, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "demo-denoiser")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    config = load_denoiser_config(CONFIG, args.overrides)
    weights = DEMO_MODEL_DIR / "model" / "diffusion_pytorch_model.safetensors"
    model_sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()

    started = time.perf_counter()
    state = run_denoiser_training(config, args.run_dir)
    wall = time.perf_counter() - started
    print(state.summary(args.run_dir / "pipeline"))
    if state.stopped:
        return

    shutil.rmtree(DEMO_DENOISER_DIR, ignore_errors=True)
    for part in ("denoiser", "scheduler"):
        shutil.copytree(args.run_dir / "pipeline" / part, DEMO_DENOISER_DIR / part)
    size = finish_asset(
        DEMO_DENOISER_DIR, DEMO_DENOISER_DIR / "denoiser" / "config.json", "the demo denoiser"
    )

    bundle = check_bundle([DEMO_MODEL_DIR, DEMO_DENOISER_DIR])

    pipe = demo_pipeline(with_denoiser=True)
    started = time.perf_counter()
    sampled_demo = run_sampled_demo(pipe, args.run_dir / "sampled-demo", verbose=True)
    sampled_seconds = time.perf_counter() - started
    write_picture(args.run_dir / "sampled-demo" / "overview_sampled.png")
    record = {
        "config": "configs/train/denoiser_demo.yaml",
        "command": "OMP_NUM_THREADS=2 python scripts/train_demo_denoiser.py",
        "resolved_config": to_dict(config),
        "steps": state.step,
        "skipped_steps": state.skipped_steps,
        "wall_seconds": round(wall, 1),
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in pipe.denoiser.parameters()),
        "denoiser_bytes": size,
        "bundle_bytes": bundle,
        "demo_model_sha256": model_sha256,
        "sampled_demo_seconds": round(sampled_seconds, 1),
        "sampled_demo": sampled_demo,
        "flicker_10_frame_walk": video_flicker(pipe),
    }
    (DEMO_DENOISER_DIR / "training.json").write_text(json.dumps(record, indent=1))
    summary = {k: v for k, v in record["sampled_demo"].items() if k != "per_scene"}
    print(json.dumps({**summary, "flicker": record["flicker_10_frame_walk"]}, indent=1))


if __name__ == "__main__":
    main()
