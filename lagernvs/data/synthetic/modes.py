"""The "modes" family: scenes whose unseen part has K known answers.

Each scene has designated source frames (the context views of the sampled demo and of the
extrapolation benchmark). Every surface point that no source frame sees (depth-based
visibility, :func:`~lagernvs.data.synthetic.visibility_mask`: a property of the 3D point, so the
same from every camera) carries one of ``NUM_MODES`` alternative textures; everything the
sources see keeps the world's own materials, made smooth (:func:`smooth_materials`: slow
gradients instead of checkers and stripes, so that what the sources saw can be rendered sharply
by a small model and what they did not see is the only real uncertainty). Objects that no
source shows are left out (:func:`drop_unshown_objects`), so what the sources never saw is the
room's walls and the far sides of objects they did see: its geometry follows from what they saw,
and only its texture is unknown. The alternatives are a fixed set for all scenes: one clearly
different hue each, with a low-frequency brightness pattern (a solid texture of the world
point), Lambertian-shaded like the rest. So what the sources never saw has exactly K plausible
completions, and even a blurry prediction is much closer to one of them than to their average,
which is what a regression (MSE) renderer predicts there.

A scene draws the alternative its images show; :func:`render_modes_scene` renders all of them
(``alternatives``: (K, N, 3, H, W)) with the mask of hidden pixels, so a prediction can be scored
against the nearest alternative and one can tell which it chose
(:mod:`lagernvs.evaluation.modes`). The trajectories pan (``MODE_PAN``) so that frames beyond
the sources look at much that the sources do not see.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from lagernvs.data.synthetic.raycast import shading
from lagernvs.data.synthetic.render import cast_world_views, draw_cameras
from lagernvs.data.synthetic.visibility import visibility_mask
from lagernvs.data.synthetic.world import (
    PATTERNS,
    SyntheticWorld,
    make_world,
    seeded_rng,
    select_objects,
)

__all__ = [
    "MODE_COLORS",
    "MODE_FRAMES",
    "MODE_PAN",
    "MIN_SHOWN_FRACTION",
    "MODE_SOURCES",
    "NUM_MODES",
    "ModesRender",
    "alternative_texture",
    "drop_unshown_objects",
    "hidden_mask",
    "render_modes_scene",
    "smooth_materials",
]

MODE_COLORS = ((0.92, 0.26, 0.18), (0.22, 0.80, 0.26), (0.22, 0.38, 0.96))
NUM_MODES = len(MODE_COLORS)
MODE_FRAMES = 10
MODE_SOURCES = (3, 6)
MODE_PAN = (0.6, 1.0)  # radians the views turn over a trajectory (magnitude, random sign)
# One direction per alternative (world frame) along which its brightness varies, so that the
# walls and objects show bands of a period of about 1.7 m.
_PATTERN_DIRECTIONS = ((1.0, 1.0, 0.6), (1.0, -1.0, 0.6), (-0.3, 1.0, -1.0))
_PATTERN_FREQUENCY = 0.6  # cycles per metre
_PATTERN_DEPTH = 0.3  # the pattern darkens the hue by up to this fraction
_GRADIENT = PATTERNS.index("gradient")
MIN_SHOWN_FRACTION = 0.002  # an object's pixels in all source views, as a fraction of one view
_SMOOTH_FREQUENCIES = (0.15, 0.5)  # gradient periods of 8 to 27 m: a slow shift between 2 colours


class ModesRender(NamedTuple):
    """Rendered frames of a modes scene with every alternative, and their exact cameras."""

    alternatives: Tensor  # (K, N, 3, H, W) float32 in [0, 1]: the frames with alternative k
    hidden: Tensor  # (N, H, W) bool: pixels whose surface point no source frame sees
    mode: int  # the alternative of this scene
    depth: Tensor  # (N, H, W) float32 z-depth
    c2w: Tensor  # (N, 4, 4) float64 OpenCV camera-to-world
    fxfycxcy: Tensor  # (N, 4) float64 pixels
    sources: tuple[int, ...]  # the designated source frames
    world: SyntheticWorld

    @property
    def images(self) -> Tensor:
        """(N, 3, H, W): the frames of the scene, with its own alternative."""
        return self.alternatives[self.mode]


def alternative_texture(points: Tensor, mode: int) -> Tensor:
    """Unshaded colour (..., 3) of alternative `mode` at world points (..., 3)."""
    if not 0 <= mode < NUM_MODES:
        raise ValueError(f"mode must be in [0, {NUM_MODES - 1}], got {mode}")
    direction = points.new_tensor(_PATTERN_DIRECTIONS[mode])
    phase = 2 * math.pi * _PATTERN_FREQUENCY * (points @ (direction / direction.norm()))
    brightness = 1.0 - _PATTERN_DEPTH * (0.5 + 0.5 * torch.sin(phase))
    return points.new_tensor(MODE_COLORS[mode]) * brightness[..., None]


def smooth_materials(world: SyntheticWorld, seed: int) -> SyntheticWorld:
    """`world` with every material a slow gradient between its two colours (stream 3 of `seed`)."""
    count = world.patterns.shape[0]
    frequencies = seeded_rng(seed, 3).uniform(*_SMOOTH_FREQUENCIES, count)
    return dataclasses.replace(
        world,
        patterns=torch.full_like(world.patterns, _GRADIENT),
        frequencies=torch.as_tensor(frequencies, dtype=world.frequencies.dtype),
    )


def drop_unshown_objects(
    world: SyntheticWorld, c2w: Tensor, fxfycxcy: Tensor, height: int, width: int
) -> SyntheticWorld:
    """`world` without the spheres and boxes that the source cameras (c2w (S, 4, 4)) show, all
    views together, on fewer pixels than ``MIN_SHOWN_FRACTION`` of one view's.

    Why: an object no source shows may or may not be there, an uncertainty outside the K
    alternatives (no prediction could know it). Without such objects, what the sources never
    saw is the room's walls and the far sides of objects they did see: its geometry follows from
    what they saw and only its texture is one of the K.
    """
    hits, _ = cast_world_views(world, c2w, fxfycxcy, height, width)
    num_objects = world.spheres.shape[0] + world.box_centers.shape[0]
    pixels = torch.bincount(hits.objects.flatten(), minlength=num_objects + 1)[1:]
    return select_objects(world, pixels >= MIN_SHOWN_FRACTION * height * width)


def hidden_mask(depth: Tensor, c2w: Tensor, fxfycxcy: Tensor, sources: Sequence[int]) -> Tensor:
    """(N, H, W) bool: pixels of N frames (depth (N, H, W)) that no source frame sees."""
    index = list(sources)
    return ~torch.stack(
        [
            visibility_mask(
                depth[t], c2w[t], fxfycxcy[t], depth[index], c2w[index], fxfycxcy[index]
            )
            for t in range(depth.shape[0])
        ]
    )


def render_modes_scene(
    seed: int,
    num_frames: int = MODE_FRAMES,
    height: int = 64,
    width: int = 64,
    sources: Sequence[int] = MODE_SOURCES,
    trajectory: str | None = None,
    fov_degrees: tuple[float, float] = (50.0, 70.0),
) -> ModesRender:
    """Draw modes scene `seed` and render its frames with every alternative.

    The geometry and the trajectory (before panning) are those of
    :func:`~lagernvs.data.synthetic.render_synthetic_scene` with the same seed; the pan, the
    scene's alternative and the smooth materials come from further streams of the seed.
    """
    sources = tuple(int(s) for s in sources)
    if not sources or not all(0 <= s < num_frames for s in sources):
        raise ValueError(
            f"sources must be frame indices in [0, {num_frames - 1}], got {list(sources)}"
        )
    rng = seeded_rng(seed, 2)
    pan = float(rng.uniform(*MODE_PAN) * rng.choice([-1.0, 1.0]))
    mode = int(rng.integers(NUM_MODES))
    c2w, fxfycxcy = draw_cameras(seed, num_frames, height, width, trajectory, fov_degrees, pan)
    world = smooth_materials(make_world(seed, c2w[:, :3, 3].numpy()), seed)
    world = drop_unshown_objects(world, c2w[list(sources)], fxfycxcy[list(sources)], height, width)
    hits, depth = cast_world_views(world, c2w, fxfycxcy, height, width)
    hidden = hidden_mask(depth, c2w, fxfycxcy, sources)
    shade = shading(world, hits.normals)
    alternatives = []
    for k in range(NUM_MODES):
        colors = (alternative_texture(hits.points, k) * shade).clamp(0.0, 1.0)
        alternatives.append(torch.where(hidden[..., None], colors, hits.colors))
    images = torch.stack(alternatives).permute(0, 1, 4, 2, 3).float()
    return ModesRender(images, hidden, mode, depth.float(), c2w, fxfycxcy, sources, world)
