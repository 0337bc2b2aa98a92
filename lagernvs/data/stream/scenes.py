"""Scenes streamed from WebDataset shards: URL resolution, shard reading, splitting, shuffling.

:class:`SceneStream` is a ``wds.DataPipeline`` whose stages run inside the DataLoader workers:
shard URLs -> tar members -> samples grouped by key -> [split by worker] -> [shuffle buffer] ->
:class:`~lagernvs.data.shards.ShardRecord`. A shard that cannot be opened or read to its end is
reported by URL and counted (:class:`~lagernvs.data.stream.errors.DataErrors`), as is a sample
that cannot be parsed; neither stops the stream.
"""

from __future__ import annotations

import random
import tarfile
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_iterator

from lagernvs.data.shards import parse_sample, read_index
from lagernvs.data.stream.errors import DataErrors, StreamFailure
from lagernvs.data.stream.position import StreamPosition, child_generators, stream_position

MAX_CONSECUTIVE_FAILURES = 1000  # an endless stream gives up when nothing can be read


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


def check_readable(urls: str | Path | Iterable[str | Path], what: str) -> None:
    """Raise :class:`StreamFailure` when none of the local shards of ``urls`` opens as a tar.

    Stops at the first readable shard (one header read); remote URLs are not checked. ``what``
    names the shards in the message (e.g. a config key).
    """
    local = [u for u in resolve_urls(urls) if "://" not in u and not u.startswith("pipe:")]
    first_error = ""
    for url in local:
        try:
            with tarfile.open(url) as tar:
                tar.next()
            return
        except (OSError, tarfile.TarError) as error:
            first_error = first_error or f"{url}: {' '.join(str(error).split())}"
    if local:
        raise StreamFailure(
            f"none of the {len(local)} shards of {what} can be read (first: {first_error}); "
            "rewrite them with `lagernvs shards` or fix the path"
        )


def _s3_to_pipe(url: str) -> str:
    if url.startswith("s3://") and "s3" not in wds.gopen_schemes:
        return f"pipe:aws s3 cp {url} -"
    return url


class SceneStream(wds.DataPipeline):
    """Scenes (:class:`ShardRecord`) streamed from WebDataset shards.

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
        if self.resampled and failures >= max(MAX_CONSECUTIVE_FAILURES, 10 * len(self.urls)):
            raise StreamFailure(
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
        rng = child_generators(self.seed, self.epoch, self.position(), 2)[0]
        initial = max(1, self.shuffle_buffer // 2)
        python_rng = random.Random(int(rng.integers(2**63)))
        yield from wds.shuffle(self.shuffle_buffer, initial, rng=python_rng)(samples)


def _endless(rng: np.random.Generator, n: int, chunk: int = 1024) -> Iterator[np.ndarray]:
    while True:
        yield rng.integers(0, n, size=chunk)
