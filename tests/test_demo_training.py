"""The demo networks' GPU recipe on the CPU at tiny size: `scripts/train_demo_gpu.sh --dry-run`
trains the model and the denoiser for a wall-clock budget (steps from a calibration run) and
writes what the packaging stages need; `steps_for_budget` turns a measured throughput into
steps."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

from lagernvs.data.config import DataConfig, DatasetConfig
from lagernvs.training.config import LoopConfig, OptimConfig
from lagernvs.training.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from demo_training import (  # noqa: E402
    BUDGET_MARGIN,
    CALIBRATION_STEPS,
    images_per_step,
    read_train_record,
    steps_for_budget,
)

WEIGHTS = SAFETENSORS_WEIGHTS_NAME  # diffusers' weights file of a saved model


def config(warmup: int = 10) -> TrainConfig:
    stream = DatasetConfig(context_frames=[3, 6], sampler={"num_targets": 4})
    return TrainConfig(
        loop=LoopConfig(max_steps=1000, global_batch_size=8, micro_batch_size=8),
        optim=OptimConfig(warmup_steps=warmup),
        data=DataConfig(train=[stream]),
    )


def fake_run(images_per_s: float, calls: list):
    """A training run that logs the given throughput (what the trainer writes)."""

    def run(run_config, output_dir: Path) -> None:
        calls.append(run_config)
        (output_dir / "logs").mkdir(parents=True)
        lines = [{"step": 20, "images_per_s": 1.0}, {"step": 40, "images_per_s": images_per_s}]
        (output_dir / "logs" / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)))

    return run


def test_steps_fit_the_budget_at_the_last_measured_throughput(tmp_path):
    calls: list = []
    budget = steps_for_budget(config(), tmp_path, 100.0, fake_run(64.0, calls))
    assert images_per_step(config()) == 32  # 8 scenes x 4 targets
    assert budget["seconds_per_step"] == 0.5  # 32 images at 64 images/s
    assert budget["max_steps"] == int(100 * BUDGET_MARGIN / 0.5)
    (calibration,) = calls
    assert calibration.loop.max_steps == calibration.loop.eval_every == CALIBRATION_STEPS
    assert calibration.optim.warmup_steps == 0
    assert not (tmp_path / "calibration").exists()


def test_a_budget_shorter_than_the_warm_up_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="warm-up steps; give a larger --budget-s"):
        steps_for_budget(config(warmup=500), tmp_path, 10.0, fake_run(64.0, []))


def test_packaging_needs_a_finished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="--stage train"):
        read_train_record(tmp_path, "model")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out, runs = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("runs")
    env = {**os.environ, "OUT": str(out), "RUNS": str(runs), "PYTHON": sys.executable,
           "WHEELS": str(out / "none"), "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(["bash", str(REPO / "scripts" / "train_demo_gpu.sh"), "--dry-run"],
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, runs


def test_dry_run_trains_both_networks_for_their_budgets(dry_run):
    out, runs = dry_run
    model = json.loads((runs / "demo-gpu" / "train_record.json").read_text())
    denoiser = json.loads((runs / "denoiser-gpu" / "train_record.json").read_text())
    for record in (model, denoiser):
        assert record["machine"].endswith("1 torch threads")
        assert record["steps"] == record["budget"]["max_steps"] > 5  # past the warm-up
        assert record["resolved_config"]["loop"]["max_steps"] == record["steps"]
    assert model["resolved_config"]["model"]["overrides"]["patch_size"] == 4
    weights = (runs / "demo-gpu" / "model" / WEIGHTS).read_bytes()
    assert denoiser["demo_model_sha256"] == hashlib.sha256(weights).hexdigest()
    # the denoiser read the model's shards rather than writing its own
    assert (runs / "denoiser-gpu" / "synthetic").resolve() == (runs / "demo-gpu" / "synthetic")


def test_dry_run_writes_what_the_packaging_stages_read(dry_run):
    out, _ = dry_run
    with tarfile.open(out / "demo-gpu.tar") as archive:
        names = set(archive.getnames())
    assert {"demo-gpu/train_record.json", f"demo-gpu/model/{WEIGHTS}",
            "demo-gpu/synthetic/train-shards/index.json"} <= names  # fmt: skip
    with tarfile.open(out / "denoiser-gpu.tar") as archive:
        names = set(archive.getnames())
    assert {"denoiser-gpu/train_record.json", f"denoiser-gpu/pipeline/denoiser/{WEIGHTS}",
            "denoiser-gpu/pipeline/scheduler/scheduler_config.json"} <= names  # fmt: skip
    assert not any("checkpoints" in name for name in names)
