"""Procedural worlds: a room with textured boxes and spheres, and camera trajectories inside it.

Everything is drawn from a seed: the trajectory (a forward walk or an arc, like the Re10k
camera paths) and the objects and materials, which keep clear of the cameras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

ROOM_LO = (-4.0, -4.0, 0.0)
ROOM_HI = (4.0, 4.0, 3.0)
PATTERNS = ("checker", "stripes", "gradient")
TRAJECTORIES = ("forward", "arc")
_MARGIN = 0.35  # minimum distance between a camera and any surface


@dataclass(frozen=True)
class SyntheticWorld:
    """Geometry and materials of one procedural world (float64 tensors).

    Objects are ordered: the 6 room walls (material 0..5), then spheres, then boxes; the material
    arrays have one row per object in that order.
    """

    spheres: Tensor  # (K, 4): centre xyz, radius
    box_centers: Tensor  # (M, 3)
    box_half_sizes: Tensor  # (M, 3)
    box_yaws: Tensor  # (M,) rotation about world z
    colors_a: Tensor  # (6 + K + M, 3)
    colors_b: Tensor  # (6 + K + M, 3)
    patterns: Tensor  # (6 + K + M,) index into PATTERNS
    frequencies: Tensor  # (6 + K + M,) cycles per metre
    angles: Tensor  # (6 + K + M,) pattern orientation (stripes, gradient)
    light_dir: Tensor  # (3,) unit vector towards the light


def seeded_rng(seed: int, *stream: int) -> np.random.Generator:
    """Generator of one random stream of `seed` (streams are independent of each other)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """OpenCV camera-to-world (4, 4) at `eye` looking at `target` with world `up` (default +z)."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    norm = np.linalg.norm(right)
    if norm < 1e-8:
        raise ValueError("look_at: the viewing direction is parallel to `up`; pass another `up`")
    right = right / norm
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, down, forward], axis=1)
    c2w[:3, 3] = eye
    return c2w


def draw_trajectory(
    rng: np.random.Generator, num_frames: int, kind: str, pan: float = 0.0
) -> np.ndarray:
    """Camera-to-world matrices (N, 4, 4) of a forward walk or an arc inside the room.

    `pan` (radians) turns the views about world z by `pan * (s - 0.5)` at path position s in
    [0, 1] on top of the path's own turning (arcs turn by `|pan|` in the direction of their
    orbit), so the first and last frames look at what the middle ones do not see.
    """
    lo, hi = np.array(ROOM_LO) + 1.0, np.array(ROOM_HI) - 1.0
    steps = np.linspace(0.0, 1.0, num_frames)
    for _ in range(100):
        turn = pan
        if kind == "forward":
            start = rng.uniform(lo[:2] * 0.8, hi[:2] * 0.8)
            heading = rng.uniform(0.0, 2.0 * math.pi)
            direction = np.array([math.cos(heading), math.sin(heading)])
            length = rng.uniform(1.5, 3.0)
            xy = start[None] + steps[:, None] * length * direction[None]
            z = rng.uniform(1.2, 1.8) + 0.05 * np.sin(steps * rng.uniform(2.0, 6.0))
            eyes = np.concatenate([xy, z[:, None]], axis=1)
            yaw = heading + rng.uniform(-0.3, 0.3) * np.sin(steps * math.pi)
            pitch = rng.uniform(-0.25, 0.05)
            look = np.stack(
                [
                    np.cos(yaw) * math.cos(pitch),
                    np.sin(yaw) * math.cos(pitch),
                    np.full_like(yaw, math.sin(pitch)),
                ],
                axis=1,
            )
            targets = eyes + look
        else:
            center = np.array([*rng.uniform(-1.0, 1.0, 2), rng.uniform(0.5, 1.2)])
            radius = rng.uniform(2.0, 2.8)
            angle0 = rng.uniform(0.0, 2.0 * math.pi)
            span = rng.uniform(0.6, 1.6) * rng.choice([-1.0, 1.0])
            angles = angle0 + steps * span
            eyes = np.stack(
                [
                    center[0] + radius * np.cos(angles),
                    center[1] + radius * np.sin(angles),
                    np.full_like(angles, rng.uniform(1.3, 2.0)),
                ],
                axis=1,
            )
            targets = np.broadcast_to(center, eyes.shape)
            turn = abs(pan) * float(np.sign(span))
        if np.all((eyes >= lo) & (eyes <= hi)):
            c2w = np.stack([look_at(e, t) for e, t in zip(eyes, targets, strict=True)])
            c2w[:, :3, :3] = _yaw(turn * (steps - 0.5)) @ c2w[:, :3, :3]
            return c2w
    raise RuntimeError("could not place a camera trajectory inside the room")


def _yaw(angles: np.ndarray) -> np.ndarray:
    """Rotations (N, 3, 3) about world z by `angles` (N,)."""
    cos, sin = np.cos(angles), np.sin(angles)
    zero, one = np.zeros_like(angles), np.ones_like(angles)
    rows = [[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def _clear_of(cameras: np.ndarray, center: np.ndarray, radius: float) -> bool:
    return bool(np.min(np.linalg.norm(cameras - center, axis=1)) > radius + _MARGIN)


def make_world(seed: int, camera_positions: np.ndarray) -> SyntheticWorld:
    """Draw objects and materials from `seed`, keeping every object clear of the cameras."""
    rng = seeded_rng(seed, 1)
    lo, hi = np.array(ROOM_LO), np.array(ROOM_HI)
    spheres, boxes = [], []
    for _ in range(200):
        if len(spheres) >= 3:
            break
        radius = rng.uniform(0.25, 0.6)
        center = np.array([*rng.uniform(lo[:2] + 0.8, hi[:2] - 0.8), rng.uniform(radius, 2.0)])
        if _clear_of(camera_positions, center, radius):
            spheres.append([*center, radius])
    for _ in range(200):
        if len(boxes) >= 4:
            break
        half = rng.uniform(0.2, 0.6, 3)
        center = np.array([*rng.uniform(lo[:2] + 0.8, hi[:2] - 0.8), half[2]])
        if _clear_of(camera_positions, center, float(np.linalg.norm(half))):
            boxes.append((center, half, rng.uniform(0.0, math.pi)))
    num_objects = 6 + len(spheres) + len(boxes)
    light = np.array([*rng.uniform(-0.5, 0.5, 2), 1.0])

    def tensor(values: object, shape: tuple[int, ...]) -> Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64).reshape(shape))

    return SyntheticWorld(
        spheres=tensor(spheres, (len(spheres), 4)),
        box_centers=tensor([b[0] for b in boxes], (len(boxes), 3)),
        box_half_sizes=tensor([b[1] for b in boxes], (len(boxes), 3)),
        box_yaws=tensor([b[2] for b in boxes], (len(boxes),)),
        colors_a=tensor(rng.uniform(0.05, 0.95, (num_objects, 3)), (num_objects, 3)),
        colors_b=tensor(rng.uniform(0.05, 0.95, (num_objects, 3)), (num_objects, 3)),
        patterns=torch.as_tensor(rng.integers(0, len(PATTERNS), num_objects)),
        frequencies=tensor(rng.uniform(0.8, 3.0, num_objects), (num_objects,)),
        angles=tensor(rng.uniform(0.0, math.pi, num_objects), (num_objects,)),
        light_dir=tensor(light / np.linalg.norm(light), (3,)),
    )


def select_objects(world: SyntheticWorld, keep: Tensor) -> SyntheticWorld:
    """`world` with only the spheres and boxes where `keep` (K + M,) bool is true (in object
    order: spheres, then boxes); the room and its materials stay."""
    num_spheres = world.spheres.shape[0]
    if keep.shape != (num_spheres + world.box_centers.shape[0],):
        raise ValueError(f"keep must have one entry per sphere and box, got {tuple(keep.shape)}")
    keep = keep.to(torch.bool)
    spheres, boxes = keep[:num_spheres], keep[num_spheres:]
    materials = torch.cat([keep.new_ones(6), keep])
    return SyntheticWorld(
        spheres=world.spheres[spheres],
        box_centers=world.box_centers[boxes],
        box_half_sizes=world.box_half_sizes[boxes],
        box_yaws=world.box_yaws[boxes],
        colors_a=world.colors_a[materials],
        colors_b=world.colors_b[materials],
        patterns=world.patterns[materials],
        frequencies=world.frequencies[materials],
        angles=world.angles[materials],
        light_dir=world.light_dir,
    )
