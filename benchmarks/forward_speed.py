"""Encoder and renderer latency, frames per second and peak memory of a LagerNVS preset.

Prints a table; asserts nothing. Weights are random (or an official ``model.pt`` with
``--checkpoint``): speed does not depend on their values.

    python benchmarks/forward_speed.py --preset tiny --device cpu
    python benchmarks/forward_speed.py --preset general_512 --device cuda --dtype bfloat16 \
        --source-views 4 --targets 32 --chunk-size 8
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from lagernvs.models import PRESETS, LagerNVSModel, set_attention_backend
from lagernvs.models.attention import BACKENDS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--attention-type", help="override the preset's renderer variant")
    parser.add_argument("--checkpoint", help="official model.pt to load instead of random weights")
    parser.add_argument("--height", type=int, help="render height (default: preset image_size)")
    parser.add_argument("--width", type=int, help="render width (default: preset image_size)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--source-views", type=int, default=2)
    parser.add_argument("--targets", type=int, default=4, help="target views rendered per scene")
    parser.add_argument("--chunk-size", type=int, help="target views per render chunk")
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default_device)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--attention", default="auto", choices=BACKENDS)
    parser.add_argument("--runs", type=int, default=10, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args()


def build_model(args: argparse.Namespace) -> LagerNVSModel:
    overrides = {"attention_type": args.attention_type} if args.attention_type else {}
    if args.checkpoint:
        model = LagerNVSModel.from_original_checkpoint(args.checkpoint, args.preset, **overrides)
        return model.to(args.device)
    with torch.device(args.device):
        return LagerNVSModel.from_preset(args.preset, **overrides).eval()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], torch.Tensor],
    device: torch.device,
    runs: int,
    warmup: int,
    autocast: AbstractContextManager,
) -> tuple[float, str]:
    """Median latency in ms over ``runs`` calls after ``warmup``, and the peak memory."""
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            fn()
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
    if device.type == "cuda":
        memory = f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (CUDA)"
    else:
        memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB (RSS)"
    return statistics.median(times), memory


def main() -> None:
    args = parse_args()
    set_attention_backend(args.attention)
    device = torch.device(args.device)
    model = build_model(args)
    height = args.height or model.image_size[0]
    width = args.width or model.image_size[1]
    dtype = getattr(torch, args.dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    images = torch.rand(args.batch, args.source_views, 3, height, width, device=device)
    cam_tokens = torch.randn(args.batch, args.source_views, 11, device=device)
    rays = torch.randn(args.batch, args.targets, 6, height, width, device=device)
    with torch.inference_mode(), autocast:
        scene = model.encode(images, cam_tokens)

    encode_ms, encode_mem = measure(
        lambda: model.encode(images, cam_tokens), device, args.runs, args.warmup, autocast
    )
    render_ms, render_mem = measure(
        lambda: model.render(scene, rays, chunk_size=args.chunk_size),
        device,
        args.runs,
        args.warmup,
        autocast,
    )
    rendered = args.batch * args.targets
    print(
        f"LagerNVS {args.preset} ({model.config.attention_type}), device {device}, {args.dtype}, "
        f"attention {args.attention}, batch {args.batch}, {args.source_views} source views, "
        f"{args.targets} targets at {height}x{width}, chunk {args.chunk_size or 'all'}, "
        f"median of {args.runs} runs after {args.warmup} warm-up"
    )
    header = f"{'stage':<8} {'median ms':>10} {'ms / view':>10} {'views/s':>10}  peak memory"
    print(header)
    print("-" * len(header))
    for stage, ms, views, memory in (
        ("encode", encode_ms, args.batch * args.source_views, encode_mem),
        ("render", render_ms, rendered, render_mem),
    ):
        print(f"{stage:<8} {ms:>10.2f} {ms / views:>10.2f} {1e3 * views / ms:>10.1f}  {memory}")
    print("views/s of the render stage = frames per second of novel views")


if __name__ == "__main__":
    main()
