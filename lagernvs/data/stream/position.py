"""Where a stream runs (process rank, DataLoader worker) and the generators drawn from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lagernvs.data.views import make_generator


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


def child_generators(
    seed: int, epoch: int, position: StreamPosition, n: int
) -> list[np.random.Generator]:
    """`n` independent generators of (seed, epoch, rank, worker), one per random decision."""
    return make_generator(seed, epoch, position.rank, position.worker).spawn(n)
