"""Streaming readers of scene shards: the WebDataset pipelines of training and evaluation.

All pipelines are ``wds.DataPipeline`` objects (iterable datasets) whose stages run inside the
DataLoader workers: shard URLs -> tar members -> samples grouped by key (``group_by_keys``) ->
scenes (:func:`lagernvs.data.shards.parse_sample`) -> [shuffle buffer] -> view selection and
preprocessing -> batches. Put them in a ``DataLoader(stream, batch_size=None, num_workers=N)``
(or :class:`StreamLoader`).

* :class:`SceneStream` yields :class:`ShardScene` (cameras + encoded frames).
* :class:`TrainingStream`: resampled shards (an endless stream drawn from (seed, epoch)) split
  by node and by worker, a shuffle buffer, :class:`TrainViewSampler` views; every batch shares one
  :class:`BatchLayout` (number of conditioning views and image size), drawn per batch.
* :class:`EvaluationStream`: not resampled; each scene is visited by exactly one (rank, worker):
  shards are dealt out when there are at least as many as (ranks x workers), otherwise every
  worker reads all shards and keeps every (ranks x workers)-th sample. Views come from a fixed
  index (:class:`FixedViewSelector`); scenes absent from the index are skipped.

Rank and world size come from ``torch.distributed`` when initialised and the worker from
``torch.utils.data.get_worker_info``; each can be given explicitly (tests simulate ranks and
workers in one process). A corrupt sample (unreadable cameras, missing or undecodable frames) is
skipped with a :class:`DataWarning` and counted in :class:`DataErrors`; a shard that cannot be
opened or read to its end is reported by URL and counted; neither stops the stream.
URLs: a shard folder (its ``index.json`` lists the shards), brace patterns
(``shard-{000000..000009}.tar``), lists, and ``pipe:``, ``gs://``, ``http(s)://`` URLs handled by
webdataset's ``gopen``; ``s3://`` becomes webdataset's ``pipe:aws s3 cp URL -`` idiom.
"""

from __future__ import annotations

import multiprocessing
import random
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader
from webdataset.tariterators import group_by_keys, tar_file_iterator

from lagernvs.data.preprocess import MAX_SCENE_SCALE_RATIO, preprocess_views, reference_c2w
from lagernvs.data.scene import Scene
from lagernvs.data.shards import ShardScene, parse_sample, read_index
from lagernvs.data.views import (
    BatchLayout,
    FixedViewSelector,
    SceneTooShortError,
    TrainViewSampler,
    ViewSelection,
    make_generator,
)

__all__ = [
    "DataErrors",
    "DataWarning",
    "EvaluationStream",
    "SceneStream",
    "StreamLoader",
    "StreamPosition",
    "TrainingStream",
    "collate_samples",
    "resolve_urls",
    "stream_position",
]

_MAX_VIEW_DRAWS = 3  # draws of views per training scene while the scale ratio is degenerate
_MAX_CONSECUTIVE_FAILURES = 1000  # an endless stream gives up when nothing can be read


class DataWarning(UserWarning):
    """A sample or shard was skipped; the stream goes on."""


class DataErrors:
    """Counts of skipped samples and shards, shared by the DataLoader worker processes."""

    def __init__(self) -> None:
        self._samples = multiprocessing.Value("q", 0)
        self._shards = multiprocessing.Value("q", 0)

    @property
    def corrupt_samples(self) -> int:
        """Samples skipped because their cameras or frames could not be read."""
        return int(self._samples.value)

    @property
    def unreadable_shards(self) -> int:
        """Shards that could not be opened or were truncated."""
        return int(self._shards.value)

    def sample_failed(self, error: BaseException, where: str = "") -> bool:
        """Warn about a corrupt sample, count it; True tells webdataset to continue."""
        with self._samples.get_lock():
            self._samples.value += 1
        prefix = f"{where}: " if where else ""
        warnings.warn(f"skipping corrupt sample: {prefix}{error}", DataWarning, stacklevel=2)
        return True

    def shard_failed(self, url: str, error: BaseException) -> None:
        """Warn about a shard that cannot be opened or read (named by its URL), count it."""
        with self._shards.get_lock():
            self._shards.value += 1
        warnings.warn(
            f"skipping unreadable shard {url}: {type(error).__name__}: {error}",
            DataWarning,
            stacklevel=2,
        )


