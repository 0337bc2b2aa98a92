"""The `lagernvs` command: argparse subcommands whose handlers import heavy modules lazily.

lagernvs demo [--output-dir DIR]
lagernvs render --images a.png b.png [--cameras cams.json] --path orbit --output-dir DIR
lagernvs render --scene path/to/scene --views 0 10 --path interpolate --output-dir DIR
lagernvs render --model RUN/model ...   (any model spec, see below)
lagernvs convert model.pt --preset re10k_2v_256 --output-dir DIR
lagernvs shards ... / lagernvs train ...
lagernvs view --demo | --images a.png b.png [--cameras c.json | --vggt-weights W] | --scene DIR

Models are loaded through :func:`lagernvs.pipeline.load_pipeline`, so ``--model`` takes what every
command takes: ``demo``, a pipeline folder, a model folder written by ``lagernvs train`` (or its
run folder), an official ``model.pt`` with ``--preset``, or ``preset:NAME`` (random weights).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lagernvs.viewer import add_view_parser

Handler = Callable[[argparse.Namespace], int | None]
PATH_KINDS = ("interpolate", "orbit", "dolly", "extrapolate")
MODEL_HELP = (
    "the model: 'demo' (default), a pipeline folder, a model folder written by `lagernvs train` "
    "(RUN/model) or its run folder, an official model.pt with --preset, or 'preset:NAME' "
    "(random weights)"
)
PRESET_HELP = "preset of an official checkpoint file: re10k_2v_256, dl3dv_256 or general_512"


class UserFacingError(Exception):
    """An error whose message is meant for the command-line user, printed as one line."""


# ----------------------------------------------------------------------------- handlers


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


def _render_inputs(args: argparse.Namespace) -> tuple[list[Any], Any]:
    """Source images (read, so that bad files fail before the model loads) and cameras (None
    for unposed input) from --images/--cameras or --scene."""
    from lagernvs.cameras import Cameras
    from lagernvs.data.images import load_images

    if args.scene is not None:
        if args.images or args.cameras:
            raise UserFacingError("use either --scene or --images/--cameras, not both")
        from lagernvs.data import load_scene

        scene = load_scene(args.scene)
        views = args.views if args.views else [0, scene.num_frames - 1]
        scene = scene.select(views)
        cameras = Cameras.from_scene(scene, ignore_distortion=args.ignore_distortion)
        return load_images(scene.image_paths), cameras
    if not args.images:
        raise UserFacingError("give source images (--images a.png b.png) or a --scene")
    if args.views:
        raise UserFacingError("--views selects frames of a --scene; it does not apply to --images")
    cameras = Cameras.load(args.cameras) if args.cameras else None
    if cameras is not None and len(cameras) != len(args.images):
        raise UserFacingError(
            f"{args.cameras} holds {len(cameras)} cameras for {len(args.images)} images; give one "
            "camera per image, in the same order"
        )
    return load_images(args.images), cameras


def _path_cameras(args: argparse.Namespace, sources: Any, image_size: tuple[int, int]) -> Any:
    """The target cameras of --path around the sources (the first source frame if unposed)."""
    from lagernvs import trajectories
    from lagernvs.cameras import Cameras

    if sources is None:
        if args.path in ("interpolate", "extrapolate"):
            raise UserFacingError(
                f"--path {args.path} follows the source cameras; give --cameras or --scene, or "
                "use --path orbit / dolly for unposed images"
            )
        sources = Cameras.look_at([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], image_size=image_size)
    options: dict[str, Any] = {"image_size": image_size}
    if args.path == "orbit":
        options["degrees"] = args.degrees
    elif args.path == "extrapolate":
        options["fraction"] = args.fraction
    elif args.path == "dolly" and args.distance is not None:
        options["distance"] = args.distance
    return trajectories.camera_path(args.path, sources, args.num_frames, **options)


def _open_video(stack: contextlib.ExitStack, video: Any) -> Any:
    """Enter the video writer; without the optional video extra, say how to get it (None)."""
    try:
        return stack.enter_context(video)
    except ModuleNotFoundError as missing:
        print(f"no {video.path.name}: {missing}")
        return None


def _run_render(args: argparse.Namespace) -> None:
    from diffusers.utils import logging as diffusers_logging

    from lagernvs.cameras import Cameras
    from lagernvs.io import FrameWriter, VideoWriter
    from lagernvs.pipeline import load_pipeline, resolve_device

    diffusers_logging.disable_progress_bar()
    device = resolve_device(args.device)
    out_dir = Path(args.output_dir)
    video = VideoWriter(out_dir / "video.mp4", fps=args.fps, upscale=args.upscale)
    images, cameras = _render_inputs(args)
    pipe = load_pipeline(args.model, preset=args.preset, device=device, with_denoiser=False)
    pipe.set_progress_bar_config(desc="render", leave=False)
    height, width = tuple(args.size) if args.size else pipe.model.image_size
    scene = pipe.encode(images, cameras)
    targets = _path_cameras(args, scene.source_cameras, (height, width))
    frames, rendered = FrameWriter(out_dir / "frames"), []
    with contextlib.ExitStack() as stack:
        writer = _open_video(stack, video)
        for start in pipe.progress_bar(range(0, len(targets), args.chunk_size)):
            output = pipe.render(
                scene, targets[start : start + args.chunk_size], height=height, width=width,
                chunk_size=args.chunk_size, output_type="np",
            )  # fmt: skip
            rendered.append(output.cameras)
            for frame in output.images:
                frames.append(frame)
                if writer is not None:
                    writer.append(frame)
    Cameras.cat(rendered).save(out_dir / "cameras.json")
    written = f" and {video.path}" if writer is not None else ""
    print(f"rendered {frames.count} frames to {frames.folder}{written}")


def _run_demo(args: argparse.Namespace) -> None:
    from diffusers.utils import logging as diffusers_logging

    from lagernvs.demo import run_demo

    diffusers_logging.disable_progress_bar()
    run_demo(args.output_dir, device=args.device, sampled=args.mode == "sampled")


def _run_convert(args: argparse.Namespace) -> None:
    from diffusers.utils import logging as diffusers_logging

    from lagernvs.pipeline import load_pipeline

    diffusers_logging.disable_progress_bar()
    pipe = load_pipeline(args.checkpoint, preset=args.preset)
    pipe.save_pretrained(args.output_dir)
    print(f"converted {args.checkpoint} to {args.output_dir}")


# Subcommands whose arguments are parsed by their own module's `main(argv)`.
_PASSTHROUGH_MODULES = {
    "train": "lagernvs.training.train",
    "train-denoiser": "lagernvs.training.train_denoiser",
    "eval": "lagernvs.evaluation.evaluate",
    "bench": "lagernvs.evaluation.bench",
}


def _run_module_main(command: str, argv: list[str]) -> int | None:
    module = importlib.import_module(_PASSTHROUGH_MODULES[command])
    return module.main(argv)


# ----------------------------------------------------------------------------- parsers


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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


def _add_render(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help="render a camera path from source images into PNG frames and an mp4",
        description="Encode the source views once, render --num-frames cameras along --path, "
        "write DIR/frames/*.png, DIR/video.mp4 and DIR/cameras.json (the rendered cameras). "
        "Without cameras the images are treated as unposed: the path is built around the first "
        "image's camera.",
    )
    sources = parser.add_argument_group("sources")
    sources.add_argument("--images", nargs="+", default=[], help="source image files")
    sources.add_argument(
        "--cameras", default=None, help="JSON cameras file (Cameras.save) for --images"
    )
    sources.add_argument(
        "--scene", default=None, help="a scene folder/file load_scene reads (NeRF, COLMAP, ...)"
    )
    sources.add_argument(
        "--views", nargs="+", type=int, default=None, help="frames of --scene (default first, last)"
    )
    sources.add_argument(
        "--ignore-distortion",
        action="store_true",
        help="treat a --scene with lens distortion as pinhole (mild distortion only)",
    )
    path = parser.add_argument_group("camera path")
    path.add_argument("--path", choices=PATH_KINDS, default="orbit")
    path.add_argument("--num-frames", type=_positive_int, default=60)
    path.add_argument("--degrees", type=float, default=30.0, help="orbit arc (360: full circle)")
    path.add_argument("--fraction", type=float, default=0.5, help="extrapolation beyond the span")
    path.add_argument("--distance", type=float, default=None, help="dolly distance (world units)")
    parser.add_argument("--model", default="demo", help=MODEL_HELP)
    parser.add_argument("--preset", default=None, help=PRESET_HELP)
    parser.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"))
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--upscale", type=_positive_int, default=1, help="integer video upscaling")
    parser.add_argument(
        "--chunk-size", type=_positive_int, default=8, help="frames per forward pass"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.set_defaults(handler=_run_render)


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
    _add_render(subparsers)
    _add_convert(subparsers)
    _add_shards(subparsers)
    add_view_parser(subparsers)
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
        message = " ".join(str(error).split())  # one line, whatever the exception holds
        print(f"lagernvs {command}: error: {message}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
