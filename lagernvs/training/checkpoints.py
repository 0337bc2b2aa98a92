"""Checkpoint folders that are complete or absent: atomic writes, rotation, listing.

`<checkpoint_dir>/checkpoint-<step>/` is written to a hidden temporary folder, flushed to disk
(fsync) and renamed only when complete, so a crash while saving never leaves a corrupt latest
checkpoint. Rotation lists the folder, so it survives resumes. What goes inside a checkpoint is
the trainer's business (:meth:`lagernvs.training.trainer.Trainer.save_checkpoint`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from accelerate import Accelerator, PartialState

__all__ = ["list_checkpoints", "remove_stale_temporaries", "save_atomically"]

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Complete checkpoints `checkpoint-<step>` under `checkpoint_dir`, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))
    ]
    return [path for _, path in sorted(found)]


def save_atomically(
    state: Accelerator | PartialState,
    checkpoint_dir: Path,
    step: int,
    write: Callable[[Path], None],
    keep: int | None,
) -> Path:
    """Write `checkpoint-<step>` with `write(folder)` (run on every process), then rotate.

    Keeps the newest `keep` checkpoints (None: all). An existing checkpoint of `step` is kept.
    """
    final = checkpoint_dir / f"checkpoint-{step}"
    if final.exists():
        return final
    temporary = checkpoint_dir / f".tmp-checkpoint-{step}"
    if state.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    state.wait_for_everyone()
    write(temporary)
    state.wait_for_everyone()
    if state.is_main_process:
        _fsync_tree(temporary)
        os.rename(temporary, final)
        _fsync_dir(checkpoint_dir)
        _rotate(checkpoint_dir, keep)
    state.wait_for_everyone()
    return final


def remove_stale_temporaries(state: Accelerator | PartialState, checkpoint_dir: Path) -> None:
    """Delete the temporary folders a crash left behind (main process; everyone waits)."""
    if state.is_main_process and checkpoint_dir.is_dir():
        for stale in checkpoint_dir.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    state.wait_for_everyone()


def _rotate(checkpoint_dir: Path, keep: int | None) -> None:
    if keep is None:
        return
    for old in list_checkpoints(checkpoint_dir)[:-keep]:
        doomed = old.with_name(f".tmp-delete-{old.name}")
        os.rename(old, doomed)
        shutil.rmtree(doomed)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
