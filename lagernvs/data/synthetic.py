"""Procedural scenes with exact cameras: textured boxes and spheres in a room, ray cast in torch.

Tests, the demo model and benchmark sanity checks need images whose cameras, depth and
visibility are known exactly. A scene is drawn from a seed (room, objects, procedural textures,
a camera trajectory like the Re10k ones: forward walks and arcs), rendered by a small vectorised
ray caster with view-independent Lambertian shading (so a surface point has the same colour in
every view), and can be written in the Re10k LVSM layout read by `lagernvs.data.load_scene`.

Conventions: OpenCV cameras (x right, y down, z forward), camera-to-world `c2w` (float64),
`fxfycxcy` in pixels with pixel (row i, column j) sampled at its centre (j + 0.5, i + 0.5) as in
`lagernvs.cameras.plucker_rays`; world z is up. Depth is z-depth (along the optical axis).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lagernvs.cameras import c2w_to_w2c, plucker_rays

ROOM_LO = (-4.0, -4.0, 0.0)
ROOM_HI = (4.0, 4.0, 3.0)
_EPS = 1e-9
_MARGIN = 0.35  # minimum distance between a camera and any surface
PATTERNS = ("checker", "stripes", "gradient")
TRAJECTORIES = ("forward", "arc")


@dataclass(frozen=True)
class SyntheticScene:
    """Geometry and materials of one procedural scene (float64 tensors).

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


class RayHits(NamedTuple):
    """First intersection of each ray: distance along the unit ray, point, normal, colour."""

    distance: Tensor  # (...,)
    points: Tensor  # (..., 3)
    normals: Tensor  # (..., 3)
    colors: Tensor  # (..., 3) in [0, 1]


class SyntheticRender(NamedTuple):
    """Rendered frames of a synthetic scene and their exact cameras."""

    images: Tensor  # (N, 3, H, W) float32 in [0, 1]
    depth: Tensor  # (N, H, W) float32 z-depth
    c2w: Tensor  # (N, 4, 4) float64 OpenCV camera-to-world
    fxfycxcy: Tensor  # (N, 4) float64 pixels
    scene: SyntheticScene


def _rng(seed: int, *stream: int) -> np.random.Generator:
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


def _trajectory(rng: np.random.Generator, num_frames: int, kind: str) -> np.ndarray:
    """Camera-to-world matrices (N, 4, 4) of a forward walk or an arc inside the room."""
    lo, hi = np.array(ROOM_LO) + 1.0, np.array(ROOM_HI) - 1.0
    steps = np.linspace(0.0, 1.0, num_frames)
    for _ in range(100):
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
                [np.cos(yaw) * math.cos(pitch), np.sin(yaw) * math.cos(pitch),
                 np.full_like(yaw, math.sin(pitch))],
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
                [center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles),
                 np.full_like(angles, rng.uniform(1.3, 2.0))],
                axis=1,
            )
            targets = np.broadcast_to(center, eyes.shape)
        if np.all((eyes >= lo) & (eyes <= hi)):
            return np.stack([look_at(e, t) for e, t in zip(eyes, targets, strict=True)])
    raise RuntimeError("could not place a camera trajectory inside the room")


def _clear_of(cameras: np.ndarray, center: np.ndarray, radius: float) -> bool:
    return bool(np.min(np.linalg.norm(cameras - center, axis=1)) > radius + _MARGIN)


