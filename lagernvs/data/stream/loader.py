"""Resumable, endless batches of a stream through a DataLoader (the trainer's batch source)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader

from lagernvs.data.stream.scenes import SceneStream


class StreamLoader:
    """Endless, resumable batches of a :class:`~lagernvs.data.stream.TrainingStream` through a
    DataLoader.

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
