"""Camera paths: interpolation passes through the sources, orbits keep their distance, etc."""

from __future__ import annotations

import math

import pytest
import torch

from lagernvs import Cameras
from lagernvs import trajectories as paths


def arc_cameras(count: int = 3, size: tuple[int, int] = (48, 64)) -> Cameras:
    """Cameras on an arc of radius 3 at height 1.2 around (0.5, -0.2, 0.4), looking at it."""
    centre = torch.tensor([0.5, -0.2, 0.4], dtype=torch.float64)
    angles = torch.linspace(-0.6, 0.5, count, dtype=torch.float64)
    eyes = centre + torch.stack(
        [3 * angles.cos(), 3 * angles.sin(), torch.full_like(angles, 1.2)], dim=-1
    )
    return Cameras.look_at(eyes, centre, up=[0.0, 0.0, 1.0], fov_deg=55.0, image_size=size)


def rotation_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.arccos(cos.clamp(-1, 1))


def test_interpolation_passes_through_every_source_camera():
    sources = arc_cameras(4)
    path = paths.interpolate(sources, num_frames=3 * 3 + 1, ease=False)
    assert len(path) == 10 and path.image_size == sources.image_size
    torch.testing.assert_close(path.c2w[::3], sources.c2w, atol=1e-9, rtol=0)
    torch.testing.assert_close(path.fxfycxcy[::3], sources.fxfycxcy)
    eased = paths.interpolate(sources, num_frames=7)
    torch.testing.assert_close(eased.c2w[[0, -1]], sources.c2w[[0, -1]], atol=1e-9, rtol=0)


def test_interpolation_is_smooth_and_eased():
    sources = arc_cameras(3)
    path = paths.interpolate(sources, num_frames=41)
    steps = torch.linalg.vector_norm(path.centers.diff(dim=0), dim=-1)
    assert steps[0] < 0.2 * steps[20] and steps[-1] < 0.2 * steps[20]  # slow in, slow out
    turns = rotation_angle(path.c2w[:-1, :3, :3], path.c2w[1:, :3, :3])
    assert float(turns.max()) < 0.1  # no rotation jumps (quaternion sign handled)


def test_center_of_attention_of_converging_cameras_is_their_common_target():
    centre = paths.center_of_attention(arc_cameras(3))
    torch.testing.assert_close(
        centre, torch.tensor([0.5, -0.2, 0.4], dtype=torch.float64), atol=0.05, rtol=0
    )


def test_orbit_keeps_the_distance_to_the_centre_and_looks_at_it():
    sources = arc_cameras(3)
    centre = torch.tensor([0.5, -0.2, 0.4], dtype=torch.float64)
    orbit = paths.orbit(sources, num_frames=24, center=centre)
    distances = orbit.distance_to(centre)
    torch.testing.assert_close(distances, distances[:1].expand(24), atol=1e-9, rtol=0)
    radii = torch.linalg.vector_norm((orbit.centers - centre)[:, :2], dim=-1)
    torch.testing.assert_close(radii, torch.full_like(radii, 3.0))  # the sources' radius
    forward = orbit.c2w[:, :3, 2]
    to_centre = torch.nn.functional.normalize(centre - orbit.centers, dim=-1)
    torch.testing.assert_close(forward, to_centre)
    heights = orbit.centers[:, 2]
    torch.testing.assert_close(heights, torch.full_like(heights, 1.6))  # 0.4 + 1.2 (z is up)
    # A full circle: consecutive angles equal, the frames spread all around the centre.
    assert float(torch.linalg.vector_norm((orbit.centers - centre)[:, :2].mean(0))) < 1e-6
    assert torch.equal(orbit.fxfycxcy, sources.fxfycxcy[:1].expand(24, 4))


def test_partial_orbit_is_centred_on_the_sources():
    sources = arc_cameras(3)
    arc = paths.orbit(sources, num_frames=9, degrees=40.0)
    middle = arc.centers[4] - paths.center_of_attention(sources)
    mean_dir = (sources.centers - paths.center_of_attention(sources)).mean(0)
    cos = torch.nn.functional.cosine_similarity(middle[:2], mean_dir[:2], dim=0)
    assert float(cos) > 0.999


def test_extrapolation_leaves_the_span_of_the_sources_by_the_fraction():
    sources = arc_cameras(3)
    start, end = sources.centers[0], sources.centers[-1]
    span = end - start
    path = paths.extrapolate(sources, num_frames=11, fraction=0.25)
    along = (path.centers - start) @ span / (span @ span)
    assert math.isclose(float(along.min()), -0.25, abs_tol=1e-9)
    assert math.isclose(float(along.max()), 1.25, abs_tol=1e-9)
    # Rotations continue the first-to-last geodesic beyond both ends.
    total = rotation_angle(sources.c2w[0, :3, :3], sources.c2w[-1, :3, :3])
    beyond = rotation_angle(sources.c2w[-1, :3, :3], path.c2w[-1, :3, :3])
    torch.testing.assert_close(beyond, 0.25 * total)
    ahead = paths.extrapolate(sources, num_frames=5, fraction=0.5, side="end")
    torch.testing.assert_close(ahead.centers[0], start)
    with pytest.raises(ValueError, match="two source cameras"):
        paths.extrapolate(sources[:1], num_frames=5)


def test_dolly_moves_along_the_optical_axis_and_back():
    sources = arc_cameras(3)
    path = paths.dolly(sources, num_frames=9, distance=0.5)
    axis = path.c2w[0, :3, 2]
    offsets = path.centers - path.centers[0]
    torch.testing.assert_close(
        torch.linalg.cross(offsets, axis.expand_as(offsets), dim=-1),
        torch.zeros_like(offsets),
        atol=1e-9,
        rtol=0,
    )
    torch.testing.assert_close(offsets[4] @ axis, torch.tensor(0.5, dtype=torch.float64))
    torch.testing.assert_close(path.c2w[-1], path.c2w[0])
    torch.testing.assert_close(path.c2w[:, :3, :3], path.c2w[:1, :3, :3].expand(9, 3, 3))


def test_paths_bring_mixed_sizes_to_one_and_reject_bad_arguments():
    sources = Cameras.cat([arc_cameras(2, (48, 64)), arc_cameras(1, (96, 128))])
    path = paths.camera_path("interpolate", sources, 5)
    assert path.image_size == (48, 64)
    assert paths.camera_path("orbit", sources, 4, image_size=(32, 32)).image_size == (32, 32)
    with pytest.raises(ValueError, match="unknown camera path"):
        paths.camera_path("corkscrew", sources, 5)
    with pytest.raises(ValueError, match="num_frames"):
        paths.interpolate(sources, 0)
    single = paths.interpolate(sources[:1], 4)
    torch.testing.assert_close(single.c2w, sources.c2w[:1].expand(4, 4, 4))


def test_up_direction_of_level_cameras_is_the_world_up():
    torch.testing.assert_close(
        paths.up_direction(arc_cameras(3)), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    )
    single = arc_cameras(1)  # one pitched camera: its own image-up axis
    torch.testing.assert_close(paths.up_direction(single), -single.c2w[0, :3, 1])
