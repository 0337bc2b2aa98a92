"""Geometry of the video paths: each preset's defining property (the spline hits every source,
loops close smoothly, zooms change the focal length only, the dolly zoom keeps the subject's
image size, moves translate by their distance)."""

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


def unposed_reference(size: tuple[int, int] = (48, 64)) -> Cameras:
    """The camera of an unposed first source: identity pose, fx = fy = W."""
    height, width = size
    return Cameras(torch.eye(4), [width, width, width / 2, height / 2], size)


def steps(centres: torch.Tensor, closed: bool) -> torch.Tensor:
    ring = torch.cat([centres, centres[:1]]) if closed else centres
    return torch.linalg.vector_norm(ring.diff(dim=0), dim=-1)


def closest_point_to_axes(cameras: Cameras) -> torch.Tensor:
    """The least-squares point closest to every optical axis."""
    dirs, origins = cameras.c2w[:, :3, 2], cameras.centers
    projectors = torch.eye(3, dtype=dirs.dtype) - dirs[:, :, None] * dirs[:, None, :]
    rhs = (projectors @ origins[:, :, None]).sum(0)
    return torch.linalg.solve(projectors.sum(0), rhs)[:, 0]


def project(cameras: Cameras, point: torch.Tensor) -> torch.Tensor:
    """(T, 2) pixel coordinates of a world point in every camera."""
    w2c = torch.linalg.inv(cameras.c2w)
    local = w2c[:, :3, :3] @ point + w2c[:, :3, 3]
    fx, fy, cx, cy = cameras.fxfycxcy.unbind(-1)
    return torch.stack(
        [fx * local[:, 0] / local[:, 2] + cx, fy * local[:, 1] / local[:, 2] + cy], -1
    )


@pytest.mark.parametrize("count", [2, 3, 5])
@pytest.mark.parametrize("num_frames", [24, 31, 60])
def test_spline_hits_every_source_in_order_and_comes_back(count, num_frames):
    sources = arc_cameras(count)
    path = paths.spline(sources, num_frames)
    assert len(path) == num_frames and path.image_size == sources.image_size
    distance = (sources.c2w[:, None] - path.c2w[None]).abs().amax(dim=(-2, -1))  # (N, T)
    hits = distance.argmin(dim=1)
    assert float(distance.min(dim=1).values.max()) < 1e-9  # each source is a frame
    assert hits.tolist() == sorted(hits.tolist()) and hits[0] == 0  # in order, from frame 0
    assert int(hits[-1]) == num_frames // 2  # the turn-around is the last source
    torch.testing.assert_close(path.fxfycxcy[hits], sources.fxfycxcy, rtol=0, atol=1e-9)
    # There and back: frame i and frame T - i coincide; the video loops.
    mirror = num_frames - torch.arange(1, num_frames)
    torch.testing.assert_close(path.c2w[1:], path.c2w[mirror], rtol=0, atol=1e-12)


def test_spline_is_smooth_and_eased():
    path = paths.spline(arc_cameras(3), 80)
    forward = steps(path.centers[:41], closed=False)
    assert forward[0] < 0.1 * forward.max() and forward[-1] < 0.1 * forward.max()
    # No jump where the ease is bent to land on the middle source.
    assert float((forward.diff().abs()).max()) < 0.2 * float(forward.max())


def test_spline_with_too_few_frames_still_starts_and_turns_at_the_ends():
    sources = arc_cameras(5)
    path = paths.spline(sources, 4)
    torch.testing.assert_close(path.c2w[0], sources.c2w[0])
    torch.testing.assert_close(path.c2w[2], sources.c2w[-1], rtol=0, atol=1e-9)
    single = paths.spline(sources[:1], 5)
    torch.testing.assert_close(single.c2w, sources.c2w[:1].expand(5, 4, 4))


@pytest.mark.parametrize("kind", ["spiral", "lemniscate"])
def test_loops_are_closed_smooth_and_look_at_the_subject(kind):
    sources = arc_cameras(3)
    path = paths.camera_path(kind, sources, 90)
    ring = steps(path.centers, closed=True)
    # Closed: the step from the last frame back to the first is an ordinary step.
    assert float(ring[-1]) < 1.5 * float(ring[:-1].max())
    # Smooth: consecutive steps change little and the heading turns gradually.
    assert float(ring.max()) < 4 * float(ring.mean())
    velocities = torch.cat([path.centers, path.centers[:1]]).diff(dim=0)
    turn = torch.nn.functional.cosine_similarity(velocities, velocities.roll(1, 0), dim=-1)
    assert float(turn.min()) > math.cos(math.radians(30))
    # Every frame looks at one point, on the mean source camera's axis near the sources' target.
    focus = closest_point_to_axes(path)
    to_focus = torch.nn.functional.normalize(focus - path.centers, dim=-1)
    torch.testing.assert_close(to_focus, path.c2w[:, :3, 2], rtol=0, atol=1e-9)
    assert float((focus - paths.center_of_attention(sources)).norm()) < 0.2
    torch.testing.assert_close(path.fxfycxcy, sources.fxfycxcy[:1].expand(90, 4))


