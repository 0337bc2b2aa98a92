"""Fine-tune and package the bundled demo denoiser, reproducibly.

    OMP_NUM_THREADS=2 python scripts/train_demo_denoiser.py [--config ...] [--run-dir ...]
        [--stage all|train|package] [--budget-s SECONDS] [--set key=value ...]

1. Training stage: fine-tunes the renderer of the deterministic model of ``model.checkpoint``
   (the bundled ``lagernvs/assets/demo_model`` by default; encoder frozen) into a denoiser with
   ``configs/train/denoiser_demo.yaml`` (re-running resumes; ``--budget-s`` and
   ``--data-workers`` as in ``train_demo_model.py``) and records machine, steps and seconds in
   ``<run-dir>/train_record.json``.
2. Packaging stage (on any machine, from a finished run whose deterministic model is the
   bundled one): copies the denoiser and its scheduler into ``lagernvs/assets/demo_denoiser``
   and checks the model and denoiser together against the 30 MB budget.
3. Runs the sampled demo on it (the numbers that ``tests/test_diffusion_spread.py`` checks),
   writes its picture ``docs/sampled_demo.png`` (true alternatives, deterministic render and
   samples of the first scenes), measures video flicker with independent and shared initial
   noise, and records config, wall time, the demo model's sha256 and the numbers in
   ``training.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import demo_training
import torch
from bundled_assets import check_bundle, finish_asset
from demo_training import read_train_record
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from PIL import Image

from lagernvs.cameras import Cameras
from lagernvs.data.synthetic import render_modes_scene
from lagernvs.demo import (
    DEMO_DENOISER_DIR,
    DEMO_MODEL_DIR,
    SAMPLED_CONTEXT,
    SAMPLED_SEEDS,
    SAMPLED_TIMESTEPS,
    demo_pipeline,
    run_sampled_demo,
)
from lagernvs.diffusion import flicker
from lagernvs.pipeline import LagerNVSPipeline
from lagernvs.training.train_denoiser import (
    DenoiserTrainConfig,
    load_denoiser_config,
    run_denoiser_training,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "train" / "denoiser_demo.yaml"
FLICKER_SEED, FLICKER_FRAMES = 101, 10
PICTURE = REPO / "docs" / "sampled_demo.png"
PICTURE_SCENES, PICTURE_SCALE = 4, 2
WEIGHTS = SAFETENSORS_WEIGHTS_NAME  # diffusers' weights file of a saved model


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
            timesteps=SAMPLED_TIMESTEPS,
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


def weights_sha256(model_dir: Path) -> str:
    """sha256 of a saved model's weights file."""
    return hashlib.sha256((model_dir / WEIGHTS).read_bytes()).hexdigest()


def model_record(config: DenoiserTrainConfig) -> dict[str, str]:
    """Which deterministic model the denoiser was fine-tuned from (checked when packaging)."""
    return {"demo_model_sha256": weights_sha256(Path(config.model.checkpoint))}


def package(config_path: Path, run_dir: Path) -> None:
    """The packaging stage: the bundled denoiser, its sampled-demo numbers and picture."""
    record = read_train_record(run_dir, "pipeline")
    bundled_sha256 = weights_sha256(DEMO_MODEL_DIR / "model")
    if record["demo_model_sha256"] != bundled_sha256:
        raise RuntimeError(
            f"{run_dir} fine-tuned another deterministic model than the bundled one; package "
            "the matching demo model first (scripts/train_demo_model.py --stage package)"
        )
    shutil.rmtree(DEMO_DENOISER_DIR, ignore_errors=True)
    for part in ("denoiser", "scheduler"):
        shutil.copytree(run_dir / "pipeline" / part, DEMO_DENOISER_DIR / part)
    size = finish_asset(
        DEMO_DENOISER_DIR, DEMO_DENOISER_DIR / "denoiser" / "config.json", "the demo denoiser"
    )
    bundle = check_bundle([DEMO_MODEL_DIR, DEMO_DENOISER_DIR])

    pipe = demo_pipeline(with_denoiser=True)
    started = time.perf_counter()
    sampled_demo = run_sampled_demo(pipe, run_dir / "sampled-demo", verbose=True)
    sampled_seconds = time.perf_counter() - started
    write_picture(run_dir / "sampled-demo" / "overview_sampled.png")
    training = {
        "config": os.path.relpath(config_path, REPO),
        **record,
        "parameters": sum(p.numel() for p in pipe.denoiser.parameters()),
        "denoiser_bytes": size,
        "bundle_bytes": bundle,
        "sampled_demo_seconds": round(sampled_seconds, 1),
        "sampled_demo_torch_threads": torch.get_num_threads(),
        "sampled_demo": sampled_demo,
        "flicker_10_frame_walk": video_flicker(pipe),
    }
    (DEMO_DENOISER_DIR / "training.json").write_text(json.dumps(training, indent=1))
    summary = {k: v for k, v in training["sampled_demo"].items() if k != "per_scene"}
    print(json.dumps({**summary, "flicker": training["flicker_10_frame_walk"]}, indent=1))


def main() -> None:
    demo_training.main(
        __doc__.split("\n\n")[0],
        (CONFIG, REPO / "runs" / "demo-denoiser"),
        load_denoiser_config,
        run_denoiser_training,
        "pipeline",
        package,
        model_record,
    )


if __name__ == "__main__":
    main()
