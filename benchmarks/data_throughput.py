"""Throughput of the streaming training reader: scenes/s and images/s with N DataLoader workers.

Renders a small synthetic dataset (Re10k-like 360x640 frames by default) into a temporary folder,
writes it as WebDataset shards, then times `TrainingStream` batches (PNG decode, view selection,
crop/resize, rays and camera tokens, all in the workers) at each output size and worker count.
Prints one line per setting; asserts nothing.

    python benchmarks/data_throughput.py --workers 0 2 4 --sizes 256 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lagernvs.data.shards import write_shards
from lagernvs.data.stream import TrainingStream
from lagernvs.data.synthetic import write_synthetic_dataset
from lagernvs.data.views import TrainViewSampler, ViewSamplerConfig


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square sides")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per setting")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--frames", type=int, default=12, help="frames per scene")
    parser.add_argument("--source-size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--targets", type=int, default=6, help="target views per sample")
    parser.add_argument("--cond-views", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (main process)")
    return parser.parse_args(argv)


def measure(shards: Path, size: int, workers: int, args: argparse.Namespace) -> tuple[float, float]:
    """(scenes/s, images/s) of `args.batches` batches after `args.warmup` untimed ones."""
    sampler = TrainViewSampler(
        ViewSamplerConfig(
            context_gap=(args.cond_views, args.frames - 1),
            num_targets=args.targets,
            cond_view_weights={args.cond_views: 1.0},
            long_side=size,
        )
    )
    stream = TrainingStream(shards, sampler, batch_size=args.batch_size, shuffle_buffer=16)
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    iterator = iter(loader)
    for _ in range(args.warmup):
        next(iterator)
    scenes = images = 0
    start = time.perf_counter()
    for _ in range(args.batches):
        batch = next(iterator)
        scenes += batch["images"].shape[0]
        images += batch["images"].shape[0] * batch["images"].shape[1]
    elapsed = time.perf_counter() - start
    del iterator
    return scenes / elapsed, images / elapsed


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    height, width = args.source_size
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_synthetic_dataset(
            Path(tmp) / "data",
            args.scenes,
            "train",
            seed=0,
            num_frames=args.frames,
            height=height,
            width=width,
        )
        shards = Path(tmp) / "shards"
        write_shards(
            "re10k", Path(tmp) / "data", shards, split="train", scenes_per_shard=2, progress=False
        )
        print(
            f"data: {args.scenes} synthetic scenes x {args.frames} frames of {height}x{width} "
            f"in {time.perf_counter() - start:.1f} s; {args.cond_views}+{args.targets} views per "
            f"sample, batch {args.batch_size}"
        )
        for size in args.sizes:
            for workers in args.workers:
                scenes_per_s, images_per_s = measure(shards, size, workers, args)
                print(
                    f"{size}x{size}  workers={workers:<2d}  {scenes_per_s:8.1f} scenes/s  "
                    f"{images_per_s:8.1f} images/s"
                )


if __name__ == "__main__":
    main()