def test_lemniscate_passes_through_the_mean_camera_twice_and_spans_its_radius():
    sources = arc_cameras(3)
    path = paths.lemniscate(sources, 40, radius=0.3)
    origin = sources.centers.mean(0)
    torch.testing.assert_close(path.centers[[0, 20]], origin.expand(2, 3), rtol=0, atol=1e-9)
    offsets = path.centers - origin
    assert math.isclose(float(offsets.norm(dim=-1).max()), 0.3, rel_tol=0.02)


def test_spiral_turns_and_radius():
    sources = arc_cameras(3)
    path = paths.spiral(sources, 48, radius=0.2, turns=3)
    # Distance to the mean camera: the radius in its image plane, plus at most the radius along
    # its axis.
    distance = (path.centers - sources.centers.mean(0)).norm(dim=-1)
    assert float(distance.min()) >= 0.2 - 1e-9
    assert float(distance.max()) <= 0.2 * math.sqrt(2) + 1e-9
    assert float(distance.max()) > 0.2 * 1.4  # the axial excursion is there
    with pytest.raises(ValueError, match="turns"):
        paths.spiral(sources, 10, turns=0)


@pytest.mark.parametrize(("kind", "gain"), [("zoom-in", 3.0), ("zoom-out", 1 / 3.0)])
def test_zoom_changes_the_focal_length_only(kind, gain):
    sources = arc_cameras(3)
    path = paths.camera_path(kind, sources, 11, factor=3.0)
    torch.testing.assert_close(path.c2w, path.c2w[:1].expand(11, 4, 4))
    torch.testing.assert_close(path.fxfycxcy[:, 2:], sources.fxfycxcy[:1, 2:].expand(11, 2))
    torch.testing.assert_close(path.fxfycxcy[0], sources.fxfycxcy[0])
    torch.testing.assert_close(path.fxfycxcy[-1, :2], gain * sources.fxfycxcy[0, :2])
    focal = path.fxfycxcy[:, 0]
    assert bool((focal.diff() * (gain - 1) > 0).all())  # monotone
    with pytest.raises(ValueError, match="zoom factor must be > 1"):
        paths.zoom_in(sources, 5, factor=0.5)


@pytest.mark.parametrize("distance", [None, 1.0, -1.5])
def test_dolly_zoom_keeps_the_subjects_image_size(distance):
    sources = arc_cameras(3)
    path = paths.dolly_zoom(sources, 13, distance=distance)
    origin = sources.centers.mean(0)
    axis = path.c2w[0, :3, 2]
    right = path.c2w[0, :3, 0]
    depth = float((paths.center_of_attention(sources) - origin) @ axis)
    subject = origin + depth * axis
    size = (project(path, subject + right) - project(path, subject - right)).norm(dim=-1)
    torch.testing.assert_close(size, size[:1].expand(13), rtol=1e-9, atol=0)
    torch.testing.assert_close(path.c2w[:, :3, :3], path.c2w[:1, :3, :3].expand(13, 3, 3))
    travel = (path.centers - origin) @ axis
    assert abs(float(travel[-1]) - (-0.5 * depth if distance is None else distance)) < 1e-9
    # A background point behind the subject changes its image size: it is a real dolly zoom.
    background = subject + depth * axis
    far = (project(path, background + 0.3 * right) - project(path, background)).norm(dim=-1)
    assert float((far.max() - far.min()) / far.min()) > 0.1
    with pytest.raises(ValueError, match="below the subject's depth"):
        paths.dolly_zoom(sources, 5, distance=2 * depth)


@pytest.mark.parametrize("direction", list(paths.MOVES))
def test_moves_translate_by_the_distance_along_the_cameras_own_axes(direction):
    sources = arc_cameras(3)
    path = paths.camera_path(direction, sources, 9, distance=0.7)
    start = path.c2w[0]
    torch.testing.assert_close(start[:3, 3], sources.centers.mean(0))
    local = start[:3, :3].T @ (path.centers[-1] - start[:3, 3])
    expected = 0.7 * torch.tensor(paths.MOVES[direction], dtype=torch.float64)
    torch.testing.assert_close(local, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(path.c2w[:, :3, :3], start[:3, :3].expand(9, 3, 3))
    offsets = (path.centers - start[:3, 3]).norm(dim=-1)
    assert bool((offsets.diff() >= 0).all())  # one way, eased


@pytest.mark.parametrize("kind", sorted(paths.PATHS))
def test_every_path_runs_on_posed_and_unposed_sources(kind):
    posed = paths.camera_path(kind, arc_cameras(3), 7, image_size=(32, 40))
    assert len(posed) == 7 and posed.image_size == (32, 40)
    assert bool(torch.isfinite(posed.c2w).all())
    if kind not in ("extrapolate",):
        unposed = paths.camera_path(kind, unposed_reference(), 7)
        assert len(unposed) == 7 and bool(torch.isfinite(unposed.c2w).all())
