"""Endless batch streams whose position can be saved and restored (what the trainer consumes).

:class:`BatchStream` is the protocol; :class:`ResumableBatches` makes any deterministic iterable
one, :class:`MixedStream` mixes several by weight and :class:`FixedBatches` gives the same first
batches of a fresh stream every time (validation). The shard streams'
:class:`~lagernvs.data.stream.StreamLoader` implements the protocol itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["BatchStream", "FixedBatches", "MixedStream", "ResumableBatches"]


@runtime_checkable
class BatchStream(Protocol):
    """An endless iterable of batch dicts whose position can be saved and restored (JSON)."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ResumableBatches:
    """Make a deterministic iterable of batches an endless, resumable `BatchStream`.

    The iterable is repeated forever; the state is the number of batches handed out, and
    resuming replays and discards that many. This is exact when every pass over the iterable
    yields the same sequence (seeded sampling) and cheap when batches are cheap to produce;
    streams that can seek should implement `state_dict`/`load_state_dict` themselves.
    """

    def __init__(self, iterable: Iterable[dict[str, Any]]) -> None:
        self._iterable = iterable
        self._consumed = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        endless = itertools.chain.from_iterable(itertools.repeat(self._iterable))
        for batch in itertools.islice(endless, self._consumed, None):
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"batches_consumed": self._consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._consumed = int(state["batches_consumed"])


class MixedStream:
    """Batches from several resumable streams, each drawn with a fixed probability.

    The choice sequence is seeded per process; the state is the number of choices made plus
    every stream's own state, so resuming replays the choices (cheap) and resumes each stream.
    """

    def __init__(self, streams: Sequence[BatchStream], weights: Sequence[float], seed: int) -> None:
        self.streams = list(streams)
        probs = np.asarray(weights, dtype=np.float64)
        self.probs = probs / probs.sum()
        self.seed = seed
        self._draws = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng(self.seed)
        rng.choice(len(self.streams), size=self._draws, p=self.probs)
        iterators = [iter(stream) for stream in self.streams]
        while True:
            choice = int(rng.choice(len(self.streams), p=self.probs))
            self._draws += 1
            yield next(iterators[choice])

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self._draws, "streams": [s.state_dict() for s in self.streams]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._draws = int(state["draws"])
        for stream, sub_state in zip(self.streams, state["streams"], strict=True):
            stream.load_state_dict(sub_state)


class FixedBatches:
    """The first `num_batches` batches of a freshly built stream: the same views every time."""

    def __init__(
        self, make_loader: Callable[[], Iterable[dict[str, Any]]], num_batches: int
    ) -> None:
        self.make_loader = make_loader
        self.num_batches = num_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return itertools.islice(iter(self.make_loader()), self.num_batches)
