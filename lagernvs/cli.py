"""The `lagernvs` command: argparse subcommands whose handlers import heavy modules lazily."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int | None]


class UserFacingError(Exception):
    """An error whose message is meant for the command-line user, printed as one line."""


def _run_shards(args: argparse.Namespace) -> None:
    from lagernvs.data.shards import write_shards

    index_path = write_shards(
        source=args.source,
        root=args.root,
        output_dir=args.output_dir,
        split=args.split,
        scenes_per_shard=args.scenes_per_shard,
    )
    print(f"wrote shards and index {index_path}")


# Subcommands whose arguments are parsed by their own module's `main(argv)`.
_PASSTHROUGH_MODULES = {"train": "lagernvs.training.train"}


def _run_module_main(command: str, argv: list[str]) -> int | None:
    module = importlib.import_module(_PASSTHROUGH_MODULES[command])
    return module.main(argv)


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
    parser.add_argument("--scenes-per-shard", type=int, default=64)
    parser.set_defaults(handler=_run_shards)


def _add_passthrough(subparsers: argparse._SubParsersAction) -> None:
    for command, module in _PASSTHROUGH_MODULES.items():
        subparsers.add_parser(command, help=f"same arguments as `python -m {module}`")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lagernvs", description="Real-time feed-forward novel view synthesis (LagerNVS)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_shards(subparsers)
    _add_passthrough(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors become one line on stderr and a non-zero exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASSTHROUGH_MODULES:
        command, rest = argv[0], argv[1:]
        handler: Callable[[], int | None] = lambda: _run_module_main(command, rest)
    else:
        args = build_parser().parse_args(argv)
        command = args.command
        handler = lambda: args.handler(args)
    try:
        result = handler()
    except KeyboardInterrupt:
        print("lagernvs: interrupted", file=sys.stderr)
        return 130
    except (UserFacingError, ValueError, FileNotFoundError, NotADirectoryError, OSError) as error:
        print(f"lagernvs {command}: error: {error}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