@dataclass(frozen=True)
class StreamPosition:
    """Where a stream runs: process `rank` of `world_size`, DataLoader `worker` of `num_workers`."""

    rank: int
    world_size: int
    worker: int
    num_workers: int

    @property
    def global_worker(self) -> int:
        return self.rank * self.num_workers + self.worker

    @property
    def total_workers(self) -> int:
        return self.world_size * self.num_workers


def stream_position(
    rank: int | None = None,
    world_size: int | None = None,
    worker: int | None = None,
    num_workers: int | None = None,
) -> StreamPosition:
    """Resolve the position: explicit values, else torch.distributed and the DataLoader worker."""
    if rank is None or world_size is None:
        dist = torch.distributed
        initialised = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if initialised else 0
        if world_size is None:
            world_size = dist.get_world_size() if initialised else 1
    if worker is None or num_workers is None:
        info = torch.utils.data.get_worker_info()
        worker = (info.id if info else 0) if worker is None else worker
        num_workers = (info.num_workers if info else 1) if num_workers is None else num_workers
    if not (0 <= rank < world_size and 0 <= worker < num_workers):
        raise ValueError(
            f"invalid stream position rank={rank}/{world_size}, worker={worker}/{num_workers}; "
            "rank and worker must be in [0, world_size) and [0, num_workers)"
        )
    return StreamPosition(int(rank), int(world_size), int(worker), int(num_workers))


def resolve_urls(urls: str | Path | Iterable[str | Path]) -> list[str]:
    """Shard URLs of a shard folder (via ``index.json``), a brace pattern or a list of URLs."""
    if isinstance(urls, (str, Path)):
        text = str(urls)
        if "://" not in text and not text.startswith("pipe:") and Path(text).is_dir():
            folder = Path(text)
            return [str(folder / name) for name in sorted(read_index(folder)["shards"])]
        expanded = wds.shardlists.expand_urls(text)
    else:
        expanded = [str(url) for url in urls]
    if not expanded:
        raise ValueError("no shard URLs given; pass a shard folder, a pattern or a list of URLs")
    return [_s3_to_pipe(url) for url in expanded]


def _s3_to_pipe(url: str) -> str:
    if url.startswith("s3://") and "s3" not in wds.gopen_schemes:
        return f"pipe:aws s3 cp {url} -"
    return url


def _child_generators(seed: int, epoch: int, position: StreamPosition, n: int) -> list:
    base = make_generator(seed, epoch, position.rank, position.worker)
    return base.spawn(n)


