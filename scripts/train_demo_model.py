"""Train and package the bundled demo model, reproducibly.

    python scripts/train_demo_model.py [--run-dir runs/demo] [--set key=value ...]

1. Writes the synthetic training/validation shards of ``configs/train/demo.yaml`` into
   ``<run-dir>/synthetic`` with one CPU thread (the many small ray-casting jobs run faster
   without thread contention).
2. Trains with :func:`lagernvs.training.train.run_training` (re-running resumes).
3. Writes the held-out demo scenes (their own seed; checked disjoint from the training scenes)
   and ``views.json`` into ``lagernvs/assets/demo_scenes``.
4. Saves the pipeline into ``lagernvs/assets/demo_model`` (safetensors), runs the demo on it and
   records config, steps, wall time and metrics in ``lagernvs/assets/demo_model/training.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from accelerate import PartialState
from bundled_assets import finish_asset

from lagernvs.config import to_dict
from lagernvs.data.shards import read_index
from lagernvs.data.synthetic import write_synthetic_dataset
from lagernvs.data.training_stream import prepare_synthetic_shards
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    config = load_train_config(CONFIG, args.overrides)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = prepare_synthetic_shards(config.data, args.run_dir, PartialState())
    data_seconds = time.perf_counter() - started
    torch.set_num_threads(threads)

    started = time.perf_counter()
    state = run_training(config, args.run_dir)
    train_seconds = time.perf_counter() - started
    print(state.summary(args.run_dir / "model"))
    if state.stopped:
        return

    training_ids = set(read_index(Path(data.train[0].shards) / "index.json")["scenes"])
    write_demo_scenes(training_ids, config.data.synthetic.image_size)
    shutil.rmtree(DEMO_MODEL_DIR, ignore_errors=True)
    model = LagerNVSModel.from_pretrained(args.run_dir / "model")
    LagerNVSPipeline(model=model).save_pretrained(DEMO_MODEL_DIR)
    size = finish_asset(DEMO_MODEL_DIR, DEMO_MODEL_DIR / "model" / "config.json", "the demo model")

    metrics = run_demo(args.run_dir / "demo")
    record = {
        "config": "configs/train/demo.yaml",
        "resolved_config": to_dict(config),
        "steps": state.step,
        "skipped_steps": state.skipped_steps,
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": threads,
        "parameters": sum(p.numel() for p in model.parameters()),
        "model_bytes": size,
        "demo_scene_seed": DEMO_SCENE_SEED,
        "demo_metrics": {k: metrics[k] for k in ("deterministic", "baseline_nearest_view")},
    }
    (DEMO_MODEL_DIR / "training.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record["demo_metrics"], indent=2))


if __name__ == "__main__":
    main()
