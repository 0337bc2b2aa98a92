"""What `lagernvs render` renders, decided before the model runs: the sources (images with given,
estimated or no cameras), the render size, and the target cameras (a path or a cameras file).

Everything here that can fail on bad input does so before the encoder runs, with one line.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lagernvs.cli.common import UserFacingError

__all__ = [
    "FRAMES",
    "PATH_OPTIONS",
    "RenderSources",
    "check_file",
    "choose_path",
    "read_keyframes",
    "read_sources",
    "render_size",
    "target_cameras",
]

FRAMES = {
    "posed": "the world frame of the input cameras (--cameras or --scene), in their units",
    "estimated": (
        "the frame of the cameras VGGT estimated from the photos (source_cameras.json): the first "
        "photo's camera at the origin looking along +z, the farthest source camera at distance "
        "1/1.35"
    ),
    "unposed": (
        "the frame of the first photo's camera (at the origin, looking along +z) at the model's "
        "normalised scale (the farthest source camera would sit at distance 1/1.35, in a "
        "direction the model infers)"
    ),
}
"""What cameras.json's coordinates mean, by kind of sources (stated inside the file)."""
PATH_OPTIONS: dict[str, dict[str, str]] = {
    "orbit": {"degrees": "degrees"},
    "extrapolate": {"fraction": "fraction"},
    "spiral": {"radius": "radius"},
    "lemniscate": {"radius": "radius"},
    "zoom-in": {"zoom": "factor"},
    "zoom-out": {"zoom": "factor"},
    **{
        kind: {"distance": "distance"}
        for kind in ("dolly", "dolly-zoom", "left", "right", "up", "down", "forward", "back")
    },
}
"""Command-line option -> keyword argument of each path that takes one."""
MAX_SCALE = 2
"""--size may exceed the model's native size by this factor a side (with a warning), no more."""
UNPOSED_PATH = "orbit"
ORBIT_DEGREES = 30.0


@dataclass
class RenderSources:
    """Source images ((3, H, W) tensors), their cameras and how the cameras came about."""

    images: list[Any]
    cameras: Any
    kind: str
    """``"posed"`` (given), ``"estimated"`` (by VGGT, once the model loads) or ``"unposed"``."""


def check_file(path: str, what: str) -> Path:
    """``path`` when it is a file; a one-line error naming a folder or a missing file."""
    file = Path(path)
    if file.is_dir():
        raise UserFacingError(f"{what} {file} is a folder; give the file itself")
    if not file.is_file():
        raise UserFacingError(f"{what} {file} does not exist")
    return file


def read_sources(args: argparse.Namespace) -> RenderSources:
    """The source images (read and checked now, so bad files fail before the model loads) and
    cameras from --images/--cameras/--vggt-weights or --scene/--views/--format."""
    from lagernvs.cameras import Cameras
    from lagernvs.data.images import load_images
    from lagernvs.data.model_inputs import check_source_images

    if args.scene is not None:
        if args.images or args.cameras or args.vggt_weights:
            raise UserFacingError(
                "use either --scene or --images (with --cameras or --vggt-weights), not both"
            )
        from lagernvs.data import load_scene

        scene = load_scene(args.scene, args.format)
        views = args.views if args.views else [0, scene.num_frames - 1]
        scene = scene.select(views)
        cameras = Cameras.from_scene(scene, ignore_distortion=args.ignore_distortion)
        images = load_images(scene.image_paths)
        check_source_images(images)
        return RenderSources(images, cameras, "posed")
    if not args.images:
        raise UserFacingError("give source images (--images a.jpg b.jpg) or a --scene")
    if args.views or args.format:
        raise UserFacingError("--views and --format select frames of a --scene, not of --images")
    if args.cameras and args.vggt_weights:
        raise UserFacingError("give either --cameras or --vggt-weights, not both")
    cameras = Cameras.load(check_file(args.cameras, "cameras file")) if args.cameras else None
    if args.vggt_weights:
        from lagernvs.pipeline.estimation import check_vggt_weights

        check_vggt_weights(args.vggt_weights)
    images = load_images(args.images)
    check_source_images(images)
    if cameras is not None and len(cameras) != len(images):
        raise UserFacingError(
            f"{args.cameras} holds {len(cameras)} cameras for {len(images)} images; give one "
            "camera per image, in the same order"
        )
    kind = "posed" if cameras is not None else "estimated" if args.vggt_weights else "unposed"
    return RenderSources(images, cameras, kind)


