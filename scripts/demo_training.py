"""Shared steps of the scripts that train the bundled demo networks (model, denoiser).

* :func:`main`: the common command line (``--config``, ``--run-dir``, ``--stage``,
  ``--budget-s``, ``--data-workers``, ``--set``) and the two stages;
* :func:`train_stage`: synthetic shards, budgeted step count, training, the run's record.
* :func:`steps_for_budget`: how many optimizer steps fit a wall-clock budget on this machine,
  measured with a short calibration run of the same configuration (a cosine schedule needs its
  length before it starts, so the run cannot simply be stopped when time is up).
* :func:`write_train_record` / :func:`read_train_record`: what the training stage measured
  (machine, steps, seconds), kept in the run folder so that the packaging stage, possibly on
  another machine, writes it into the asset's ``training.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from lagernvs.config import to_dict
from lagernvs.data.config import sampler_arguments
from lagernvs.data.training_stream import prepare_synthetic_shards
from lagernvs.data.views import sampler_preset
from lagernvs.training.tracking import read_metrics
from lagernvs.training.trainer import TrainState

STAGES = ("all", "train", "package")
CALIBRATION_STEPS, CALIBRATION_LOG_EVERY = 60, 20
BUDGET_MARGIN = 0.88  # of the budget spent on steps: evaluation and checkpoints take the rest
RECORD = "train_record.json"


def add_arguments(parser: argparse.ArgumentParser, config: Path, run_dir: Path) -> None:
    """The command line both scripts share."""
    parser.add_argument("--config", type=Path, default=config)
    parser.add_argument("--run-dir", type=Path, default=run_dir)
    parser.add_argument(
        "--stage",
        choices=STAGES,
        default="all",
        help="train: train into --run-dir only (e.g. on a GPU machine); package: turn a "
        "finished run into the bundled asset; all: both (default)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="set loop.max_steps so that training takes about this many seconds here "
        "(measured with a short calibration run)",
    )
    parser.add_argument(
        "--data-workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="processes that render the synthetic scenes (default: the usable CPUs)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])


def machine() -> str:
    """The accelerator (or the CPU and its thread count) this process trains on."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def steps_for_budget(
    config: Any,
    run_dir: Path,
    budget_s: float,
    run: Callable[[Any, Path], Any],
) -> dict[str, float]:
    """Optimizer steps that fit `budget_s` seconds, from a short run of the same config.

    `run(config, output_dir)` trains; the calibration runs it for CALIBRATION_STEPS steps into
    ``<run_dir>/calibration`` (deleted afterwards) and reads the throughput of its last log
    window, after start-up and the first steps. It evaluates once at its end, so that an
    evaluation that fails shows here rather than minutes into the real run. Returns the steps
    and what they rest on.
    """
    folder = run_dir / "calibration"
    shutil.rmtree(folder, ignore_errors=True)
    loop = replace(
        config.loop,
        max_steps=CALIBRATION_STEPS,
        log_every=CALIBRATION_LOG_EVERY,
        eval_every=CALIBRATION_STEPS,  # once, after the last measured window
        image_every=0,
        checkpoint_every=CALIBRATION_STEPS,
    )
    calibration = replace(config, loop=loop, optim=replace(config.optim, warmup_steps=0))
    started = time.perf_counter()
    run(calibration, folder)
    seconds = time.perf_counter() - started
    windows = [m for m in read_metrics(folder / "logs") if "images_per_s" in m]
    shutil.rmtree(folder, ignore_errors=True)
    if not windows:
        raise RuntimeError(f"the calibration run logged no throughput under {folder}/logs")
    step_seconds = images_per_step(config) / windows[-1]["images_per_s"]
    steps = int(budget_s * BUDGET_MARGIN / step_seconds)
    if steps <= config.optim.warmup_steps:
        raise RuntimeError(
            f"{budget_s:.0f} s fit only {steps} steps ({step_seconds:.3f} s each), no more than "
            f"the {config.optim.warmup_steps} warm-up steps; give a larger --budget-s"
        )
    return {
        "budget_seconds": budget_s,
        "calibration_seconds": round(seconds, 1),
        "seconds_per_step": round(step_seconds, 4),
        "max_steps": steps,
    }


def images_per_step(config: Any) -> int:
    """Target views rendered per optimizer step (what the trainer's images/s counts)."""
    dataset = config.data.train[0]
    sampler = sampler_preset(
        config.data.recipe, dataset.dataset, **sampler_arguments(dataset.sampler)
    )
    return config.loop.global_batch_size * sampler.num_targets


def write_train_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Keep what the training stage measured next to its run (read by the packaging stage)."""
    record = {
        "machine": machine(),
        "torch": torch.__version__,
        "command": " ".join(["python", *sys.argv]),
        **record,
    }
    (run_dir / RECORD).write_text(json.dumps(record, indent=1))


def read_train_record(run_dir: Path, result: str) -> dict[str, Any]:
    """The training stage's record of a finished run (an error naming what is missing)."""
    path = run_dir / RECORD
    if not (run_dir / result).is_dir() or not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} holds no finished training run ({result}/ and {RECORD}); run the "
            "script with --stage train (or all) first"
        )
    return json.loads(path.read_text())


def train_stage(
    config: Any,
    run_dir: Path,
    budget_s: float | None,
    workers: int,
    run: Callable[[Any, Path], TrainState],
    result: str,
    extra: Callable[[Any], dict[str, Any]],
) -> TrainState:
    """Write the synthetic shards, fit the steps to `budget_s`, train with `run` (into
    ``<run_dir>/<result>``) and record the finished run with `extra(config)` added."""
    started = time.perf_counter()
    data = prepare_synthetic_shards(config.data, run_dir, PartialState(), workers)
    config = replace(config, data=data)
    data_seconds = time.perf_counter() - started
    print(f"synthetic shards ready after {data_seconds:.1f} s", flush=True)
    budget = None
    if budget_s is not None and not (run_dir / result).is_dir():
        budget = steps_for_budget(config, run_dir, budget_s, run)
        config = replace(config, loop=replace(config.loop, max_steps=budget["max_steps"]))
    started = time.perf_counter()
    state = run(config, run_dir)
    train_seconds = time.perf_counter() - started
    print(state.summary(run_dir / result), flush=True)
    if not state.stopped and not state.already_finished:
        record = {
            "resolved_config": to_dict(config),
            "steps": state.step,
            "skipped_steps": state.skipped_steps,
            "data_seconds": round(data_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "budget": budget,
        }
        write_train_record(run_dir, {**record, **extra(config)})
    return state


def main(
    description: str,
    defaults: tuple[Path, Path],
    load: Callable[[Path, list[str]], Any],
    run: Callable[[Any, Path], TrainState],
    result: str,
    package: Callable[[Path, Path], None],
    extra: Callable[[Any], dict[str, Any]] = lambda config: {},
) -> None:
    """Parse the command line, then run the training stage, the packaging stage or both.

    `defaults` are the config file and the run folder; `load(path, overrides)` reads the config;
    `run` trains into ``<run-dir>/<result>``; `package(config_path, run_dir)` packages.
    """
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser, *defaults)
    args = parser.parse_args()
    if args.stage in ("all", "train"):
        config = load(args.config, args.overrides)
        state = train_stage(
            config, args.run_dir, args.budget_s, args.data_workers, run, result, extra
        )
        if state.stopped:
            raise SystemExit(state.exit_code or 1)
    if args.stage in ("all", "package"):
        package(args.config, args.run_dir)
