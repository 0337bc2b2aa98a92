"""The `lagernvs` command: argparse subcommands whose handlers import heavy modules lazily.

lagernvs demo [--output-dir DIR]
lagernvs render --images a.jpg b.jpg [--cameras c.json | --vggt-weights W] [--path spline] ...
lagernvs render --scene path/to/scene --views 0 10 [--format colmap] --path spline ...
lagernvs render --model RUN/model ...   (any model spec, see below)
lagernvs convert model.pt --preset re10k_2v_256 --output-dir DIR
lagernvs shards ... / lagernvs train ...
lagernvs view --demo | --images a.png b.png [--cameras c.json | --vggt-weights W] | --scene DIR

Models are loaded through :func:`lagernvs.pipeline.load_pipeline`, so ``--model`` takes what every
command takes: ``demo``, a pipeline folder, a model folder written by ``lagernvs train`` (or its
run folder), an official ``model.pt`` with ``--preset``, or ``preset:NAME`` (random weights).

Modules: :mod:`~lagernvs.cli.common` (shared argument types and the user-facing error),
:mod:`~lagernvs.cli.render` (the render command), :mod:`~lagernvs.cli.render_plan` (its
sources, size and cameras), :mod:`~lagernvs.staging` (staged, all-or-nothing results).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from lagernvs.cli.common import PRESET_HELP, UserFacingError, positive_int
from lagernvs.cli.render import add_render_parser
from lagernvs.config import USER_ERRORS, run_command
from lagernvs.viewer import add_view_parser

__all__ = ["UserFacingError", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int | None]


# ----------------------------------------------------------------------------- handlers


def _run_shards(args: argparse.Namespace) -> None:
    from lagernvs.data.shards import write_shards

    index_path = write_shards(
        source=args.source,
        root=args.root,
        output_dir=args.output_dir,
        split=args.split,
        scenes_per_shard=args.scenes_per_shard,
        overwrite=args.overwrite,
    )
    print(f"wrote shards and index {index_path}")


def _run_demo(args: argparse.Namespace) -> None:
    from diffusers.utils import logging as diffusers_logging

    from lagernvs.demo import run_demo
    from lagernvs.staging import OutputFolder

    OutputFolder.check_writable(args.output_dir)  # each result is written atomically
    diffusers_logging.disable_progress_bar()
    run_demo(args.output_dir, device=args.device, sampled=args.mode == "sampled")


def _run_convert(args: argparse.Namespace) -> None:
    """Load (strictly), then save into a staging folder moved into place only when complete."""
    from diffusers.utils import logging as diffusers_logging

    from lagernvs.models.checkpoints import preset_name_conflict
    from lagernvs.pipeline import load_pipeline
    from lagernvs.staging import OutputFolder

    diffusers_logging.disable_progress_bar()
    if args.preset is not None and (conflict := preset_name_conflict(args.checkpoint, args.preset)):
        raise UserFacingError(f"{conflict}; if the preset is right, rename the file")
    with OutputFolder(args.output_dir, None, args.overwrite) as out:
        pipe = load_pipeline(args.checkpoint, preset=args.preset)
        pipe.save_pretrained(out.staging)
        out.commit()
    print(f"converted {args.checkpoint} to {args.output_dir}")


# Subcommands whose arguments are parsed by their own module's `main(argv)`.
_PASSTHROUGH_MODULES = {
    "train": "lagernvs.training.train",
    "train-denoiser": "lagernvs.training.train_denoiser",
    "eval": "lagernvs.evaluation.evaluate",
    "bench": "lagernvs.evaluation.bench",
}
# Where a passthrough's `main(argv)` is reached without importing torch (fast --help), when it is
# not its module's own `main`.
_LIGHT_MAINS = {
    "train": "lagernvs.training.command:train",
    "train-denoiser": "lagernvs.training.command:train_denoiser",
}


def _run_module_main(command: str, argv: list[str]) -> int | None:
    target = _LIGHT_MAINS.get(command, f"{_PASSTHROUGH_MODULES[command]}:main")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(argv)


# ----------------------------------------------------------------------------- parsers


def _add_shards(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shards", help="write WebDataset .tar shards (one sample per scene) from a dataset"
    )
    parser.add_argument(
        "--source", required=True, choices=["re10k", "dl3dv", "colmap", "nerf", "llff"]
    )
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", default=None, help="dataset split (re10k: train/test)")
    parser.add_argument("--output-dir", required=True, help="folder for the shards and index.json")
    parser.add_argument("--scenes-per-shard", type=positive_int, default=64)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the shards of an earlier run in DIR"
    )
    parser.set_defaults(handler=_run_shards)


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="render the bundled scenes with the bundled model; print and save metrics",
        description="Novel views of the bundled held-out synthetic scenes next to the ground "
        "truth, an orbit video, PSNR/SSIM against the nearest-source-view baseline "
        "(DIR/metrics.json). No download; CPU is enough.",
    )
    parser.add_argument("--output-dir", default="lagernvs-demo")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument(
        "--mode",
        choices=["deterministic", "sampled"],
        default="deterministic",
        help="sampled: also draw samples of extrapolated views with the bundled denoiser",
    )
    parser.set_defaults(handler=_run_demo)


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official LagerNVS model.pt (or any model) into a pipeline folder",
    )
    parser.add_argument(
        "checkpoint", help="official model.pt ({'model': state_dict}) with --preset, or any model"
    )
    parser.add_argument("--preset", default=None, help=PRESET_HELP)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the pipeline of an earlier run in DIR"
    )
    parser.set_defaults(handler=_run_convert)


def _add_passthrough(subparsers: argparse._SubParsersAction) -> None:
    for command, module in _PASSTHROUGH_MODULES.items():
        subparsers.add_parser(command, help=f"same arguments as `python -m {module}`")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lagernvs", description="Real-time feed-forward novel view synthesis (LagerNVS)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_demo(subparsers)
    add_render_parser(subparsers)
    _add_convert(subparsers)
    _add_shards(subparsers)
    add_view_parser(subparsers)
    _add_passthrough(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors become one line on stderr and a non-zero exit code
    (1; 130 after Ctrl-C, 143 after SIGTERM: :func:`lagernvs.config.run_command`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASSTHROUGH_MODULES:
        command, rest = argv[0], argv[1:]
        handler: Callable[[], int | None] = lambda: _run_module_main(command, rest)
    else:
        args = build_parser().parse_args(argv)
        command = args.command
        handler = lambda: args.handler(args)
    return run_command(f"lagernvs {command}", handler, (UserFacingError, *USER_ERRORS))
