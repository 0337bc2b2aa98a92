"""Accounting of unreadable data: a stream skips corrupt samples and shards, warns, counts them,
and gives up (:class:`StreamFailure`) only when nothing can be read.

The counters live in shared memory so that DataLoader worker processes add to the same totals
that the training process reads.
"""

from __future__ import annotations

import multiprocessing
import warnings


class DataWarning(UserWarning):
    """A sample or shard was skipped; the stream goes on."""


class StreamFailure(ValueError):
    """The stream cannot go on: nothing could be read for a long time, or no shard at all.

    One line even when raised in a DataLoader worker: the loader re-raises a worker's error with
    the worker's traceback in its message, of which only the last line (ours) is kept.
    """

    def __init__(self, message: str) -> None:
        last = message.strip().splitlines()[-1] if message.strip() else message
        super().__init__(last.removeprefix(f"{type(self).__module__}.{type(self).__qualname__}: "))


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
