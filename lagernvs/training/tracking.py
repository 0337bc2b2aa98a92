"""What a run reports: scalar logs, image grids and one-line notices.

Scalars always go to `<logging_dir>/metrics.jsonl` (:class:`JsonlTracker`, no extra dependency);
TensorBoard is an optional extra, used when installed (`loop.log_with: auto`) or required
(`loop.log_with: tensorboard`). Image grids go to every tracker that takes images, else to PNG
files under `<logging_dir>/images`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.tracking import GeneralTracker
from accelerate.utils import is_tensorboard_available
from torch import Tensor
from torchvision.utils import make_grid, save_image
from tqdm.auto import tqdm

__all__ = [
    "GRID_IMAGES",
    "TENSORBOARD_OFF",
    "JsonlTracker",
    "flat_hparams",
    "log_image_grid",
    "notice",
    "read_metrics",
    "use_tensorboard",
]

GRID_IMAGES = 8
TENSORBOARD_OFF = (
    "TensorBoard logging is off (tensorboard is not installed; `pip install tensorboard` to turn "
    "it on); metrics go to {path}"
)


class JsonlTracker(GeneralTracker):
    """Accelerate tracker appending scalar logs to `<logging_dir>/metrics.jsonl` (no extra deps)."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, logging_dir: str | Path) -> None:
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        """Hyperparameters are written by the entry point next to the run; nothing to do."""

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": step, **{k: _to_float(v) for k, v in values.items()}}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _to_float(value: Any) -> Any:
    return value.item() if isinstance(value, Tensor) else value


def read_metrics(logging_dir: str | Path) -> list[dict[str, Any]]:
    """Records of `JsonlTracker`, the last one kept per (step, keys) after resumes."""
    path = Path(logging_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records: dict[tuple, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        records[(record["step"], tuple(sorted(record)))] = record
    return sorted(records.values(), key=lambda r: r["step"])


def use_tensorboard(log_with: str) -> bool:
    """Whether to log to TensorBoard for `loop.log_with` (an error if required but missing)."""
    if log_with == "tensorboard" and not is_tensorboard_available():
        raise ValueError(
            "config key 'loop.log_with': tensorboard is not installed; `pip install tensorboard` "
            "or set loop.log_with=auto"
        )
    return log_with == "tensorboard" or (log_with == "auto" and is_tensorboard_available())


def notice(message: str) -> None:
    """Print one line for the user, on the main process, without breaking the progress bar."""
    if PartialState().is_main_process:
        tqdm.write(message)


def flat_hparams(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested hyperparameters to scalar `a.b` entries (what trackers accept)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flat_hparams(value, name))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def log_image_grid(
    accelerator: Accelerator,
    logging_dir: Path,
    tag: str,
    outputs: dict[str, Tensor],
    step: int,
) -> None:
    """Targets (top row) and predictions (bottom row) of the first images, main process only."""
    if "prediction" not in outputs or "target" not in outputs:
        return
    if not accelerator.is_main_process:
        return
    pred = outputs["prediction"].detach().float().flatten(0, -4)[:GRID_IMAGES].clamp(0, 1)
    target = outputs["target"].detach().float().flatten(0, -4)[: len(pred)].clamp(0, 1)
    grid = make_grid(torch.cat([target, pred]).cpu(), nrow=len(pred), padding=2)
    image_trackers = [t for t in accelerator.trackers if hasattr(t, "log_images")]
    for tracker in image_trackers:
        tracker.log_images({f"{tag}/grid": grid[None]}, step=step)
    if not image_trackers:
        folder = logging_dir / "images"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / f"{tag}-{step:08d}.png")
