"""Which frames of a scene become context (conditioning) and target views.

* Evaluation: fixed index files in three formats, read by :func:`read_view_index`:
  pixelSplat / LagerNVS (``{scene: {"context": [...], "target": [...]}}``, ``null`` scenes
  skipped), latentSplat (``{scene: [{"context": ..., "target": ...}, ...]}``, empty lists
  skipped) and DL3DV (pixelSplat structure keyed by ``<batch>/<hash>`` or a bare 64-hex hash).
  Indices refer to the scene's frames sorted by file name.
* Training: :class:`TrainViewSampler` draws views following the paper's training recipe:
  context gap range, jittered context frames, targets from the context span widened by an
  expansion factor, a context view repeated as a target with some probability, a weighted
  number of conditioning views, camera zeroing and random aspect ratios. All randomness comes
  from an explicit ``numpy.random.Generator`` (:func:`make_generator` derives it from seed,
  epoch, rank and worker); the global RNGs are never touched.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "INDEX_FORMATS",
    "SAMPLER_PRESETS",
    "BatchLayout",
    "FixedViewSelector",
    "IndexEntry",
    "SceneTooShortError",
    "TrainViewSampler",
    "ViewSamplerConfig",
    "ViewSelection",
    "detect_index_format",
    "make_generator",
    "read_view_index",
    "sampler_preset",
]

INDEX_FORMATS = ("pixelsplat", "latentsplat", "dl3dv")
_DL3DV_KEY = re.compile(r"^(?:[^/]+/)?[0-9a-f]{64}$")


@dataclass(frozen=True)
class ViewSelection:
    """Frame indices of the context views (conditioning, in model order) and target views."""

    context: tuple[int, ...]
    target: tuple[int, ...]

    @property
    def indices(self) -> list[int]:
        """Context then target indices: the order of the views in a sample."""
        return [*self.context, *self.target]


@dataclass(frozen=True)
class IndexEntry(ViewSelection):
    """One evaluation sample of an index file: a scene and its views."""

    scene: str = ""


# ----------------------------------------------------------------------------- index files


def detect_index_format(data: Mapping[str, Any]) -> str:
    """``latentsplat`` if scenes map to lists, ``dl3dv`` if keys are DL3DV hashes, else
    ``pixelsplat``."""
    values = [v for v in data.values() if v is not None]
    if values and all(isinstance(v, list) for v in values):
        return "latentsplat"
    if data and all(_DL3DV_KEY.match(k) for k in data):
        return "dl3dv"
    return "pixelsplat"


def _indices(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ValueError(f"{what} must be a list of non-negative frame indices, got {value!r}")
    return tuple(value)


def _entry(scene: str, value: Any, where: str) -> IndexEntry:
    if not isinstance(value, Mapping) or "context" not in value or "target" not in value:
        raise ValueError(f"{where}: expected {{'context': [...], 'target': [...]}}, got {value!r}")
    context = _indices(value["context"], f"{where} context")
    if not context:
        raise ValueError(f"{where}: empty context list")
    return IndexEntry(
        context=context, target=_indices(value["target"], f"{where} target"), scene=scene
    )


def read_view_index(path: str | Path, format: str | None = None) -> list[IndexEntry]:  # noqa: A002
    """Read an evaluation index file into entries, in file order.

    ``format`` is one of ``INDEX_FORMATS`` (``lagernvs`` is an alias of ``pixelsplat``);
    detected by :func:`detect_index_format` when None. Scenes without views (``null``, empty
    list) are skipped; a latentSplat scene with several entries yields several samples.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"view index file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"view index {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"view index {path} must be a JSON object mapping scenes to views")
    if format == "lagernvs":
        format = "pixelsplat"  # noqa: A001
    format = format or detect_index_format(data)  # noqa: A001
    if format not in INDEX_FORMATS:
        raise ValueError(f"unknown view index format {format!r}; use one of {INDEX_FORMATS}")
    entries = []
    for scene, value in data.items():
        if value is None or value == []:
            continue
        where = f"{path.name} scene {scene!r}"
        if format == "latentsplat":
            if not isinstance(value, list):
                raise ValueError(f"{where}: latentSplat format maps scenes to lists of entries")
            entries.extend(_entry(scene, v, f"{where} entry {i}") for i, v in enumerate(value))
        else:
            if isinstance(value, list):
                raise ValueError(f"{where}: got a list; this is a latentSplat file (format=None)")
            if format == "dl3dv" and not _DL3DV_KEY.match(scene):
                raise ValueError(f"{where}: DL3DV keys are '<batch>/<64-hex hash>' or a hash")
            entries.append(_entry(scene, value, where))
    return entries


