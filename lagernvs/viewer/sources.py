"""What `lagernvs view` shows: source images and cameras from the command line, and the model.

Three sources: ``--images`` (with ``--cameras FILE``, cameras estimated by VGGT with
``--vggt-weights``, or neither: unposed), ``--scene DIR --views ...`` (any capture
:func:`lagernvs.load_scene` reads) and ``--demo`` (the first bundled demo scene). The model is
loaded by :func:`load_viewer_pipeline` (the one place that names the loader).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lagernvs.cameras import Cameras

__all__ = ["Sources", "estimate_source_cameras", "load_viewer_pipeline", "read_sources"]


@dataclass
class Sources:
    """Source images (list of (3, H, W) tensors), their cameras (None: unposed) and a label."""

    images: list[Any]
    cameras: Cameras | None
    label: str


def load_viewer_pipeline(model: str, device: str) -> Any:
    """The pipeline of model spec ``model`` (``"demo"``, a save_pretrained folder, ...)."""
    from lagernvs.pipeline import load_pipeline

    return load_pipeline(model, device=device)


def estimate_source_cameras(images: list[Any], weights: str, device: str) -> Cameras:
    """Cameras of unposed ``images`` estimated by VGGT-1B from the local file ``weights``
    (poses relative to the first image, normalised like training; see
    :meth:`~lagernvs.models.camera_estimator.VGGTCameraEstimator.estimate_cameras`)."""
    if not Path(weights).is_file():
        raise FileNotFoundError(f"VGGT weights {weights} do not exist; give a local VGGT-1B file")
    try:
        from lagernvs.models.camera_estimator import VGGTCameraEstimator
    except ImportError:
        raise ValueError(
            "camera estimation is not available in this version of lagernvs; pass --cameras "
            "FILE, or drop --vggt-weights to view the images unposed"
        ) from None
    from lagernvs.pipeline import resolve_device

    estimator = VGGTCameraEstimator.from_vggt_checkpoint(weights).to(resolve_device(device))
    return estimator.estimate_cameras(images).to("cpu")


def read_sources(args: argparse.Namespace) -> Sources:
    """The source views named on the command line (files are read here, before the model
    loads, so that a bad path fails at once)."""
    from lagernvs.pipeline import load_images

    if args.demo:
        from lagernvs.demo import DEMO_SCENES_DIR, load_demo_scenes

        scene = load_demo_scenes(DEMO_SCENES_DIR)[0]
        images = list(scene.source_images)
        return Sources(images, scene.source_cameras, f"demo scene {scene.scene_id}")
    if args.scene is not None:
        from lagernvs.data import load_scene

        scene = load_scene(args.scene)
        views = args.views if args.views else [0, scene.num_frames - 1]
        scene = scene.select(views)
        cameras = Cameras.from_scene(scene, ignore_distortion=args.ignore_distortion)
        label = f"{Path(args.scene).name} (views {', '.join(map(str, views))})"
        return Sources(load_images(scene.image_paths), cameras, label)
    images = load_images(args.images)
    label = f"{len(images)} image{'s' if len(images) != 1 else ''}"
    if args.cameras is not None:
        cameras = Cameras.load(args.cameras)
        if len(cameras) != len(images):
            raise ValueError(
                f"{args.cameras} holds {len(cameras)} cameras for {len(images)} images; give "
                "one camera per image, in the same order"
            )
        return Sources(images, cameras, label)
    if args.vggt_weights is not None:
        cameras = estimate_source_cameras(images, args.vggt_weights, args.device)
        return Sources(images, cameras, f"{label}, cameras estimated by VGGT")
    return Sources(images, None, f"{label}, unposed")
