"""Ray casting in a procedural world: first hits with boxes, spheres and walls, and their colour.

Intersections are vectorised over rays with the objects as the outer dimension; surfaces carry
procedural textures and view-independent Lambertian shading, so a surface point has the same
colour from every camera.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from lagernvs.data.synthetic.world import ROOM_HI, ROOM_LO, SyntheticWorld

_EPS = 1e-9


class RayHits(NamedTuple):
    """First intersection of each ray: distance along the unit ray, point, normal, colour."""

    distance: Tensor  # (...,)
    points: Tensor  # (..., 3)
    normals: Tensor  # (..., 3)
    colors: Tensor  # (..., 3) in [0, 1]
    objects: Tensor  # (...,) long: 0 for the room, 1..K for spheres, K+1..K+M for boxes


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


def _box_distance(origins: Tensor, dirs: Tensor, world: SyntheticWorld) -> Tensor:
    """Entry distance (M, R) of rays into the yawed boxes (slab test), inf on a miss.

    Division by a zero direction component gives +-inf, which the slab test handles.
    """
    cos, sin = world.box_yaws.cos()[:, None], world.box_yaws.sin()[:, None]
    centers, halves = world.box_centers[:, :, None], world.box_half_sizes[:, :, None]
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
    world: SyntheticWorld, points: Tensor, obj: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Normals (R, 3), texture coordinates u, v (R,) and material ids (R,) of hit points.

    `obj` is 0 for the room, 1..K for spheres and K+1..K+M for boxes.
    """
    num_spheres, num_boxes = world.spheres.shape[0], world.box_centers.shape[0]
    px, py, pz = points.unbind(-1)
    center = [(lo + hi) / 2 for lo, hi in zip(ROOM_LO, ROOM_HI, strict=True)]
    half = tuple((hi - lo) / 2 for lo, hi in zip(ROOM_LO, ROOM_HI, strict=True))
    axis, side, u, v = _face_frame((px - center[0], py - center[1], pz - center[2]), half)
    wall = axis * 2 + (side > 0).long()
    normals = [-n for n in _axis_normal(axis, side)]  # walls face into the room
    if num_spheres:
        index = (obj - 1).clamp(0, num_spheres - 1)
        sphere = world.spheres[index].unbind(-1)
        radius = sphere[3]
        sphere_n = [(p - c) / radius for p, c in zip((px, py, pz), sphere[:3], strict=True)]
        is_sphere = (obj >= 1) & (obj <= num_spheres)
        lon = torch.atan2(sphere_n[1], sphere_n[0]) * radius
        lat = torch.asin(sphere_n[2].clamp(-1, 1)) * radius
        normals = [torch.where(is_sphere, a, b) for a, b in zip(sphere_n, normals, strict=True)]
        u, v = torch.where(is_sphere, lon, u), torch.where(is_sphere, lat, v)
    if num_boxes:
        index = (obj - 1 - num_spheres).clamp(0, num_boxes - 1)
        cos, sin = world.box_yaws[index].cos(), world.box_yaws[index].sin()
        cx, cy, cz = world.box_centers[index].unbind(-1)
        wx, wy = px - cx, py - cy
        local = (cos * wx + sin * wy, cos * wy - sin * wx, pz - cz)
        box_half = world.box_half_sizes[index].unbind(-1)
        box_axis, box_side, box_u, box_v = _face_frame(local, box_half)
        nx, ny, nz = _axis_normal(box_axis, box_side)
        box_normal = (cos * nx - sin * ny, sin * nx + cos * ny, nz)  # yaw back to world
        is_box = obj > num_spheres
        normals = [torch.where(is_box, a, b) for a, b in zip(box_normal, normals, strict=True)]
        u, v = torch.where(is_box, box_u, u), torch.where(is_box, box_v, v)
    material = torch.where(obj == 0, wall, obj + 5)
    return torch.stack(normals, dim=-1), u, v, material


def _texture(world: SyntheticWorld, material: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Procedural colour (R, 3) at surface coordinates (u, v) (R,) with per-ray materials."""
    freq = world.frequencies[material]
    angle = world.angles[material]
    along = u * angle.cos() + v * angle.sin()
    checker = torch.remainder(torch.floor(u * freq) + torch.floor(v * freq), 2.0)
    stripes = (torch.sin(2 * math.pi * freq * along) > 0).to(u.dtype)
    gradient = 0.5 + 0.5 * torch.sin(math.pi * 0.5 * freq * along)
    pattern = world.patterns[material]
    value = torch.where(pattern == 0, checker, torch.where(pattern == 1, stripes, gradient))
    color_a = world.colors_a[material]
    return color_a + (world.colors_b[material] - color_a) * value[:, None]


def shading(world: SyntheticWorld, normals: Tensor) -> Tensor:
    """Lambertian factor (..., 1) of surfaces with unit `normals` (..., 3): ambient 0.35,
    diffuse 0.65 from the world's fixed light (view independent)."""
    light = (normals @ world.light_dir.to(normals)).clamp_min(0.0)
    return 0.35 + 0.65 * light[..., None]


def cast_rays(world: SyntheticWorld, origins: Tensor, dirs: Tensor) -> RayHits:
    """First hit of rays (..., 3) with unit directions `dirs` from `origins` inside the room.

    Colours are the surfaces' textures times :func:`shading`.
    """
    shape = dirs.shape[:-1]
    origins = origins.to(torch.float64).expand_as(dirs).reshape(-1, 3)
    dirs = dirs.to(torch.float64).reshape(-1, 3)
    distances = torch.cat(
        [
            _room_distance(origins, dirs)[None],
            _sphere_distance(origins, dirs, world.spheres),
            _box_distance(origins, dirs, world),
        ],
        dim=0,
    )
    t, obj = distances.min(dim=0)
    points = origins + t[:, None] * dirs
    normals, u, v, material = _surfaces(world, points, obj)
    colors = (_texture(world, material, u, v) * shading(world, normals)).clamp(0.0, 1.0)
    return RayHits(
        distance=t.reshape(shape),
        points=points.reshape(*shape, 3),
        normals=normals.reshape(*shape, 3),
        colors=colors.reshape(*shape, 3),
        objects=obj.reshape(shape),
    )
