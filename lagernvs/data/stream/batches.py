"""Batches of preprocessed views from streamed scenes: the training and evaluation streams.

* :class:`TrainingStream`: resampled shards (an endless stream drawn from (seed, epoch)) split
  by node and by worker, a shuffle buffer, :class:`~lagernvs.data.views.TrainViewSampler` views;
  every batch shares one :class:`~lagernvs.data.views.BatchLayout` (number of conditioning views
  and image size), drawn per batch.
* :class:`EvaluationStream`: not resampled; each scene is visited by exactly one (rank, worker):
  shards are dealt out when there are at least as many as (ranks x workers), otherwise every
  worker reads all shards and keeps every (ranks x workers)-th sample. Views come from a fixed
  index (:class:`~lagernvs.data.views.FixedViewSelector`); scenes absent from it are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lagernvs.data.preprocess import MAX_SCENE_SCALE_RATIO, preprocess_views, reference_c2w
from lagernvs.data.scene import Scene
from lagernvs.data.shards import ShardRecord
from lagernvs.data.stream.errors import StreamFailure
from lagernvs.data.stream.position import child_generators
from lagernvs.data.stream.scenes import MAX_CONSECUTIVE_FAILURES, SceneStream
from lagernvs.data.views import (
    BatchLayout,
    FixedViewSelector,
    SceneTooShortError,
    TrainViewSampler,
    ViewSelection,
)

_MAX_VIEW_DRAWS = 3  # draws of views per training scene while the scale ratio is degenerate


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack preprocessed samples into a batch; lists for names, one int for shared counts."""
    batch: dict[str, Any] = {}
    for key, first in samples[0].items():
        values = [sample[key] for sample in samples]
        if isinstance(first, torch.Tensor):
            batch[key] = torch.stack(values)
        elif key == "num_cond_views":
            if len(set(values)) != 1:
                raise ValueError(f"a batch must share num_cond_views, got {values}")
            batch[key] = first
        else:
            batch[key] = values
    batch["is_valid"] = batch["is_valid"].reshape(-1)
    return batch


def _image_ids(scene: Scene) -> list[str]:
    """``<scene>_<file name without .jpg>`` like the reference (PNG names keep ``.png``)."""
    return [f"{scene.scene_id}_{p.name.removesuffix('.jpg')}" for p in scene.image_paths]


def _sample_from(
    record: ShardRecord,
    selection: ViewSelection,
    image_size: tuple[int, int],
    split: str,
    zero_cond_cameras: bool,
) -> dict[str, Any]:
    views = record.scene.select(selection.indices)
    sample = preprocess_views(
        record.decode(selection.indices),
        reference_c2w(views.c2w),
        views.fxfycxcy,
        image_size,
        num_cond_views=len(selection.context),
        split=split,
        zero_cond_cameras=zero_cond_cameras,
        image_ids=_image_ids(views),
    )
    sample["scene_id"] = record.scene.scene_id
    return sample


def _where(record: ShardRecord) -> str:
    return f"scene {record.scene.scene_id!r} (sample {record.key!r} of {record.url})"


class TrainingStream(SceneStream):
    """Endless training batches: resampled shards, shuffle buffer, sampled views, one layout per
    batch.

    Each batch holds ``batch_size`` samples of :func:`preprocess_views` (split ``train``) with
    the same number of conditioning views and image size (one :class:`BatchLayout` drawn per
    batch), stacked by :func:`collate_samples`, plus ``scene_id``. Scenes too short for the
    layout are passed over; views are redrawn (up to 3 times, then the scene is passed over)
    while their scene-scale ratio is NaN or above 1e4 (reference rule); ``is_valid`` is kept as
    computed. After 1000 scenes in a row without a sample the stream raises. Everything is
    reproducible from (seed, epoch, rank, worker).
    """

    def __init__(
        self,
        urls: str | Path | Iterable[str | Path],
        sampler: TrainViewSampler,
        batch_size: int,
        *,
        shuffle_buffer: int = 256,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(urls, resampled=True, shuffle_buffer=shuffle_buffer, seed=seed, **kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.append(self._batches)

    def _batches(self, records: Iterable[ShardRecord]) -> Iterator[dict[str, Any]]:
        rng = child_generators(self.seed, self.epoch, self.position(), 2)[1]
        layout: BatchLayout | None = None
        batch: list[dict[str, Any]] = []
        passed = 0
        for record in records:
            if passed >= MAX_CONSECUTIVE_FAILURES:
                raise StreamFailure(
                    f"{passed} scenes in a row gave no training sample (last {_where(record)}"
                    "): too short for the sampler's context gap, degenerate cameras or corrupt; "
                    "check the sampler configuration and the data"
                )
            layout = layout or self.sampler.draw_layout(rng)
            try:
                sample = self._draw(record, layout, rng)
            except SceneTooShortError:
                sample = None
            except Exception as error:  # noqa: BLE001 (undecodable frames, bad cameras)
                self.errors.sample_failed(error, _where(record))
                sample = None
            if sample is None:
                passed += 1
                continue
            passed = 0
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield collate_samples(batch)
                batch, layout = [], None

    def _draw(
        self, record: ShardRecord, layout: BatchLayout, rng: np.random.Generator
    ) -> dict[str, Any] | None:
        num_frames = record.scene.num_frames
        for _ in range(_MAX_VIEW_DRAWS):
            selection = self.sampler.draw_views(num_frames, layout.num_cond_views, rng)
            zero = self.sampler.draw_zero_cameras(rng)
            sample = _sample_from(record, selection, layout.image_size, "train", zero)
            if float(sample["scene_scale_ratio"]) <= MAX_SCENE_SCALE_RATIO:  # False for NaN
                return sample
        return None


class EvaluationStream(SceneStream):
    """Evaluation batches over fixed views: every indexed scene once across ranks and workers.

    A scene with several index entries yields one sample per entry. Consecutive samples with the
    same number of conditioning and target views form batches of up to ``batch_size`` (the last
    ones may be smaller). Samples keep ``is_valid`` as computed (the reference reports it).
    """

    def __init__(
        self,
        urls: str | Path | Iterable[str | Path],
        views: FixedViewSelector,
        batch_size: int = 1,
        *,
        image_size: tuple[int, int] = (256, 256),
        zero_cond_cameras: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("resampled") or kwargs.get("shuffle_buffer"):
            raise ValueError("evaluation streams are neither resampled nor shuffled")
        super().__init__(urls, **kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.views = views
        self.batch_size = batch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.zero_cond_cameras = zero_cond_cameras
        self.append(self._batches)

    def _samples(self, records: Iterable[ShardRecord]) -> Iterator[dict[str, Any]]:
        for record in records:
            scene = record.scene
            if scene.scene_id not in self.views:
                continue
            try:
                entries = self.views.select(scene.scene_id, scene.num_frames)
                samples = [
                    _sample_from(record, e, self.image_size, "test", self.zero_cond_cameras)
                    for e in entries
                ]
            except Exception as error:  # noqa: BLE001 (undecodable frames, index mismatch)
                self.errors.sample_failed(error, _where(record))
                continue
            yield from samples

    def _batches(self, records: Iterable[ShardRecord]) -> Iterator[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        for sample in self._samples(records):
            if batch and (
                len(batch) == self.batch_size or _layout_key(batch[0]) != _layout_key(sample)
            ):
                yield collate_samples(batch)
                batch = []
            batch.append(sample)
        if batch:
            yield collate_samples(batch)


def _layout_key(sample: dict[str, Any]) -> tuple[int, tuple[int, ...]]:
    return sample["num_cond_views"], tuple(sample["images"].shape)