class SceneStream(wds.DataPipeline):
    """Scenes (:class:`ShardScene`) streamed from WebDataset shards.

    Args:
        urls: shard folder, URL pattern or list (see :func:`resolve_urls`).
        resampled: endless stream of shards drawn with replacement from (seed, epoch), split by
            node and worker (training); else each scene once across all ranks and workers.
        shuffle_buffer: size of the per-worker shuffle buffer of scenes (0: no shuffling).
        seed: seed of shard resampling, shuffling and view selection (with epoch, rank, worker).
        rank, world_size, worker, num_workers: explicit stream position (see
            :func:`stream_position`); None reads torch.distributed and the DataLoader worker.
        errors: counters of skipped samples and shards (a new :class:`DataErrors` if None).
    """

    def __init__(
        self,
        urls: str | Path | Iterable[str | Path],
        *,
        resampled: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        worker: int | None = None,
        num_workers: int | None = None,
        errors: DataErrors | None = None,
    ) -> None:
        super().__init__()
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.urls = resolve_urls(urls)
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.seed = int(seed)
        self.epoch = 0
        self.errors = errors if errors is not None else DataErrors()
        self._position = (rank, world_size, worker, num_workers)
        group = wds.filters.pipelinefilter(group_by_keys)
        self.append(self._shard_urls)
        self.append(self._read_shards)
        self.append(group(handler=self._group_failed))
        self.append(self._split_samples)
        self.append(self._shuffle)
        self.append(wds.map(parse_sample, handler=self.errors.sample_failed))

    def set_epoch(self, epoch: int) -> None:
        """Select the (reproducible) shard order, shuffling and views of another epoch."""
        self.epoch = int(epoch)

    def position(self) -> StreamPosition:
        """This process' and worker's position (call inside the worker)."""
        return stream_position(*self._position)

    def _splits_shards(self, position: StreamPosition) -> bool:
        return self.resampled or len(self.urls) >= position.total_workers

    def _shard_urls(self) -> Iterator[dict[str, str]]:
        position = self.position()
        if self.resampled:  # one endless draw shared by all, dealt out by node and worker
            seq = np.random.SeedSequence([self.seed, self.epoch], spawn_key=(1,))
            rng = np.random.default_rng(seq)
            draws = (self.urls[int(i)] for batch in _endless(rng, len(self.urls)) for i in batch)
        else:
            draws = iter(self.urls)
        if self._splits_shards(position):
            draws = islice(draws, position.global_worker, None, position.total_workers)
        for url in draws:
            yield {"url": url}

    def _read_shards(self, sources: Iterable[dict[str, str]]) -> Iterator[dict[str, Any]]:
        """Tar members of each shard, then an end-of-shard marker; failures reported by URL."""
        failures = 0
        for source in sources:
            url = source["url"]
            self._check_failures(url, failures)
            try:
                stream = wds.gopen(url, "rb")
            except Exception as error:  # noqa: BLE001 (any opener failure skips the shard)
                self.errors.shard_failed(url, error)
                failures += 1
                continue
            ok = True
            try:
                for member in tar_file_iterator(stream):
                    member["__url__"] = url
                    yield member
            except Exception as error:  # noqa: BLE001 (truncated or garbled tar)
                self.errors.shard_failed(url, error)
                ok = False
            finally:
                try:
                    stream.close()
                except Exception as error:  # noqa: BLE001 (a failed pipe: command)
                    self.errors.shard_failed(url, error)
                    ok = False
            failures = 0 if ok else failures + 1
            yield {}  # webdataset's end-of-shard marker: never merge samples across shards

    def _check_failures(self, url: str, failures: int) -> None:
        """Stop an endless stream that has not read any shard for a long time."""
        if self.resampled and failures >= max(_MAX_CONSECUTIVE_FAILURES, 10 * len(self.urls)):
            raise RuntimeError(
                f"{failures} shards in a row could not be read (next {url}); check the shard "
                "URLs, the network and credentials"
            )

    def _group_failed(self, error: BaseException) -> bool:
        return self.errors.sample_failed(error, "cannot group tar members")

    def _split_samples(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        position = self.position()
        if self._splits_shards(position):
            yield from samples
        else:
            yield from islice(samples, position.global_worker, None, position.total_workers)

    def _shuffle(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        if self.shuffle_buffer <= 1:
            yield from samples
            return
        rng = _child_generators(self.seed, self.epoch, self.position(), 2)[0]
        initial = max(1, self.shuffle_buffer // 2)
        python_rng = random.Random(int(rng.integers(2**63)))
        yield from wds.shuffle(self.shuffle_buffer, initial, rng=python_rng)(samples)


def _endless(rng: np.random.Generator, n: int, chunk: int = 1024) -> Iterator[np.ndarray]:
    while True:
        yield rng.integers(0, n, size=chunk)


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
    shard_scene: ShardScene,
    selection: ViewSelection,
    image_size: tuple[int, int],
    split: str,
    zero_cond_cameras: bool,
) -> dict[str, Any]:
    views = shard_scene.scene.select(selection.indices)
    sample = preprocess_views(
        shard_scene.decode(selection.indices),
        reference_c2w(views.c2w),
        views.fxfycxcy,
        image_size,
        num_cond_views=len(selection.context),
        split=split,
        zero_cond_cameras=zero_cond_cameras,
        image_ids=_image_ids(views),
    )
    sample["scene_id"] = shard_scene.scene.scene_id
    return sample


def _where(shard_scene: ShardScene) -> str:
    return f"scene {shard_scene.scene.scene_id!r} (sample {shard_scene.key!r} of {shard_scene.url})"


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

    def _batches(self, scenes: Iterable[ShardScene]) -> Iterator[dict[str, Any]]:
        rng = _child_generators(self.seed, self.epoch, self.position(), 2)[1]
        layout: BatchLayout | None = None
        batch: list[dict[str, Any]] = []
        passed = 0
        for shard_scene in scenes:
            if passed >= _MAX_CONSECUTIVE_FAILURES:
                raise RuntimeError(
                    f"{passed} scenes in a row gave no training sample (last {_where(shard_scene)}"
                    "): too short for the sampler's context gap, degenerate cameras or corrupt; "
                    "check the sampler configuration and the data"
                )
            layout = layout or self.sampler.sample_layout(rng)
            try:
                sample = self._draw(shard_scene, layout, rng)
            except SceneTooShortError:
                sample = None
            except Exception as error:  # noqa: BLE001 (undecodable frames, bad cameras)
                self.errors.sample_failed(error, _where(shard_scene))
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
        self, shard_scene: ShardScene, layout: BatchLayout, rng: np.random.Generator
    ) -> dict[str, Any] | None:
        num_frames = shard_scene.scene.num_frames
        for _ in range(_MAX_VIEW_DRAWS):
            selection = self.sampler.sample_views(num_frames, layout.num_cond_views, rng)
            zero = self.sampler.sample_zero_cameras(rng)
            sample = _sample_from(shard_scene, selection, layout.image_size, "train", zero)
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

    def _samples(self, scenes: Iterable[ShardScene]) -> Iterator[dict[str, Any]]:
        for shard_scene in scenes:
            scene = shard_scene.scene
            if scene.scene_id not in self.views:
                continue
            try:
                entries = self.views.select(scene.scene_id, scene.num_frames)
                samples = [
                    _sample_from(shard_scene, e, self.image_size, "test", self.zero_cond_cameras)
                    for e in entries
                ]
            except Exception as error:  # noqa: BLE001 (undecodable frames, index mismatch)
                self.errors.sample_failed(error, _where(shard_scene))
                continue
            yield from samples

    def _batches(self, scenes: Iterable[ShardScene]) -> Iterator[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        for sample in self._samples(scenes):
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


class StreamLoader:
    """Endless, resumable batches of a :class:`TrainingStream` through a DataLoader.

    Implements the trainer's ``BatchStream`` protocol. The state is the epoch and the number
    of batches handed out; resuming starts the next epoch (a fresh, reproducible segment of the
    stream) instead of replaying the consumed batches.
    """

    def __init__(
        self,
        stream: SceneStream,
        num_workers: int = 0,
        loader_factory: Callable[..., DataLoader] = DataLoader,
        **loader_kwargs: Any,
    ) -> None:
        self.stream = stream
        self.num_workers = num_workers
        self._factory = loader_factory
        self._kwargs = loader_kwargs
        self._batches = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            loader = self._factory(
                self.stream, batch_size=None, num_workers=self.num_workers, **self._kwargs
            )
            for batch in loader:
                self._batches += 1
                yield batch
            self.stream.set_epoch(self.stream.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.stream.epoch, "batches": self._batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.set_epoch(int(state["epoch"]) + 1)
        self._batches = int(state["batches"])
