"""`lagernvs bench {speed,extrapolation}`: the benchmark subcommands.

    lagernvs bench extrapolation --config configs/eval/extrapolation_synthetic.yaml \\
        --output-dir runs/extra [--set extrapolation.num_samples=8 ...]
    lagernvs bench speed --model general_512 --device cuda --output-dir runs/speed
    lagernvs bench speed --model demo --device cpu --output-dir runs/speed_cpu \\
        --sizes 64 --views 1 2 --precisions fp32 --runs 3 --warmup 1
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from lagernvs.models.renderer import ATTENTION_TYPES

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lagernvs bench", description="LagerNVS benchmarks.")
    commands = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)

    extra = commands.add_parser(
        "extrapolation",
        help="deterministic vs sampled rendering on targets outside the context views",
    )
    extra.add_argument("--config", required=True, help="protocol YAML, or a configs/eval name")
    extra.add_argument("--output-dir", required=True, help="folder for results (resumable)")
    extra.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a protocol key, e.g. --set extrapolation.num_samples=8",
    )

    speed = commands.add_parser("speed", help="encoder latency, renderer FPS and peak memory")
    speed.add_argument(
        "--model", required=True, help="'demo', a save_pretrained folder or a preset"
    )
    speed.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    speed.add_argument("--output-dir", required=True, help="folder for speed.json and speed.md")
    speed.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square sizes")
    speed.add_argument(
        "--views", type=int, nargs="+", default=list(range(1, 10)), help="source view counts"
    )
    speed.add_argument(
        "--attention-types", nargs="+", default=list(ATTENTION_TYPES), choices=ATTENTION_TYPES
    )
    speed.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]
    )
    speed.add_argument("--targets", type=int, default=1, help="views rendered per render call")
    speed.add_argument("--warmup", type=int, default=3)
    speed.add_argument("--runs", type=int, default=10)
    return parser


def _extrapolation(args: argparse.Namespace) -> None:
    from pathlib import Path

    from lagernvs.evaluation.extrapolation import format_table, run_extrapolation
    from lagernvs.evaluation.protocol import load_protocol

    protocol = load_protocol(args.config, args.overrides)
    summary = run_extrapolation(protocol, args.output_dir)
    if summary is None:
        return
    print(format_table(summary))
    if summary["sampled_note"]:
        print(f"sampled rendering: {summary['sampled_note']}")
    if "distance_sweep" in summary:
        print("distance sweep (frames beyond the context span -> deterministic PSNR):")
        for row in summary["distance_sweep"]:
            psnr = row.get("deterministic/psnr")
            shown = "n/a" if psnr is None else f"{psnr:.2f}"
            print(f"  {row['distance']:>3}: {shown} ({row['num_targets']} targets)")
    print(f"wrote {Path(args.output_dir) / 'summary.json'}")


def _speed(args: argparse.Namespace) -> None:
    from lagernvs.evaluation.speed import SpeedResult, format_speed_table, run_speed

    def progress(r: SpeedResult) -> None:
        timing = r.error or f"encode {r.encode_ms:.2f} ms, render {r.fps:.1f} FPS"
        print(
            f"{r.attention_type} {r.precision} {r.image_size}² {r.num_views} views: {timing}",
            flush=True,
        )

    report = run_speed(
        args.model,
        device=args.device,
        output_dir=args.output_dir,
        sizes=args.sizes,
        views=args.views,
        attention_types=args.attention_types,
        precisions=args.precisions,
        targets=args.targets,
        warmup=args.warmup,
        runs=args.runs,
        progress=progress,
    )
    print(format_speed_table(report))


def main(argv: Sequence[str] | None = None) -> int:
    """``lagernvs bench speed ...`` / ``lagernvs bench extrapolation ...``."""
    args = build_parser().parse_args(argv)
    if args.benchmark == "extrapolation":
        _extrapolation(args)
    else:
        _speed(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