class FixedViewSelector:
    """Views of an evaluation index, looked up by scene id (for streamed scenes)."""

    def __init__(self, entries: Sequence[IndexEntry]) -> None:
        self._by_scene: dict[str, list[IndexEntry]] = {}
        for entry in entries:
            self._by_scene.setdefault(entry.scene, []).append(entry)

    @classmethod
    def from_file(cls, path: str | Path, format: str | None = None) -> FixedViewSelector:  # noqa: A002
        return cls(read_view_index(path, format=format))

    @property
    def scenes(self) -> list[str]:
        return list(self._by_scene)

    def __contains__(self, scene: str) -> bool:
        return scene in self._by_scene

    def select(self, scene: str, num_frames: int) -> list[IndexEntry]:
        """The entries of ``scene``; raises if an index exceeds its ``num_frames`` frames."""
        if scene not in self._by_scene:
            raise KeyError(f"scene {scene!r} is not in the view index")
        entries = self._by_scene[scene]
        for entry in entries:
            if max(entry.indices) >= num_frames:
                raise ValueError(
                    f"view index asks for frame {max(entry.indices)} of scene {scene!r}, which has "
                    f"{num_frames} frames; the index does not match this dataset version"
                )
        return entries


# ----------------------------------------------------------------------------- training


def make_generator(
    seed: int, epoch: int = 0, rank: int = 0, worker: int = 0
) -> np.random.Generator:
    """Independent, reproducible generator for one (seed, epoch, rank, worker) stream."""
    for name, value in (("seed", seed), ("epoch", epoch), ("rank", rank), ("worker", worker)):
        if int(value) < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, rank, worker])))


class SceneTooShortError(ValueError):
    """The scene has too few frames for the requested views; the stream should skip it."""


