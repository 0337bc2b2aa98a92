"""What an evaluation run writes: per-sample records (resumable), summaries, CSV, JSON, grids.

Each finished sample is one JSON line in ``DIR/records/rank<k>.jsonl`` (:class:`ResultStore`);
the main process aggregates every record into the summary: per-target scores averaged per
sample, then over samples (:class:`~lagernvs.evaluation.metrics.SceneMean`). Summaries, CSV
files and grids are written atomically (:func:`lagernvs.io.atomic_path`); a record line cut
short by an interrupt is never read as a record.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lagernvs.evaluation.metrics import SceneMean
from lagernvs.io import atomic_path

__all__ = [
    "Record",
    "ResultStore",
    "grid_name",
    "save_grid",
    "summarize",
    "throughput",
    "write_json",
    "write_per_scene_csv",
]

Record = dict[str, Any]


class ResultStore:
    """Per-sample records as JSON lines, one file per process, read back when a run resumes.

    A line cut short by an interruption is ignored (that sample is evaluated again).
    """

    def __init__(self, folder: Path, rank: int = 0) -> None:
        self.folder = Path(folder)
        self.path = self.folder / f"rank{rank}.jsonl"

    def records(self) -> dict[str, Record]:
        """Every complete record of every process, by sample id.

        A record is complete when its line ends with a newline (written last) and parses.
        """
        found: dict[str, Record] = {}
        for path in sorted(self.folder.glob("rank*.jsonl")):
            *lines, _unfinished = path.read_text(errors="replace").split("\n")
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "sample" in record:
                    found[record["sample"]] = record
        return found

    def _ends_cleanly(self) -> bool:
        """Whether the file is empty or ends with a complete line."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return True
        with self.path.open("rb") as file:
            file.seek(-1, 2)
            return file.read(1) == b"\n"

    def append(self, records: Iterable[Record]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torn = not self._ends_cleanly()
        with self.path.open("a") as file:
            if torn:  # end the line an interruption cut short, so the next record is intact
                file.write("\n")
            for record in records:
                file.write(json.dumps(record) + "\n")
            file.flush()


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def summarize(records: Sequence[Record]) -> dict[str, float | None]:
    """Each score averaged over the targets of a sample, then over samples (NaN skipped)."""
    keys = sorted({key for record in records for key in record["scores"]})
    summary = {}
    for key in keys:
        metric = SceneMean(sync_on_compute=False)  # records are already gathered
        for record in records:
            if key in record["scores"]:
                metric.update(torch.tensor(record["scores"][key], dtype=torch.float64))
        summary[key] = _nan_to_none(float(metric.compute())) if metric.num_scenes else None
    return summary


def throughput(records: Sequence[Record], key: str, per_target: int = 1) -> dict[str, Any]:
    """Images per second and seconds per image from the records' ``key`` timings."""
    timed = [r for r in records if r.get(key) is not None]
    images = sum(len(r["target"]) for r in timed) * per_target
    seconds = sum(r[key] for r in timed)
    return {
        "images_per_second": images / seconds if seconds > 0 else None,
        "seconds_per_image": seconds / images if images else None,
    }


def write_per_scene_csv(path: Path, records: Sequence[Record]) -> None:
    """One row per sample: ids, validity, timing and each score's mean over the targets."""
    keys = sorted({key for record in records for key in record["scores"]})
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["sample", "scene", "is_valid", "num_targets", "seconds", *keys])
        for record in records:
            means = []
            for key in keys:
                values = torch.tensor(record["scores"].get(key, [math.nan]), dtype=torch.float64)
                mean = float(values.nanmean()) if values.numel() else math.nan
                means.append("" if math.isnan(mean) else f"{mean:.6f}")
            writer.writerow(
                [
                    record["sample"],
                    record["scene"],
                    int(record["is_valid"]),
                    len(record["target"]),
                    f"{record['seconds']:.6f}",
                    *means,
                ]
            )


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON, atomically (NaN refused: use None)."""
    text = json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def save_grid(path: Path, rows: Sequence[Tensor], labels: Sequence[str]) -> None:
    """Save rows of (N_i, 3, H, W) images as one PNG grid, each row labelled, atomically."""
    from lagernvs.grids import save_labelled_grid

    save_labelled_grid(path, rows, labels)


def grid_name(sample_id: str) -> str:
    """A file name for a sample's grid (ids may hold '/', e.g. DL3DV ``<batch>/<hash>``)."""
    return "".join(c if c.isalnum() or c in "-_#" else "_" for c in sample_id) + ".png"
