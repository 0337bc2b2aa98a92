"""`lagernvs render`: source photos in, a video along a camera path out.

The flow: check the output folder and read the sources (before any model loads), load the model
(and VGGT with --vggt-weights), estimate the cameras when asked, encode the sources once, then
render the path chunk by chunk, streaming every frame to disk (PNG and mp4) so memory stays flat
however long the video. Results are staged and moved into the output folder only when complete
(:mod:`lagernvs.staging`). ``cameras.json`` holds the rendered cameras in the frame of
the input cameras, the frame stated inside it; ``--cameras-path`` renders such a file again.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from lagernvs.cli.common import MODEL_HELP, PRESET_HELP, positive_int

__all__ = ["PATH_KINDS", "RESULTS", "SCENE_FORMATS", "add_render_parser", "run_render"]

PATH_KINDS = (
    "spline", "interpolate", "extrapolate", "orbit", "spiral", "lemniscate", "dolly",
    "dolly-zoom", "zoom-in", "zoom-out", "left", "right", "up", "down", "forward", "back",
)  # fmt: skip
"""The keys of :data:`lagernvs.trajectories.PATHS` (spelled out: importing it loads torch)."""
SCENE_FORMATS = ("colmap", "llff", "nerf", "re10k", "dl3dv")
RESULTS = ("frames", "video.mp4", "cameras.json", "source_cameras.json")
DESCRIPTION = (
    "Encode the source photos once and render --num-frames cameras along --path into "
    "DIR/frames/*.png, DIR/video.mp4 and DIR/cameras.json. Sources: --images with --cameras "
    "(posed), with --vggt-weights (cameras estimated by VGGT-1B, also written to "
    "DIR/source_cameras.json) or alone (unposed: the path is built around the first photo's "
    "camera); or --scene (a COLMAP, LLFF, NeRF, Re10k or DL3DV capture) with --views. "
    "The default path is spline (through every source camera and back) when the cameras are "
    "known, orbit otherwise."
)


def add_render_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help="render a camera path from source photos into PNG frames and an mp4",
        description=DESCRIPTION,
    )
    sources = parser.add_argument_group("sources")
    sources.add_argument("--images", nargs="+", default=[], help="source image files")
    sources.add_argument(
        "--cameras", default=None, help="JSON cameras file (Cameras.save) for --images"
    )
    sources.add_argument(
        "--vggt-weights",
        default=None,
        help="VGGT-1B checkpoint (model.pt): estimate the cameras of --images",
    )
    sources.add_argument(
        "--scene", default=None, help="a scene folder/file load_scene reads (COLMAP, NeRF, ...)"
    )
    sources.add_argument(
        "--views", nargs="+", type=int, default=None, help="frames of --scene (default first, last)"
    )
    sources.add_argument(
        "--format",
        choices=SCENE_FORMATS,
        default=None,
        help="format of --scene when its folder holds several (default: detected)",
    )
    sources.add_argument(
        "--ignore-distortion",
        action="store_true",
        help="treat a --scene with lens distortion as pinhole (mild distortion only)",
    )
    path = parser.add_argument_group("camera path")
    path.add_argument(
        "--path", choices=PATH_KINDS, default=None, help="default: spline, or orbit when unposed"
    )
    path.add_argument(
        "--cameras-path",
        default=None,
        help="render the cameras of this JSON file (a cameras.json written by render, or a "
        "keyframe file); with --num-frames N different from its count, N frames on a spline "
        "through them",
    )
    path.add_argument("--num-frames", type=positive_int, default=None, help="default 60")
    path.add_argument("--degrees", type=float, default=None, help="orbit arc (default 30)")
    path.add_argument("--fraction", type=float, default=None, help="extrapolation beyond the span")
    path.add_argument(
        "--distance", type=float, default=None, help="dolly, dolly-zoom and move distance"
    )
    path.add_argument("--radius", type=float, default=None, help="spiral / lemniscate radius")
    path.add_argument("--zoom", type=float, default=None, help="zoom-in / zoom-out factor (> 1)")
    parser.add_argument("--model", default="demo", help=MODEL_HELP)
    parser.add_argument("--preset", default=None, help=PRESET_HELP)
    parser.add_argument(
        "--size", nargs=2, type=int, default=None, metavar=("H", "W"), help="default: native"
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier run in DIR"
    )
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--upscale", type=positive_int, default=1, help="integer video upscaling")
    parser.add_argument(
        "--chunk-size", type=positive_int, default=8, help="frames per forward pass"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.set_defaults(handler=run_render)


def _open_video(stack: contextlib.ExitStack, video: Any) -> Any:
    """Enter the video writer; without the optional video extra, say how to get it (None)."""
    try:
        return stack.enter_context(video)
    except ModuleNotFoundError as missing:
        print(f"no {video.path.name}: {missing}")
        return None


def _save_cameras(cameras: Any, statement: str, path: Path) -> None:
    """``cameras`` as Cameras.save JSON with the meaning of their frame stated inside."""
    from lagernvs.io import write_json

    record = cameras.to_dict()
    convention = record.pop("convention")
    frame = f"{statement}; OpenCV camera-to-world (x right, y down, z forward), pixel intrinsics"
    write_json({"convention": convention, "frame": frame, **record}, path, indent=1)


def run_render(args: argparse.Namespace) -> None:
    from diffusers.utils import logging as diffusers_logging

    from lagernvs.cli.render_plan import choose_path, read_keyframes, read_sources
    from lagernvs.io import check_fps
    from lagernvs.pipeline import load_pipeline, resolve_device
    from lagernvs.staging import OutputFolder

    diffusers_logging.disable_progress_bar()
    check_fps(args.fps)
    device = resolve_device(args.device)
    with OutputFolder(args.output_dir, RESULTS, args.overwrite) as out:
        sources = read_sources(args)
        keyframes = read_keyframes(args)
        path = None if keyframes is not None else choose_path(args, sources.kind)
        vggt = args.vggt_weights if sources.kind == "estimated" else None
        pipe = load_pipeline(
            args.model, preset=args.preset, device=device, with_denoiser=False, vggt_weights=vggt
        )
        count = _render(args, pipe, sources, keyframes, path, out.staging)
        out.commit()
    video = out.path / "video.mp4"
    written = f", {video}" if video.is_file() else ""
    cameras = out.path / "cameras.json"
    print(f"rendered {count} frames to {out.path / 'frames'}{written} and {cameras}")


def _render(
    args: argparse.Namespace,
    pipe: Any,
    sources: Any,
    keyframes: Any,
    path: str | None,
    staging: Path,
) -> int:
    """Encode once, render every target chunk by chunk into ``staging``; the frame count."""
    from lagernvs.cli.render_plan import FRAMES, render_size, target_cameras
    from lagernvs.io import FrameWriter, VideoWriter, check_video_size
    from lagernvs.pipeline.estimation import estimate_source_cameras

    size, notes = render_size(args, pipe.model.config, sources.images, keyframes)
    check_video_size(*size, args.upscale)
    for note in notes:
        print(note)
    images, cameras = sources.images, sources.cameras
    if sources.kind == "estimated":
        images, cameras = estimate_source_cameras(pipe.camera_estimator, images)
        _save_cameras(cameras, FRAMES["estimated"], staging / "source_cameras.json")
    elif sources.kind == "unposed" and keyframes is None:
        print(
            f"note: no cameras for the images and no --vggt-weights: rendering them unposed "
            f"along --path {path} around the first image's camera (give --vggt-weights "
            "VGGT-1B/model.pt to estimate the cameras and follow them)"
        )
    scene = pipe.encode(images, cameras)
    targets = target_cameras(args, path, scene.source_cameras, keyframes, size)
    pipe.set_progress_bar_config(desc="render", leave=False)
    frames = FrameWriter(staging / "frames")
    video = VideoWriter(staging / "video.mp4", fps=args.fps, upscale=args.upscale)
    with contextlib.ExitStack() as stack:
        writer = _open_video(stack, video)
        for start in pipe.progress_bar(range(0, len(targets), args.chunk_size)):
            output = pipe.render(
                scene, targets[start : start + args.chunk_size], height=size[0], width=size[1],
                chunk_size=args.chunk_size, output_type="np",
            )  # fmt: skip
            for frame in output.images:
                frames.append(frame)
                if writer is not None:
                    writer.append(frame)
    _save_cameras(targets, FRAMES[sources.kind], staging / "cameras.json")
    return frames.count