@dataclass(frozen=True)
class ViewSamplerConfig:
    """Training view selection (one dataset of one recipe).

    Attributes:
        context_gap: (min, max) frame distance between the first and last context view.
        num_targets: target views per sample.
        expansion_factor: targets come from [first - e*gap, last + e*gap] (clipped to the scene).
        context_as_target_prob: probability that one target is replaced by a context view.
        cond_view_weights: unnormalised weights of the number of conditioning views.
        zero_cameras_prob: probability that a sample's conditioning cameras are zeroed.
        long_side: output size of the longer image side.
        aspect_ratio_range: (min, max) of the width / height ratio, drawn uniformly as the
            official recipe states (so (0.5, 2) gives landscape images 2/3 of the time); (1, 1)
            for square images.
        size_multiple: both image sides are multiples of this (the renderer's patch size).
    """

    context_gap: tuple[int, int]
    num_targets: int
    expansion_factor: float = 0.0
    context_as_target_prob: float = 0.0
    cond_view_weights: Mapping[int, float] = field(default_factory=lambda: {2: 1.0})
    zero_cameras_prob: float = 0.0
    long_side: int = 256
    aspect_ratio_range: tuple[float, float] = (1.0, 1.0)
    size_multiple: int = 8

    def __post_init__(self) -> None:
        lo, hi = self.context_gap
        if not 0 <= lo <= hi:
            raise ValueError(f"context_gap must satisfy 0 <= min <= max, got {self.context_gap}")
        if self.num_targets < 1:
            raise ValueError(f"num_targets must be >= 1, got {self.num_targets}")
        if self.expansion_factor < 0:
            raise ValueError(f"expansion_factor must be >= 0, got {self.expansion_factor}")
        for name in ("context_as_target_prob", "zero_cameras_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        weights = dict(self.cond_view_weights)
        if not weights or any(int(n) < 1 or w < 0 for n, w in weights.items()):
            raise ValueError(f"cond_view_weights needs counts >= 1 and weights >= 0: {weights}")
        if sum(weights.values()) <= 0:
            raise ValueError("cond_view_weights must have a positive total weight")
        a_lo, a_hi = self.aspect_ratio_range
        if not 0 < a_lo <= a_hi:
            raise ValueError(
                f"aspect_ratio_range must be 0 < min <= max: {self.aspect_ratio_range}"
            )
        if self.long_side < self.size_multiple or self.long_side % self.size_multiple:
            raise ValueError(
                f"long_side must be a multiple of size_multiple ({self.size_multiple})"
            )


def _general_cond_weights() -> dict[int, float]:
    # The official general recipe weights 1-10 views non-uniformly, even counts higher; the exact
    # weights are not published, so ours are 2 for even and 1 for odd counts.
    return {n: 2.0 if n % 2 == 0 else 1.0 for n in range(1, 11)}


SAMPLER_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("re10k", "re10k"): dict(
        context_gap=(25, 192), num_targets=6, expansion_factor=0.1, context_as_target_prob=1.0,
        cond_view_weights={2: 1.0}, long_side=256,
    ),
    ("dl3dv", "dl3dv"): dict(
        context_gap=(10, 20), num_targets=8, expansion_factor=1.0, context_as_target_prob=1.0,
        cond_view_weights={n: 1.0 for n in range(2, 7)}, long_side=256,
    ),
    ("general", "re10k"): dict(
        context_gap=(25, 192), num_targets=8, expansion_factor=1.0, context_as_target_prob=0.2,
        cond_view_weights=_general_cond_weights(), zero_cameras_prob=0.4, long_side=512,
        aspect_ratio_range=(0.5, 2.0),
    ),
    ("general", "dl3dv"): dict(
        context_gap=(16, 48), num_targets=8, expansion_factor=1.0, context_as_target_prob=0.2,
        cond_view_weights=_general_cond_weights(), zero_cameras_prob=0.4, long_side=512,
        aspect_ratio_range=(0.5, 2.0),
    ),
}  # fmt: skip
"""(recipe, dataset) -> ViewSamplerConfig arguments of the paper's official training configs."""


def sampler_preset(recipe: str, dataset: str, **overrides: Any) -> ViewSamplerConfig:
    """The sampler configuration of an official recipe for one dataset, with overrides."""
    key = (recipe, dataset)
    if key not in SAMPLER_PRESETS:
        raise ValueError(f"no sampler preset {key}; available: {sorted(SAMPLER_PRESETS)}")
    return ViewSamplerConfig(**{**SAMPLER_PRESETS[key], **overrides})


@dataclass(frozen=True)
class BatchLayout:
    """What all samples of one batch share: number of conditioning views and image size."""

    num_cond_views: int
    image_size: tuple[int, int]