def read_keyframes(args: argparse.Namespace) -> Any:
    """The cameras of --cameras-path (None without it)."""
    if args.cameras_path is None:
        return None
    if args.path is not None:
        raise UserFacingError("give either --path or --cameras-path, not both")
    from lagernvs.cameras import Cameras

    return Cameras.load(check_file(args.cameras_path, "cameras path file"))


def choose_path(args: argparse.Namespace, kind: str) -> str:
    """The --path to render: as given, else ``spline`` through known or estimated cameras and
    ``orbit`` around the first camera of unposed images; refuses options it does not take."""
    from lagernvs.trajectories import SOURCE_PATHS

    path = args.path or (UNPOSED_PATH if kind == "unposed" else "spline")
    if kind == "unposed" and path in SOURCE_PATHS:
        raise UserFacingError(
            f"--path {path} follows the source cameras; give --cameras, --vggt-weights or "
            "--scene, or use a path around the first image (orbit, spiral, dolly, ...)"
        )
    for option in ("degrees", "fraction", "distance", "radius", "zoom"):
        value = getattr(args, option)
        if value is not None and not math.isfinite(value):
            raise UserFacingError(f"--{option} must be a finite number, got {value}")
        if value is not None and option not in PATH_OPTIONS.get(path, {}):
            takers = sorted(k for k, v in PATH_OPTIONS.items() if option in v)
            raise UserFacingError(
                f"--{option} does not apply to --path {path}; it sets --path {', '.join(takers)}"
            )
    return path


def render_size(args: argparse.Namespace, config: Any, images: list[Any], keyframes: Any) -> Any:
    """(H, W) to render and the lines to tell the user (crops, a size above the native one).

    Default: the model's native size for these photos
    (:func:`~lagernvs.data.model_inputs.model_input_size`), or the image size of the
    --cameras-path file when it has one that fits the model's patch grid.
    """
    from lagernvs.data.model_inputs import crop_note, model_input_size

    patch = int(config["patch_size"])
    native = model_input_size(config, images[0].shape[-2:])
    sizes = {tuple(int(v) for v in image.shape[-2:]) for image in images}
    notes = [n for n in (crop_note(config, size) for size in sorted(sizes)) if n is not None]
    if args.size is not None:
        height, width = args.size
    elif keyframes is not None and len(keyframes.image_sizes.unique(dim=0)) == 1:
        height, width = keyframes.image_size
        if height % patch or width % patch:
            height, width = native
    else:
        height, width = native
    if height <= 0 or width <= 0 or height % patch or width % patch:
        raise UserFacingError(
            f"--size {height} {width} must be positive multiples of the model's patch size "
            f"{patch} (its native size is {native[0]} {native[1]})"
        )
    if max(height, width) > MAX_SCALE * max(native):
        raise UserFacingError(
            f"--size {height} {width} is more than {MAX_SCALE} times the model's native "
            f"{native[0]}x{native[1]}, which it cannot render well; render at most "
            f"{MAX_SCALE * native[0]} {MAX_SCALE * native[1]} and enlarge the video with --upscale"
        )
    if max(height, width) > max(native):
        notes.append(
            f"warning: --size {height}x{width} is above the model's native {native[0]}x"
            f"{native[1]}; expect blur and grid artefacts"
        )
    return (height, width), notes


def target_cameras(
    args: argparse.Namespace, path: str | None, sources: Any, keyframes: Any, size: Any
) -> Any:
    """The cameras to render at ``size`` (H, W): the --cameras-path file (resampled along a
    spline through it when --num-frames asks for another count), or --path around ``sources``
    (the encoded scene's source cameras; None when unposed: the first photo's camera)."""
    import torch

    from lagernvs import trajectories
    from lagernvs.cameras import Cameras

    height, width = size
    if keyframes is not None:
        if args.num_frames is not None and args.num_frames != len(keyframes):
            keyframes = trajectories.interpolate(keyframes, args.num_frames, ease=False)
        return keyframes.crop_resize(size)
    if sources is None:  # the first photo's camera, with the default intrinsics fx = fy = W
        intrinsics = [float(width), float(width), width / 2.0, height / 2.0]
        sources = Cameras(torch.eye(4, dtype=torch.float64), intrinsics, size)
    options: dict[str, Any] = {"image_size": size}
    for option, keyword in PATH_OPTIONS.get(path, {}).items():
        value = getattr(args, option)
        if option == "degrees" and value is None:
            value = ORBIT_DEGREES
        if value is not None:
            options[keyword] = value
    num_frames = 60 if args.num_frames is None else args.num_frames
    return trajectories.camera_path(path, sources, num_frames, **options).crop_resize(size)
