"""`lagernvs bench {speed,extrapolation}`: the benchmark subcommands.

    lagernvs bench extrapolation --config configs/eval/extrapolation_synthetic.yaml \\
        --output-dir runs/extra [--set extrapolation.num_samples=8 ...]
    lagernvs bench speed --model demo --device cpu --output-dir runs/speed_demo
    lagernvs bench speed --model preset:general_512 --device cuda --output-dir runs/speed \\
        --sizes 256 512
    lagernvs bench speed --model model.pt --preset re10k_2v_256 --output-dir runs/speed_re10k
    lagernvs bench speed --model preset:general_512 --device cuda --output-dir runs/fast \
        --sizes 512 --precisions bf16 --fast [--compile default] [--sdpa-kernels cudnn]

Arguments are parsed before torch is imported (fast ``--help``): the choices below spell out
the names the model modules define (a test keeps them equal).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lagernvs.config import config_parser, run_command

if TYPE_CHECKING:
    from lagernvs.models.fast import FastOptions

__all__ = ["ATTENTION_TYPES", "BACKENDS", "SDPA_KERNELS", "build_parser", "main"]

ATTENTION_TYPES = ("full_attention", "cross_attention", "bidirectional_cross_attention")
""":data:`lagernvs.models.renderer.ATTENTION_TYPES`."""
BACKENDS = ("auto", "sdpa", "xformers", "math")
""":data:`lagernvs.models.attention.BACKENDS`."""
SDPA_KERNELS = ("cudnn", "efficient", "flash", "math")
"""The keys of :data:`lagernvs.models.attention.SDPA_KERNELS`."""
MAX_SIZE = 4096
SPEED_RESULTS = ("speed.json", "speed.md")
"""What `bench speed` writes; they replace those of an earlier run only when both are done."""
MODEL_HELP = (
    "the model: 'demo', a pipeline or model folder, a run folder, an official model.pt with "
    "--preset, or 'preset:NAME' (random weights)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lagernvs bench", description="LagerNVS benchmarks.")
    commands = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)

    commands.add_parser(
        "extrapolation",
        help="deterministic vs sampled rendering on targets outside the context views",
        parents=[
            config_parser(
                "lagernvs bench extrapolation",
                "",
                "protocol YAML, or a configs/eval name",
                "--set extrapolation.num_samples=8",
            )
        ],
        conflict_handler="resolve",
    )

    speed = commands.add_parser("speed", help="encoder latency, renderer FPS and peak memory")
    speed.add_argument("--model", required=True, help=MODEL_HELP)
    speed.add_argument("--preset", default=None, help="preset of an official checkpoint --model")
    speed.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    speed.add_argument("--output-dir", required=True, help="folder for speed.json and speed.md")
    speed.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="square sizes (default: the model's)"
    )
    speed.add_argument(
        "--views", type=int, nargs="+", default=list(range(1, 10)), help="source view counts"
    )
    speed.add_argument(
        "--attention-types",
        nargs="+",
        default=None,
        choices=ATTENTION_TYPES,
        help="renderer variants (default: the model's own; every variant for preset:NAME)",
    )
    speed.add_argument(
        "--attention-backend",
        default=None,
        choices=BACKENDS,
        help="attention kernel (default: $LAGERNVS_ATTENTION, else auto)",
    )
    speed.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]
    )
    speed.add_argument("--targets", type=int, default=1, help="views rendered per render call")
    speed.add_argument("--warmup", type=int, default=3)
    speed.add_argument("--runs", type=int, default=10)
    fast = speed.add_argument_group(
        "fast path", "time the renderer through lagernvs.models.fast (any of these turns it on)"
    )
    fast.add_argument(
        "--fast",
        action="store_true",
        help="the device's default fast path (CUDA: CUDA graphs; bf16 weights for bf16)",
    )
    fast.add_argument("--no-cuda-graphs", action="store_true", help="without CUDA graphs")
    fast.add_argument("--compile", default=None, metavar="MODE", help="torch.compile mode")
    fast.add_argument(
        "--sdpa-kernels", nargs="+", default=(), choices=SDPA_KERNELS, help="SDPA kernels"
    )
    fast.add_argument("--per-target", action="store_true", help="one render call per target")
    return parser


def check_sizes(sizes: list[int] | None) -> None:
    """Refuse --sizes no model renders (before any model loads: they would exhaust memory)."""
    if sizes is not None and max(sizes, default=0) > MAX_SIZE:
        raise ValueError(
            f"--sizes {max(sizes)} is above {MAX_SIZE}, 8 times the largest official model's 512; "
            "benchmark sizes a model renders"
        )


def fast_options(args: argparse.Namespace) -> FastOptions | None:
    """The fast-path options of the speed arguments (None: time the plain renderer)."""
    chosen = (args.fast, args.no_cuda_graphs, args.compile, args.sdpa_kernels, args.per_target)
    if not any(chosen):
        return None
    from lagernvs.models.fast import FastOptions
    from lagernvs.pipeline import resolve_device

    fastest = FastOptions.fastest(resolve_device(args.device))
    return replace(
        fastest,
        cuda_graphs=fastest.cuda_graphs and not args.no_cuda_graphs,
        compile=args.compile,
        sdpa_kernels=tuple(args.sdpa_kernels),
        batch_targets=not args.per_target,
    )


def _extrapolation(args: argparse.Namespace) -> None:
    from lagernvs.evaluation.dataset import check_dataset_paths
    from lagernvs.evaluation.extrapolation import format_table, run_extrapolation
    from lagernvs.evaluation.model import check_model_paths
    from lagernvs.evaluation.protocol import load_protocol
    from lagernvs.runlock import run_lock

    protocol = load_protocol(args.config, args.overrides)
    check_dataset_paths(protocol.dataset)
    check_model_paths(protocol.model)
    with run_lock(args.output_dir, "lagernvs bench extrapolation"):
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
    from lagernvs.staging import OutputFolder

    def progress(r: SpeedResult) -> None:
        timing = r.error or f"encode {r.encode_ms:.2f} ms, render {r.fps:.1f} FPS"
        print(
            f"{r.attention_type} {r.precision} {r.image_size}² {r.num_views} views: {timing}",
            flush=True,
        )

    check_sizes(args.sizes)
    with OutputFolder(args.output_dir, SPEED_RESULTS, overwrite=True) as out:
        report = run_speed(
            args.model,
            device=args.device,
            output_dir=out.staging,
            sizes=args.sizes,
            views=args.views,
            attention_types=args.attention_types,
            precisions=args.precisions,
            targets=args.targets,
            warmup=args.warmup,
            runs=args.runs,
            progress=progress,
            preset=args.preset,
            backend=args.attention_backend,
            fast=fast_options(args),
        )
        out.commit()
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
    raise SystemExit(run_command("lagernvs bench", main))