class TrainViewSampler:
    """Draws training views from a :class:`ViewSamplerConfig` with an explicit generator.

    Per batch: :meth:`draw_layout` (number of conditioning views, image size). Per sample:
    :meth:`draw_views` and :meth:`draw_zero_cameras`.
    """

    def __init__(self, config: ViewSamplerConfig) -> None:
        self.config = config
        weights = dict(sorted(config.cond_view_weights.items()))
        self._counts = np.array(list(weights), dtype=np.int64)
        probs = np.array(list(weights.values()), dtype=np.float64)
        self._probs = probs / probs.sum()

    @property
    def cond_view_probs(self) -> dict[int, float]:
        """Normalised distribution of the number of conditioning views."""
        return {int(n): float(p) for n, p in zip(self._counts, self._probs, strict=True)}

    def min_frames(self, num_cond_views: int) -> int:
        """Fewest frames a scene needs for ``num_cond_views`` context views."""
        return max(self.config.context_gap[0], num_cond_views - 1) + 1

    def draw_num_cond_views(self, rng: np.random.Generator) -> int:
        return int(rng.choice(self._counts, p=self._probs))

    def draw_image_size(self, rng: np.random.Generator) -> tuple[int, int]:
        """(h, w): long side fixed, aspect w/h uniform in the range, sides multiples of 8."""
        cfg = self.config
        lo, hi = cfg.aspect_ratio_range
        aspect = float(rng.uniform(lo, hi)) if hi > lo else lo
        short = max(1, round(cfg.long_side / max(aspect, 1.0 / aspect) / cfg.size_multiple))
        short *= cfg.size_multiple
        return (short, cfg.long_side) if aspect >= 1.0 else (cfg.long_side, short)

    def draw_layout(self, rng: np.random.Generator) -> BatchLayout:
        return BatchLayout(self.draw_num_cond_views(rng), self.draw_image_size(rng))

    def draw_zero_cameras(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < self.config.zero_cameras_prob)

    def draw_views(
        self, num_frames: int, num_cond_views: int, rng: np.random.Generator
    ) -> ViewSelection:
        """Context and target frame indices for one scene of ``num_frames`` frames.

        The gap between the first and last context frame is uniform in ``context_gap`` (at
        least ``num_cond_views - 1``, at most ``num_frames - 1``) and the span's position is
        uniform. The outer context views sit on the span's ends; the inner ones are jittered:
        the interior is cut into ``num_cond_views - 2`` equal strata with one uniform frame in
        each (distinct, ordered). Targets are distinct frames uniform in the span widened by
        ``expansion_factor * gap`` on both sides (clipped; repeated only if the span is too
        short); with ``context_as_target_prob`` one of them is replaced by a context view.

        Raises:
            SceneTooShortError: the scene has fewer than :meth:`min_frames` frames.
        """
        cfg = self.config
        if num_cond_views < 1:
            raise ValueError(f"num_cond_views must be >= 1, got {num_cond_views}")
        gap_lo = max(cfg.context_gap[0], num_cond_views - 1)
        gap_hi = min(cfg.context_gap[1], num_frames - 1)
        if gap_hi < gap_lo:
            raise SceneTooShortError(
                f"scene with {num_frames} frames is too short for {num_cond_views} context views "
                f"with a gap of at least {gap_lo} frames"
            )
        gap = int(rng.integers(gap_lo, gap_hi + 1))
        start = int(rng.integers(0, num_frames - gap))
        end = start + gap
        if num_cond_views == 1:
            context = [start]
        else:
            inner = num_cond_views - 2
            edges = start + 1 + np.floor(np.linspace(0, gap - 1, inner + 1)).astype(np.int64)
            picks = rng.integers(edges[:-1], edges[1:]) if inner else np.zeros(0, np.int64)
            context = [start, *picks.tolist(), end]

        margin = math.floor(cfg.expansion_factor * gap)
        lo, hi = max(0, start - margin), min(num_frames - 1, end + margin)
        span = hi - lo + 1
        targets = lo + rng.choice(span, size=cfg.num_targets, replace=span < cfg.num_targets)
        targets = np.sort(targets)
        if rng.random() < cfg.context_as_target_prob:
            targets[rng.integers(cfg.num_targets)] = context[rng.integers(num_cond_views)]
        return ViewSelection(context=tuple(context), target=tuple(int(t) for t in targets))
