"""Shared last step of the scripts that package bundled assets (demo model, demo denoiser)."""

from __future__ import annotations

import json
from pathlib import Path

MAX_ASSET_BYTES = 25 * 2**20
MAX_BUNDLE_BYTES = 30 * 10**6  # the demo model and denoiser together


def folder_bytes(folder: Path) -> int:
    """Total size of the files under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def finish_asset(folder: Path, config_path: Path, what: str) -> int:
    """Drop the local run path from `config_path`, check `folder` against the size budget.

    Returns the folder's size in bytes.
    """
    config = json.loads(config_path.read_text())
    config.pop("_name_or_path", None)
    config_path.write_text(json.dumps(config, indent=2))
    size = folder_bytes(folder)
    if size > MAX_ASSET_BYTES:
        raise RuntimeError(f"{what} is {size / 2**20:.1f} MiB, over the 25 MiB budget")
    return size


def check_bundle(folders: list[Path]) -> int:
    """Check the bundled assets together against their budget; returns their size in bytes."""
    size = sum(folder_bytes(folder) for folder in folders)
    if size > MAX_BUNDLE_BYTES:
        raise RuntimeError(f"the bundled assets are {size / 1e6:.1f} MB, over the 30 MB budget")
    return size
