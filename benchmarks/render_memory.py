"""Peak memory of `lagernvs render` as the video grows: frames stream to disk, so it stays flat.

Runs ``lagernvs render`` in a fresh process for each frame count (the bundled demo scene's two
source views, unposed, with the demo model by default, rendered at ``--size``) and prints the
process's peak resident memory (``ru_maxrss`` of that child alone), the wall time and the
output's size on disk. Had the frames been held in memory, peak memory would grow by about
H x W x 3 x 4 bytes per frame (0.75 MiB at 256x256); the column ``held frames would add`` shows
that amount for comparison. Asserts nothing.

    python benchmarks/render_memory.py
    python benchmarks/render_memory.py --frames 30 300 3000 --size 512 512 --device cuda
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lagernvs.pipeline.loading import DEMO_SCENES_DIR


def source_images() -> list[str]:
    """Two source images of the first bundled demo scene."""
    folders = sorted({p.parent for p in DEMO_SCENES_DIR.rglob("*.png")})
    if not folders:
        raise SystemExit(f"no demo scene images under {DEMO_SCENES_DIR}")
    frames = sorted(folders[0].glob("*.png"))
    return [str(frames[0]), str(frames[-1])]


def measure(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one run of ``command`` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode() if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"render failed ({process.returncode}): {stderr.strip()}")
    return usage.ru_maxrss / 1024.0, wall  # ru_maxrss is in KiB on Linux


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", nargs="+", type=int, default=[30, 120, 480])
    parser.add_argument("--size", nargs=2, type=int, default=[256, 256], metavar=("H", "W"))
    parser.add_argument("--model", default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk-size", type=int, default=8)
    args = parser.parse_args(argv)
    images = source_images()
    height, width = args.size
    per_frame = height * width * 3 * 4 / 2**20
    print(f"lagernvs render, model {args.model}, {height}x{width}, device {args.device}")
    print(f"{'frames':>7} {'peak RSS MiB':>13} {'wall s':>8} {'output MiB':>11} "
          f"{'held frames would add MiB':>26}")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.frames:
            out = Path(scratch) / f"frames_{count}"
            command = [
                sys.executable, "-m", "lagernvs.cli", "render", "--images", *images,
                "--model", args.model, "--device", args.device, "--path", "orbit",
                "--num-frames", str(count), "--size", str(height), str(width),
                "--chunk-size", str(args.chunk_size), "--output-dir", str(out),
            ]  # fmt: skip
            peak, wall = measure(command)
            print(f"{count:>7} {peak:>13.1f} {wall:>8.1f} {folder_mib(out):>11.1f} "
                  f"{count * per_frame:>26.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