def make_scene(seed: int, camera_positions: np.ndarray) -> SyntheticScene:
    """Draw objects and materials from `seed`, keeping every object clear of the cameras."""
    rng = _rng(seed, 1)
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

    return SyntheticScene(
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


def _room_distance(origins: Tensor, dirs: Tensor) -> Tensor:
    """Distance (R,) from inside the room to its walls along each ray."""
    safe = torch.where(dirs.abs() < _EPS, torch.full_like(dirs, _EPS), dirs)
    walls = torch.where(safe > 0, dirs.new_tensor(ROOM_HI), dirs.new_tensor(ROOM_LO))
    return ((walls - origins) / safe).min(dim=-1).values


def _sphere_distance(origins: Tensor, dirs: Tensor, spheres: Tensor) -> Tensor:
    """Entry distance (K, R) of rays into spheres, inf on a miss.

    Objects are the outer dimension so that every elementwise op runs over contiguous rays.
    """
    ocx, ocy, ocz = (origins[:, i] - spheres[:, i, None] for i in range(3))
    dx, dy, dz = dirs.unbind(-1)
    b = ocx * dx + ocy * dy + ocz * dz
    disc = b * b - (ocx * ocx + ocy * ocy + ocz * ocz) + spheres[:, 3, None] ** 2
    t = -b - disc.clamp_min(0).sqrt()
    return torch.where((disc >= 0) & (t > _EPS), t, torch.full_like(t, math.inf))


def _box_distance(origins: Tensor, dirs: Tensor, scene: SyntheticScene) -> Tensor:
    """Entry distance (M, R) of rays into the yawed boxes (slab test), inf on a miss.

    Division by a zero direction component gives +-inf, which the slab test handles.
    """
    cos, sin = scene.box_yaws.cos()[:, None], scene.box_yaws.sin()[:, None]
    centers, halves = scene.box_centers[:, :, None], scene.box_half_sizes[:, :, None]
    wx, wy = origins[:, 0] - centers[:, 0], origins[:, 1] - centers[:, 1]
    local_o = (cos * wx + sin * wy, cos * wy - sin * wx, origins[:, 2] - centers[:, 2])
    dx, dy, dz = dirs.unbind(-1)
    local_d = (cos * dx + sin * dy, cos * dy - sin * dx, dz)
    t_near = t_far = None
    for axis in range(3):
        inv = local_d[axis].reciprocal()
        t1 = (-halves[:, axis] - local_o[axis]) * inv
        t2 = (halves[:, axis] - local_o[axis]) * inv
        lo, hi = torch.minimum(t1, t2), torch.maximum(t1, t2)
        t_near = lo if t_near is None else torch.maximum(t_near, lo)
        t_far = hi if t_far is None else torch.minimum(t_far, hi)
    hit = (t_far >= t_near) & (t_near > _EPS)
    return torch.where(hit, t_near, torch.full_like(t_near, math.inf))


Components = tuple[Tensor, Tensor, Tensor]


def _face_frame(local: Components, half: Components) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Face of an axis-aligned box hit at `local` (per-ray x, y, z from the box centre).

    Returns the face axis (0, 1, 2), the side (+1, -1) and the two in-face coordinates. Works
    componentwise on (R,) tensors: reductions over a last dimension of 3 are slow on CPU.
    """
    ax, ay, az = (c.abs() / h for c, h in zip(local, half, strict=True))
    axis = torch.where((ax >= ay) & (ax >= az), 0, torch.where(ay >= az, 1, 2))
    x, y, z = local
    side = torch.sign(torch.where(axis == 0, x, torch.where(axis == 1, y, z)))
    return axis, side, torch.where(axis == 0, y, x), torch.where(axis == 2, y, z)


def _axis_normal(axis: Tensor, side: Tensor) -> Components:
    return tuple(torch.where(axis == i, side, torch.zeros_like(side)) for i in range(3))


def _surfaces(
    scene: SyntheticScene, points: Tensor, obj: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Normals (R, 3), texture coordinates u, v (R,) and material ids (R,) of hit points.

    `obj` is 0 for the room, 1..K for spheres and K+1..K+M for boxes.
    """
    num_spheres, num_boxes = scene.spheres.shape[0], scene.box_centers.shape[0]
    px, py, pz = points.unbind(-1)
    center = [(lo + hi) / 2 for lo, hi in zip(ROOM_LO, ROOM_HI, strict=True)]
    half = tuple((hi - lo) / 2 for lo, hi in zip(ROOM_LO, ROOM_HI, strict=True))
    axis, side, u, v = _face_frame((px - center[0], py - center[1], pz - center[2]), half)
    wall = axis * 2 + (side > 0).long()
    normals = [-n for n in _axis_normal(axis, side)]  # walls face into the room
    if num_spheres:
        index = (obj - 1).clamp(0, num_spheres - 1)
        sphere = scene.spheres[index].unbind(-1)
        radius = sphere[3]
        sphere_n = [(p - c) / radius for p, c in zip((px, py, pz), sphere[:3], strict=True)]
        is_sphere = (obj >= 1) & (obj <= num_spheres)
        lon = torch.atan2(sphere_n[1], sphere_n[0]) * radius
        lat = torch.asin(sphere_n[2].clamp(-1, 1)) * radius
        normals = [torch.where(is_sphere, a, b) for a, b in zip(sphere_n, normals, strict=True)]
        u, v = torch.where(is_sphere, lon, u), torch.where(is_sphere, lat, v)
    if num_boxes:
        index = (obj - 1 - num_spheres).clamp(0, num_boxes - 1)
        cos, sin = scene.box_yaws[index].cos(), scene.box_yaws[index].sin()
        cx, cy, cz = scene.box_centers[index].unbind(-1)
        wx, wy = px - cx, py - cy
        local = (cos * wx + sin * wy, cos * wy - sin * wx, pz - cz)
        box_half = scene.box_half_sizes[index].unbind(-1)
        box_axis, box_side, box_u, box_v = _face_frame(local, box_half)
        nx, ny, nz = _axis_normal(box_axis, box_side)
        box_normal = (cos * nx - sin * ny, sin * nx + cos * ny, nz)  # yaw back to world
        is_box = obj > num_spheres
        normals = [torch.where(is_box, a, b) for a, b in zip(box_normal, normals, strict=True)]
        u, v = torch.where(is_box, box_u, u), torch.where(is_box, box_v, v)
    material = torch.where(obj == 0, wall, obj + 5)
    return torch.stack(normals, dim=-1), u, v, material


def _texture(scene: SyntheticScene, material: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Procedural colour (R, 3) at surface coordinates (u, v) (R,) with per-ray materials."""
    freq = scene.frequencies[material]
    angle = scene.angles[material]
    along = u * angle.cos() + v * angle.sin()
    checker = torch.remainder(torch.floor(u * freq) + torch.floor(v * freq), 2.0)
    stripes = (torch.sin(2 * math.pi * freq * along) > 0).to(u.dtype)
    gradient = 0.5 + 0.5 * torch.sin(math.pi * 0.5 * freq * along)
    pattern = scene.patterns[material]
    value = torch.where(pattern == 0, checker, torch.where(pattern == 1, stripes, gradient))
    color_a = scene.colors_a[material]
    return color_a + (scene.colors_b[material] - color_a) * value[:, None]


def cast_rays(scene: SyntheticScene, origins: Tensor, dirs: Tensor) -> RayHits:
    """First hit of rays (..., 3) with unit directions `dirs` from `origins` inside the room.

    Shading is Lambertian with a fixed light (view independent), ambient 0.35, diffuse 0.65.
    """
    shape = dirs.shape[:-1]
    origins = origins.to(torch.float64).expand_as(dirs).reshape(-1, 3)
    dirs = dirs.to(torch.float64).reshape(-1, 3)
    distances = torch.cat(
        [
            _room_distance(origins, dirs)[None],
            _sphere_distance(origins, dirs, scene.spheres),
            _box_distance(origins, dirs, scene),
        ],
        dim=0,
    )
    t, obj = distances.min(dim=0)
    points = origins + t[:, None] * dirs
    normals, u, v, material = _surfaces(scene, points, obj)
    light = (normals @ scene.light_dir).clamp_min(0.0)
    colors = (_texture(scene, material, u, v) * (0.35 + 0.65 * light[:, None])).clamp(0.0, 1.0)
    return RayHits(
        distance=t.reshape(shape),
        points=points.reshape(*shape, 3),
        normals=normals.reshape(*shape, 3),
        colors=colors.reshape(*shape, 3),
    )


def render_views(
    scene: SyntheticScene,
    c2w: Tensor,
    fxfycxcy: Tensor,
    height: int,
    width: int,
    max_rays: int = 2**19,
) -> tuple[Tensor, Tensor]:
    """Images (N, 3, H, W) float32 and z-depth (N, H, W) float32 of `scene` from N cameras.

    Views are cast together, in chunks of at most `max_rays` rays (at least one view) to bound
    memory at large sizes.
    """
    c2w, fxfycxcy = c2w.to(torch.float64), fxfycxcy.to(torch.float64)
    per_chunk = max(1, max_rays // (height * width))
    images, depths = [], []
    for start in range(0, c2w.shape[0], per_chunk):
        cams = c2w[start : start + per_chunk]
        rays = plucker_rays(cams, fxfycxcy[start : start + per_chunk], height, width)
        dirs = rays[:, 3:].permute(0, 2, 3, 1)  # (n, H, W, 3)
        hits = cast_rays(scene, cams[:, None, None, :3, 3], dirs)
        depths.append(hits.distance * (dirs * cams[:, None, None, :3, 2]).sum(-1))
        images.append(hits.colors.permute(0, 3, 1, 2))
    return torch.cat(images).float(), torch.cat(depths).float()


def render_synthetic_scene(
    seed: int,
    num_frames: int = 8,
    height: int = 64,
    width: int = 64,
    trajectory: str | None = None,
    fov_degrees: tuple[float, float] = (50.0, 70.0),
) -> SyntheticRender:
    """Draw scene `seed` and render `num_frames` views along a Re10k-like trajectory.

    `trajectory` is "forward" or "arc" (drawn from the seed when None); the horizontal field of
    view is drawn from `fov_degrees`, square pixels, principal point near the image centre.
    """
    if num_frames < 1 or height < 1 or width < 1:
        raise ValueError(
            f"num_frames, height and width must be positive, got {num_frames}, {height}, {width}"
        )
    if trajectory is not None and trajectory not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {trajectory!r}; use one of {TRAJECTORIES}")
    rng = _rng(seed, 0)
    kind = trajectory or TRAJECTORIES[int(rng.integers(len(TRAJECTORIES)))]
    c2w = _trajectory(rng, num_frames, kind)
    fov = math.radians(rng.uniform(*fov_degrees))
    focal = 0.5 * width / math.tan(0.5 * fov)
    cx = width * (0.5 + rng.uniform(-0.02, 0.02))
    cy = height * (0.5 + rng.uniform(-0.02, 0.02))
    fxfycxcy = torch.tensor([[focal, focal, cx, cy]], dtype=torch.float64).expand(num_frames, 4)
    scene = make_scene(seed, c2w[:, :3, 3])
    c2w_t = torch.as_tensor(c2w)
    images, depth = render_views(scene, c2w_t, fxfycxcy, height, width)
    return SyntheticRender(images, depth, c2w_t, fxfycxcy.clone(), scene)


def unproject_depth(depth: Tensor, c2w: Tensor, fxfycxcy: Tensor) -> Tensor:
    """World points (..., H, W, 3) float64 of the pixel centres of views with depth (..., H, W)."""
    height, width = depth.shape[-2:]
    dtype = torch.float64
    fx, fy, cx, cy = (value[..., None, None] for value in fxfycxcy.to(dtype).unbind(-1))
    u = torch.arange(width, dtype=dtype, device=depth.device) + 0.5
    v = torch.arange(height, dtype=dtype, device=depth.device)[:, None] + 0.5
    z = depth.to(dtype)
    cam = torch.stack(torch.broadcast_tensors((u - cx) / fx * z, (v - cy) / fy * z, z), dim=-1)
    c2w = c2w.to(dtype)[..., None, None, :, :]
    return (c2w[..., :3, :3] @ cam[..., None])[..., 0] + c2w[..., :3, 3]


def project_depth(
    depth: Tensor, c2w: Tensor, fxfycxcy: Tensor, c2w_dst: Tensor, fxfycxcy_dst: Tensor
) -> tuple[Tensor, Tensor]:
    """Pixel centres of views with z-depth (..., H, W) moved to other cameras.

    Returns pixel coordinates (..., H, W, 2) (x, y; pixel centres at +0.5) in the destination
    cameras and the points' z-depth there (..., H, W), float64.
    """
    world = unproject_depth(depth, c2w, fxfycxcy)
    w2c = c2w_to_w2c(c2w_dst.to(torch.float64))[..., None, None, :, :]
    cam = (w2c[..., :3, :3] @ world[..., None])[..., 0] + w2c[..., :3, 3]
    z = cam[..., 2]
    fx, fy, cx, cy = (value[..., None, None] for value in fxfycxcy_dst.to(torch.float64).unbind(-1))
    safe_z = torch.where(z.abs() < _EPS, torch.full_like(z, _EPS), z)
    xy = torch.stack([fx * cam[..., 0] / safe_z + cx, fy * cam[..., 1] / safe_z + cy], dim=-1)
    return xy, z


def visibility_mask(
    depth: Tensor,
    c2w: Tensor,
    fxfycxcy: Tensor,
    source_depth: Tensor,
    source_c2w: Tensor,
    source_fxfycxcy: Tensor,
    rel_tol: float = 0.01,
) -> Tensor:
    """Bool mask (H, W) of target pixels whose surface point some source view sees.

    A target pixel (depth (H, W), camera c2w (4, 4), fxfycxcy (4,)) is seen by source view s
    (source_depth (S, H', W'), source_c2w (S, 4, 4), source_fxfycxcy (S, 4)) when its 3D point
    projects inside s in front of the camera and is not occluded there: its z-depth in s is at
    most (1 + rel_tol) times the source depth there (inverse depth interpolated bilinearly).
    """
    if depth.ndim != 2 or source_depth.ndim != 3:
        raise ValueError(
            f"visibility_mask expects depth (H, W) and source_depth (S, H, W), "
            f"got {tuple(depth.shape)} and {tuple(source_depth.shape)}"
        )
    num_sources, src_h, src_w = source_depth.shape
    xy, z = project_depth(
        depth.expand(num_sources, -1, -1), c2w.expand(num_sources, 4, 4),
        fxfycxcy.expand(num_sources, 4), source_c2w, source_fxfycxcy,
    )
    x, y = xy[..., 0], xy[..., 1]
    inside = (z > _EPS) & (x >= 0) & (x < src_w) & (y >= 0) & (y < src_h)
    # Inverse depth is affine in the image over a plane, so bilinear interpolation of it is
    # exact on planar patches, even at grazing angles; at occlusion edges it mixes foreground
    # and background, which errs towards "occluded" for the background.
    grid = torch.stack([2.0 * x / src_w - 1.0, 2.0 * y / src_h - 1.0], dim=-1)
    grid = grid.nan_to_num(0.0).clamp(-2.0, 2.0)
    inverse = 1.0 / source_depth.to(torch.float64).clamp_min(_EPS)[:, None]
    seen_inverse = torch.nn.functional.grid_sample(
        inverse, grid, mode="bilinear", padding_mode="border", align_corners=False
    )[:, 0]
    unoccluded = z * seen_inverse <= 1.0 + rel_tol
    return (inside & unoccluded).any(dim=0)


def write_synthetic_dataset(
    root: str | Path,
    num_scenes: int,
    split: str = "train",
    seed: int = 0,
    num_frames: int = 8,
    height: int = 64,
    width: int = 64,
    save_depth: bool = False,
) -> list[str]:
    """Render `num_scenes` scenes into the Re10k LVSM layout under `root/split`; return their ids.

    Writes `images/<seq>/<5-digit>.png`, `metadata/<seq>.json` (`scene_name`, `frames[]` with
    `image_path`, `fxfycxcy` and 4x4 `w2c`) and `full_list.txt` (one metadata path per line,
    relative to `root`). Scene i uses seed (seed, i); with `save_depth`, `depth/<seq>.npy` holds
    the (N, H, W) float32 z-depth.
    """
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be at least 1, got {num_scenes}")
    split_dir = Path(root) / split
    (split_dir / "metadata").mkdir(parents=True, exist_ok=True)
    scene_seeds = np.random.SeedSequence(seed).generate_state(num_scenes)
    scene_ids = []
    for scene_seed in scene_seeds:
        render = render_synthetic_scene(int(scene_seed), num_frames, height, width)
        scene_id = f"synth{int(scene_seed):010d}"
        image_dir = split_dir / "images" / scene_id
        image_dir.mkdir(parents=True, exist_ok=True)
        pixels = (render.images.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()
        w2c = c2w_to_w2c(render.c2w)
        frames = []
        for index in range(num_frames):
            name = f"{index:05d}.png"
            Image.fromarray(pixels[index]).save(image_dir / name)
            frames.append(
                {
                    "image_path": f"{split}/images/{scene_id}/{name}",
                    "fxfycxcy": render.fxfycxcy[index].tolist(),
                    "w2c": w2c[index].tolist(),
                }
            )
        metadata = {"scene_name": scene_id, "frames": frames}
        (split_dir / "metadata" / f"{scene_id}.json").write_text(json.dumps(metadata, indent=1))
        if save_depth:
            (split_dir / "depth").mkdir(exist_ok=True)
            np.save(split_dir / "depth" / f"{scene_id}.npy", render.depth.numpy())
        scene_ids.append(scene_id)
    full_list = [f"{split}/metadata/{scene_id}.json" for scene_id in scene_ids]
    (split_dir / "full_list.txt").write_text("\n".join(full_list) + "\n")
    return scene_ids
