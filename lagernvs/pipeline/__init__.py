"""The diffusers pipeline: images (+ cameras) in, novel views out; and the one model loader."""

from lagernvs.pipeline.loading import load_pipeline, resolve_device
from lagernvs.pipeline.pipeline import (
    LagerNVSPipeline,
    LagerNVSPipelineOutput,
    LagerNVSScene,
    load_images,
)

__all__ = [
    "LagerNVSPipeline",
    "LagerNVSPipelineOutput",
    "LagerNVSScene",
    "load_images",
    "load_pipeline",
    "resolve_device",
]
