"""The bundled demo: a small LagerNVS model and held-out procedural scenes, no download needed.

``lagernvs/assets/demo_model`` is a ``save_pretrained`` pipeline folder (trained by
``scripts/train_demo_model.py`` with ``configs/train/demo.yaml``); ``lagernvs/assets/
demo_scenes`` holds synthetic scenes the model never saw, in the Re10k layout, with
``views.json`` naming each scene's source ("context") and novel ("target") frames.

:func:`run_demo` renders every target view, scores it against the ground truth next to the
nearest-source-view baseline (the source image whose camera centre is closest to the target's),
writes comparison images, an orbit video (with the optional ``video`` extra; without it, a line
says how to get it) and ``metrics.json``, and prints a summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lagernvs.cameras import Cameras
from lagernvs.grids import save_labelled_grid
from lagernvs.pipeline import LagerNVSPipeline
from lagernvs.pipeline.loading import (
    DEMO_DENOISER_DIR,
    DEMO_MODEL_DIR,
    DEMO_SCENES_DIR,
    demo_pipeline,
)

# Sampled demo: scenes of the synthetic "modes" family (exact depth and visibility, and every
# plausible completion of what the sources do not see is known; the seeds are not among the
# training scenes, which are seeded with 32-bit draws). The context is the family's designated
# sources, frames 3 and 6 of a 10-frame path; the targets are its ends, which pan towards
# surfaces the sources never saw.
SAMPLED_SEEDS = (101, 202, 303, 404, 505, 606, 707, 808)
SAMPLED_CONTEXT, SAMPLED_TARGETS = (3, 6), (0, 9)
SAMPLED_NUM_SAMPLES = 6
# The sampler of the bundled denoiser (demo_pipeline loads it as an LCMScheduler: each step
# predicts the clean image and noises it afresh to the next timestep). Its timesteps crowd the
# noisiest tenth of the schedule, where a sample settles which alternative it shows, and it
# stops at t = 799 with the denoiser's clean-image estimate there: the low-noise steps would
# only add detail that this small denoiser gets wrong. No guidance: on the bundled denoiser
# it did not lower the mode error (README, "The sampled demo").
SAMPLED_TIMESTEPS = (999, 979, 959, 939, 919, 899, 859, 799)
DEMO_SPLIT = "test"
VIEWS_FILE = "views.json"
ORBIT_FRAMES = 36
ORBIT_DEGREES = 30.0
VIDEO_UPSCALE = 4

__all__ = [
    "DEMO_MODEL_DIR",
    "DEMO_DENOISER_DIR",
    "DEMO_SCENES_DIR",
    "HeldOutViews",
    "demo_pipeline",
    "load_demo_scenes",
    "nearest_source_view",
    "run_demo",
    "run_sampled_demo",
]


@dataclass
class HeldOutViews:
    """Source and target views of one held-out scene: images (V, 3, H, W) with their cameras."""

    scene_id: str
    source_images: Tensor
    source_cameras: Cameras
    target_images: Tensor
    target_cameras: Cameras


def load_demo_scenes(root: str | Path) -> list[HeldOutViews]:
    """The scenes of ``root`` (Re10k layout + ``views.json``) with their views and cameras."""
    from lagernvs.data import load_scene, read_view_index
    from lagernvs.data.images import load_images

    root = Path(root)
    scenes = []
    for entry in read_view_index(root / VIEWS_FILE):
        scene = load_scene(root, "re10k", scene_id=entry.scene, split=DEMO_SPLIT)
        sources, targets = scene.select(list(entry.context)), scene.select(list(entry.target))
        scenes.append(
            HeldOutViews(
                scene_id=entry.scene,
                source_images=torch.stack(load_images(sources.image_paths)),
                source_cameras=Cameras.from_scene(sources),
                target_images=torch.stack(load_images(targets.image_paths)),
                target_cameras=Cameras.from_scene(targets),
            )
        )
    return scenes


def nearest_source_view(sources: Tensor, source_cameras: Cameras, targets: Cameras) -> Tensor:
    """(T, 3, H, W): for each target camera, the source image whose camera centre is closest."""
    distances = torch.cdist(targets.centers.double(), source_cameras.centers.double())
    return sources[distances.argmin(dim=1)]


def _scores(pred: Tensor, target: Tensor) -> dict[str, float]:
    from lagernvs.quality import psnr, ssim

    return {"psnr": float(psnr(pred, target).mean()), "ssim": float(ssim(pred, target).mean())}


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}


def _comparison(
    scene: HeldOutViews, rendered: Tensor, baseline: Tensor
) -> tuple[list[Tensor], list[str]]:
    """Labelled grid rows: the sources, the ground truth, LagerNVS and the nearest source view."""
    rows = [scene.source_images, scene.target_images, rendered, baseline]
    return rows, ["sources", "ground truth", "LagerNVS", "nearest source"]


def run_demo(
    output_dir: str | Path = "lagernvs-demo",
    device: str | torch.device = "cpu",
    pipe: LagerNVSPipeline | None = None,
    scenes_dir: str | Path | None = None,
    verbose: bool = True,
    sampled: bool = False,
) -> dict[str, Any]:
    """Render the demo scenes, compare with ground truth and the baseline, write the results.

    Writes ``<output_dir>/metrics.json`` (``deterministic`` and ``baseline_nearest_view`` PSNR /
    SSIM averaged over the targets of each scene, then over scenes, plus per-scene values),
    ``<scene>.png`` grids (sources; ground truth; LagerNVS; nearest source view) and
    ``orbit.mp4`` (an arc around each scene's centre of attention). Returns the metrics.
    ``pipe`` and ``scenes_dir`` default to the bundled model and scenes. With ``sampled`` the
    diffusion decoder also runs (:func:`run_sampled_demo`) and adds a ``"sampled"`` entry.
    """
    from lagernvs import trajectories
    from lagernvs.io import write_json

    started = time.perf_counter()
    pipe = demo_pipeline(device, with_denoiser=sampled) if pipe is None else pipe
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    per_scene, orbit_frames = [], []
    for scene in load_demo_scenes(DEMO_SCENES_DIR if scenes_dir is None else scenes_dir):
        encoded = pipe.encode(scene.source_images, scene.source_cameras)
        size = pipe.model.image_size
        rendered = pipe.render(encoded, scene.target_cameras).images.cpu()
        truth = _to_size(scene.target_images, size)
        sources = encoded.source_images
        baseline = nearest_source_view(sources, encoded.source_cameras, scene.target_cameras)
        per_scene.append(
            {
                "scene": scene.scene_id,
                "num_targets": len(scene.target_cameras),
                "deterministic": _scores(rendered, truth),
                "baseline_nearest_view": _scores(baseline, truth),
            }
        )
        grid_scene = HeldOutViews(
            scene.scene_id, sources, scene.source_cameras, truth, scene.target_cameras
        )
        save_labelled_grid(
            output_dir / f"{scene.scene_id}.png", *_comparison(grid_scene, rendered, baseline)
        )
        path = trajectories.orbit(encoded.source_cameras, ORBIT_FRAMES, degrees=ORBIT_DEGREES)
        orbit_frames.append(pipe.render(encoded, path, output_type="np").images)
    video = _write_orbit(orbit_frames, output_dir / "orbit.mp4")
    metrics = {
        "deterministic": _mean([row["deterministic"] for row in per_scene]),
        "baseline_nearest_view": _mean([row["baseline_nearest_view"] for row in per_scene]),
        "num_scenes": len(per_scene),
        "num_target_views": sum(row["num_targets"] for row in per_scene),
        "image_size": list(pipe.model.image_size),
        "seconds": round(time.perf_counter() - started, 2),
        "per_scene": per_scene,
    }
    if sampled:
        metrics["sampled"] = run_sampled_demo(pipe, output_dir, verbose)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    write_json(metrics, output_dir / "metrics.json")
    if verbose:
        _print_summary(metrics, output_dir, video)
    return metrics


def run_sampled_demo(
    pipe: LagerNVSPipeline, output_dir: str | Path, verbose: bool = False
) -> dict[str, Any]:
    """Samples of extrapolated views next to the deterministic render and every true answer.

    Samples with the pipeline's scheduler through ``SAMPLED_TIMESTEPS`` (the bundled
    denoiser's LCMScheduler; any scheduler whose ``set_timesteps`` takes custom timesteps).
    The scenes are of the synthetic "modes" family (:mod:`lagernvs.data.synthetic.modes`):
    what the two source views do not see carries one of K known alternative textures, and the
    unseen target pixels are known exactly. Reported per scene, then averaged over scenes:

    * ``spread_seen`` / ``spread_unseen``: per-pixel spread across the samples
      (:func:`~lagernvs.diffusion.spread_by_visibility`); a good denoiser varies where nothing
      was seen and agrees with the truth where something was;
    * ``psnr_seen`` / ``psnr_seen_deterministic``: PSNR in seen pixels of the samples and of the
      deterministic render;
    * ``mode_error_sampled`` / ``mode_error_deterministic``: mean distance of unseen pixels to
      the nearest alternative (:func:`~lagernvs.evaluation.modes.mode_error`), low for samples
      that commit to one answer, high for the blend a regression renderer predicts;
    * ``mode_coverage``: fraction of the K alternatives chosen by at least one sample of a
      target (:func:`~lagernvs.evaluation.modes.mode_coverage`).

    Writes ``sampled_<seed>.png`` (a row per target: the K true alternatives, the deterministic
    render, the samples) and ``overview_sampled.png`` (the target of each scene that sees the
    most unseen surface). With ``verbose`` a line per scene reports progress.
    """
    from lagernvs.data.synthetic import NUM_MODES, render_modes_scene
    from lagernvs.diffusion import spread_by_visibility
    from lagernvs.evaluation.modes import chosen_alternative, mode_coverage, mode_error
    from lagernvs.quality import psnr

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    height, width = pipe.model.image_size
    context, targets = list(SAMPLED_CONTEXT), list(SAMPLED_TARGETS)
    k = SAMPLED_NUM_SAMPLES
    rows, overview = [], []
    for number, seed in enumerate(SAMPLED_SEEDS, start=1):
        started = time.perf_counter()
        render = render_modes_scene(seed, height=height, width=width, sources=context)
        sources = Cameras(render.c2w[context], render.fxfycxcy[context], (height, width))
        cameras = Cameras(render.c2w[targets], render.fxfycxcy[targets], (height, width))
        encoded = pipe.encode(render.images[context], sources)
        deterministic = pipe.render(encoded, cameras).images.cpu()
        samples = pipe.render(
            encoded,
            cameras,
            mode="sampled",
            num_samples=k,
            timesteps=SAMPLED_TIMESTEPS,
            generator=torch.Generator().manual_seed(seed),
        ).images.cpu()
        samples = samples.unflatten(0, (len(targets), k)).transpose(0, 1)  # (S, T, 3, H, W)
        # The context is the designated sources, so the unseen pixels are the hidden ones.
        seen = ~render.hidden[targets]
        truth = render.images[targets]
        alternatives = render.alternatives[:, targets].transpose(0, 1)  # (T, K, 3, H, W)
        choices = chosen_alternative(samples, alternatives, ~seen)  # (S, T)
        rows.append(
            {
                "seed": seed,
                **spread_by_visibility(samples, seen),
                "psnr_seen": float(
                    psnr(samples, truth.expand_as(samples), seen.expand(k, -1, -1, -1)).mean()
                ),
                "psnr_seen_deterministic": float(psnr(deterministic, truth, seen).mean()),
                "mode_error_sampled": float(mode_error(samples, alternatives, ~seen).nanmean()),
                "mode_error_deterministic": float(
                    mode_error(deterministic, alternatives, ~seen).nanmean()
                ),
                "mode_coverage": float(mode_coverage(choices, NUM_MODES).nanmean()),
                "unseen_fraction": float((~seen).float().mean()),
                "scene_alternative": render.mode,
                "chosen_alternatives": choices.T.tolist(),  # per target, per sample
            }
        )
        grid = [
            _sampled_rows(f"frame {frame}", alternatives[t], deterministic[t], samples[:, t])
            for t, frame in enumerate(targets)
        ]
        save_labelled_grid(
            output_dir / f"sampled_{seed}.png",
            [row for rows, _ in grid for row in rows],
            [label for _, labels in grid for label in labels],
        )
        rows_of_scene, labels_of_scene = grid[int((~seen).sum(dim=(1, 2)).argmax())]
        overview.append((rows_of_scene, [f"seed {seed}: {label}" for label in labels_of_scene]))
        if verbose:
            print(
                f"  sampled scene {number}/{len(SAMPLED_SEEDS)} (seed {seed}): "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )
    save_labelled_grid(
        output_dir / "overview_sampled.png",
        [row for rows, _ in overview for row in rows],
        [label for _, labels in overview for label in labels],
    )
    skip = ("seed", "scene_alternative", "chosen_alternatives")
    summary = _mean([{key: v for key, v in row.items() if key not in skip} for row in rows])
    summary.update(
        num_samples=k,
        scheduler=type(pipe.scheduler).__name__,
        timesteps=list(SAMPLED_TIMESTEPS),
        num_alternatives=NUM_MODES,
        scenes=len(rows),
        views=len(rows) * len(targets),
        per_scene=rows,
    )
    return summary


def _sampled_rows(
    target: str, alternatives: Tensor, deterministic: Tensor, samples: Tensor
) -> tuple[list[Tensor], list[str]]:
    """Labelled grid rows of one target: its true alternatives, the deterministic render and the
    samples."""
    rows = [alternatives, deterministic[None], samples]
    labels = [f"{target}: {len(alternatives)} true answers", "deterministic", "samples"]
    return rows, labels


def _write_orbit(frames: list[np.ndarray], path: Path) -> str:
    """Write the orbit video; without the optional video extra, say how to get it instead."""
    from lagernvs.io import write_video

    try:
        return str(write_video(np.concatenate(frames), path, upscale=VIDEO_UPSCALE))
    except ModuleNotFoundError as missing:
        return f"no {path.name} ({missing})"


def _to_size(images: Tensor, size: tuple[int, int]) -> Tensor:
    from lagernvs.data.model_inputs import crop_resize_images

    return images if tuple(images.shape[-2:]) == size else crop_resize_images(images, size)


def _print_summary(metrics: dict[str, Any], output_dir: Path, video: str) -> None:
    ours, base = metrics["deterministic"], metrics["baseline_nearest_view"]
    print(
        f"LagerNVS demo: {metrics['num_target_views']} novel views of {metrics['num_scenes']} "
        f"held-out scenes at {metrics['image_size'][0]}x{metrics['image_size'][1]}"
    )
    print(f"  {'method':<24}{'PSNR (dB)':>10}{'SSIM':>8}")
    print(f"  {'LagerNVS (demo model)':<24}{ours['psnr']:>10.2f}{ours['ssim']:>8.3f}")
    print(f"  {'nearest source view':<24}{base['psnr']:>10.2f}{base['ssim']:>8.3f}")
    if "sampled" in metrics:
        sampled = metrics["sampled"]
        print(
            f"  sampled ({sampled['num_samples']} samples of {sampled['views']} extrapolated "
            f"views, {sampled['num_alternatives']} true alternatives of unseen surfaces):"
        )
        print(
            f"    distance of unseen pixels to the nearest alternative: "
            f"{sampled['mode_error_sampled']:.3f} sampled vs "
            f"{sampled['mode_error_deterministic']:.3f} deterministic; alternatives covered "
            f"{sampled['mode_coverage']:.2f}"
        )
        print(
            f"    spread {sampled['spread_seen']:.3f} in seen vs {sampled['spread_unseen']:.3f} "
            f"in unseen pixels; PSNR in seen pixels {sampled['psnr_seen']:.2f} dB "
            f"(deterministic {sampled['psnr_seen_deterministic']:.2f})"
        )
    print(f"  wrote {output_dir / 'metrics.json'}, comparison grids and {video}")
    print(f"  ({metrics['seconds']:.1f} s)")
