"""The diffusers pipeline: images (+ cameras) in, novel views out; and the one model loader.

:class:`LagerNVSPipeline` (``pipeline.py``) encodes source views into an :class:`EncodedScene`
and renders target cameras from it (outputs in ``output.py``, input checks in ``inputs.py``);
:func:`load_pipeline` (``loading.py``) turns any model spec into a pipeline.
"""

from lagernvs.data.images import load_images
from lagernvs.pipeline.loading import load_pipeline, resolve_device
from lagernvs.pipeline.output import EncodedScene, LagerNVSPipelineOutput, LagerNVSScene
from lagernvs.pipeline.pipeline import LagerNVSPipeline

__all__ = [
    "EncodedScene",
    "LagerNVSPipeline",
    "LagerNVSPipelineOutput",
    "LagerNVSScene",
    "load_images",
    "load_pipeline",
    "resolve_device",
]
