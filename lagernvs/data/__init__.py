"""Data: scene readers, reference-exact preprocessing, view selection (and shards, synthetic).

Main entry points: :func:`load_scene` / :func:`list_scenes` (`readers/`),
:func:`preprocess_views` and :class:`Re10kEvalDataset` (`preprocess.py`),
:func:`read_view_index` and :class:`TrainViewSampler` (`views.py`).
"""

from lagernvs.data.preprocess import Re10kEvalDataset, preprocess_views
from lagernvs.data.readers import SCENE_FORMATS, detect_format, list_scenes, load_scene
from lagernvs.data.scene import Scene
from lagernvs.data.views import (
    FixedViewSelector,
    IndexEntry,
    TrainViewSampler,
    ViewSamplerConfig,
    ViewSelection,
    make_generator,
    read_view_index,
    sampler_preset,
)

__all__ = [
    "SCENE_FORMATS",
    "FixedViewSelector",
    "IndexEntry",
    "Re10kEvalDataset",
    "Scene",
    "TrainViewSampler",
    "ViewSamplerConfig",
    "ViewSelection",
    "detect_format",
    "list_scenes",
    "load_scene",
    "make_generator",
    "preprocess_views",
    "read_view_index",
    "sampler_preset",
]
