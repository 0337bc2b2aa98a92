"""LagerNVS: real-time feed-forward novel view synthesis.

The public API. Names are imported on first use (module ``__getattr__``), so ``import lagernvs``
and ``lagernvs --help`` stay fast and do not load torch/diffusers until a class is needed.

* :class:`LagerNVSPipeline`, :class:`LagerNVSPipelineOutput`, :class:`EncodedScene`: the
  diffusers pipeline (``encode`` once into an :class:`EncodedScene`, ``render`` many);
  :class:`LagerNVSScene` is the former name of :class:`EncodedScene`, kept as an alias.
* :class:`LagerNVSModel`: the deterministic encoder-renderer.
* :class:`Cameras`: camera batches (OpenCV camera-to-world, pixel intrinsics, image sizes).
* :func:`load_scene`, :class:`Scene`: read captures (Re10k, DL3DV, NeRF, COLMAP, LLFF).
* :func:`load_pipeline`: the one loader (``"demo"``, folders, official checkpoints, presets);
  :func:`demo_pipeline`: the small bundled demo model.
* :mod:`lagernvs.trajectories`: camera paths (spline, orbit, spiral, lemniscate, zooms, dolly-zoom,
  moves, ...).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Cameras": "lagernvs.cameras",
    "EncodedScene": "lagernvs.pipeline",
    "LagerNVSModel": "lagernvs.models",
    "LagerNVSPipeline": "lagernvs.pipeline",
    "LagerNVSPipelineOutput": "lagernvs.pipeline",
    "LagerNVSScene": "lagernvs.pipeline",
    "Scene": "lagernvs.data.scene",
    "demo_pipeline": "lagernvs.pipeline.loading",
    "load_pipeline": "lagernvs.pipeline.loading",
    "load_scene": "lagernvs.data",
}
_SUBMODULES = ("cameras", "data", "models", "pipeline", "trajectories")

__all__ = [
    "Cameras",
    "EncodedScene",
    "LagerNVSModel",
    "LagerNVSPipeline",
    "LagerNVSPipelineOutput",
    "LagerNVSScene",
    "Scene",
    "__version__",
    "cameras",
    "data",
    "demo_pipeline",
    "load_pipeline",
    "load_scene",
    "models",
    "pipeline",
    "trajectories",
]

if TYPE_CHECKING:
    from lagernvs import cameras, data, models, pipeline, trajectories
    from lagernvs.cameras import Cameras
    from lagernvs.data import load_scene
    from lagernvs.data.scene import Scene
    from lagernvs.models import LagerNVSModel
    from lagernvs.pipeline import (
        EncodedScene,
        LagerNVSPipeline,
        LagerNVSPipelineOutput,
        LagerNVSScene,
    )
    from lagernvs.pipeline.loading import demo_pipeline, load_pipeline


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"lagernvs.{name}")
    else:
        raise AttributeError(f"module 'lagernvs' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
