"""Train and package the bundled demo model, reproducibly.

    python scripts/train_demo_model.py [--config configs/train/demo.yaml] [--run-dir runs/demo]
        [--stage all|train|package] [--budget-s SECONDS] [--set key=value ...]

Training stage:

1. Writes the synthetic training/validation shards of the config into ``<run-dir>/synthetic``
   (``--data-workers`` processes, one torch thread each).
2. With ``--budget-s``, sets ``loop.max_steps`` to what fits that many seconds on this machine
   (a 60-step calibration run of the same config).
3. Trains with :func:`lagernvs.training.train.run_training` (re-running resumes) and records
   machine, steps and seconds in ``<run-dir>/train_record.json``.

Packaging stage (on any machine, from a finished run):

4. Writes the held-out demo scenes (their own seed; checked disjoint from the training scenes)
   and ``views.json`` into ``lagernvs/assets/demo_scenes``, at the run's image size.
5. Saves the pipeline into ``lagernvs/assets/demo_model`` (safetensors), runs the demo on it and
   records config, the training record and metrics in ``lagernvs/assets/demo_model/training.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import demo_training
from bundled_assets import finish_asset
from demo_training import read_train_record

from lagernvs.data.shards import read_index
from lagernvs.data.synthetic import write_synthetic_dataset
from lagernvs.demo import DEMO_MODEL_DIR, DEMO_SCENES_DIR, DEMO_SPLIT, VIEWS_FILE, run_demo
from lagernvs.models import LagerNVSModel
from lagernvs.pipeline import LagerNVSPipeline
from lagernvs.training.train import load_train_config, run_training

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "train" / "demo.yaml"
DEMO_SCENE_SEED = 20260
NUM_DEMO_SCENES = 4
NUM_FRAMES = 10
CONTEXT = [3, 6]  # the designated sources of the family
TARGETS = [2, 4, 5, 7]


def write_demo_scenes(training_ids: set[str], size: int) -> list[str]:
    """Held-out scenes in the Re10k layout plus the pixelSplat-style views.json."""
    shutil.rmtree(DEMO_SCENES_DIR, ignore_errors=True)
    ids = write_synthetic_dataset(
        DEMO_SCENES_DIR,
        NUM_DEMO_SCENES,
        split=DEMO_SPLIT,
        seed=DEMO_SCENE_SEED,
        num_frames=NUM_FRAMES,
        height=size,
        width=size,
        family="modes",
        sources=CONTEXT,
    )
    overlap = sorted(set(ids) & training_ids)
    if overlap:
        raise RuntimeError(f"demo scenes {overlap} also occur in the training data")
    views = {scene: {"context": CONTEXT, "target": TARGETS} for scene in ids}
    (DEMO_SCENES_DIR / VIEWS_FILE).write_text(json.dumps(views, indent=1))
    return ids


def package(config_path: Path, run_dir: Path) -> None:
    """The packaging stage: demo scenes, the bundled model, its demo numbers."""
    record = read_train_record(run_dir, "model")
    size = record["resolved_config"]["data"]["synthetic"]["image_size"]
    training_ids = set(read_index(run_dir / "synthetic" / "train-shards" / "index.json")["scenes"])
    write_demo_scenes(training_ids, size)
    shutil.rmtree(DEMO_MODEL_DIR, ignore_errors=True)
    model = LagerNVSModel.from_pretrained(run_dir / "model")
    LagerNVSPipeline(model=model).save_pretrained(DEMO_MODEL_DIR)
    model_bytes = finish_asset(
        DEMO_MODEL_DIR, DEMO_MODEL_DIR / "model" / "config.json", "the demo model"
    )
    metrics = run_demo(run_dir / "demo")
    training = {
        "config": os.path.relpath(config_path, REPO),
        **record,
        "parameters": sum(p.numel() for p in model.parameters()),
        "model_bytes": model_bytes,
        "demo_scene_seed": DEMO_SCENE_SEED,
        "demo_metrics": {k: metrics[k] for k in ("deterministic", "baseline_nearest_view")},
    }
    (DEMO_MODEL_DIR / "training.json").write_text(json.dumps(training, indent=2))
    print(json.dumps(training["demo_metrics"], indent=2))


def main() -> None:
    demo_training.main(
        __doc__.split("\n\n")[0],
        (CONFIG, REPO / "runs" / "demo"),
        load_train_config,
        run_training,
        "model",
        package,
    )


if __name__ == "__main__":
    main()
