"""Where the reference fixtures live: ``LAGERNVS_REFERENCE_FIXTURES`` (absolute, or relative to
the repository root), default ``../shared/fixtures/reference``. A module of its own, so that the
parity tests import it by a name no other folder's conftest shadows."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_fixture_dir() -> Path:
    """Directory of the reference fixtures (env `LAGERNVS_REFERENCE_FIXTURES`, repo-relative)."""
    configured = os.environ.get("LAGERNVS_REFERENCE_FIXTURES", "../shared/fixtures/reference")
    path = Path(configured)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()
