"""A tiny VGGT-layout camera estimator with random weights, for tests of camera estimation
through the pipeline and the command line (not a test module)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lagernvs.models import camera_estimator
from lagernvs.models.camera_estimator import VGGTCameraEstimator


def tiny_estimator(seed: int = 0) -> VGGTCameraEstimator:
    """Random tiny estimator whose predicted fields of view lie well inside (0, pi)."""
    torch.manual_seed(seed)
    estimator = VGGTCameraEstimator.from_preset("tiny").eval()
    last = estimator.camera_head.pose_branch.fc2
    with torch.no_grad():
        last.weight[7:9] *= 0.05
        last.bias[7:9] = 0.25  # four iterations add up to a FoV near 1 rad
    return estimator


def save_tiny_vggt(path: Path, monkeypatch: pytest.MonkeyPatch) -> VGGTCameraEstimator:
    """Write the tiny estimator as a VGGT checkpoint (``aggregator.*``, ``camera_head.*`` plus a
    head the estimator ignores) and make the VGGT-1B preset tiny, so that loaders that build
    VGGT-1B (``--vggt-weights``, ``vggt_weights=``) read it."""
    estimator = tiny_estimator()
    state = {**estimator.state_dict(), "depth_head.projects.0.weight": torch.zeros(4, 8)}
    torch.save(state, path)
    tiny = camera_estimator.ESTIMATOR_PRESETS["tiny"]
    monkeypatch.setitem(camera_estimator.ESTIMATOR_PRESETS, "vggt_1b", tiny)
    return estimator
