"""The viewer without a browser: coordinate frames, the latest-pose render loop, per-client
sessions (samples, keyframes, exports, errors, closing), the command line and its checks."""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch

from lagernvs.cameras import Cameras
from lagernvs.viewer.cli import add_view_parser, check_view_args
from lagernvs.viewer.frames import ViewerFrame, ViewPose, rotation_between, viewport_camera
from lagernvs.viewer.loop import RenderWorker, Request, RequestQueue
from lagernvs.viewer.network import check_port, host_warning, same_origin
from lagernvs.viewer.samples import SPREAD_FULL_SCALE, SampleSet, heat_colors, spread_map
from lagernvs.viewer.session import (
    MAX_PATH_FRAMES,
    MAX_SAMPLES,
    PathOptions,
    SampleOptions,
    ViewerSession,
    ViewSettings,
)
from lagernvs.viewer.stats import FrameStats


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` (work happens on worker threads); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def random_cameras(count: int, seed: int = 0) -> Cameras:
    generator = torch.Generator().manual_seed(seed)
    eye = torch.randn(count, 3, generator=generator, dtype=torch.float64) * 3.0
    target = torch.randn(count, 3, generator=generator, dtype=torch.float64) * 0.3
    up = torch.tensor([0.3, -1.0, 0.2], dtype=torch.float64)
    return Cameras.look_at(eye, target, up=up, fov_deg=55.0, image_size=(48, 64))


def wxyz_matrix(wxyz: np.ndarray) -> np.ndarray:
    """Rotation of a scalar-first unit quaternion, written out independently of lagernvs."""
    w, x, y, z = wxyz / np.linalg.norm(wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


# ----------------------------------------------------------------------------- frames


@pytest.mark.parametrize(
    ("source", "target"),
    [([0, -1, 0], [0, 0, 1]), ([1, 2, 3], [-1, 0.5, 2]), ([0, 0, -1], [0, 0, 1])],
)
def test_rotation_between_maps_directions_including_opposite_ones(source, target):
    source, target = np.array(source, float), np.array(target, float)
    rotation = rotation_between(source, target)
    np.testing.assert_allclose(
        rotation @ (source / np.linalg.norm(source)), target / np.linalg.norm(target), atol=1e-12
    )
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_viewer_frame_puts_up_on_z_centre_at_origin_and_cameras_at_unit_distance():
    sources = random_cameras(4)
    frame = ViewerFrame.fit(sources)
    from lagernvs import trajectories

    up = trajectories.up_direction(sources).numpy()
    np.testing.assert_allclose(frame.rotation @ up, [0, 0, 1], atol=1e-12)
    centre = trajectories.center_of_attention(sources).numpy()
    np.testing.assert_allclose(frame.points_to_viewer(centre[None])[0], 0.0, atol=1e-12)
    _, positions = frame.to_viewer(sources.c2w)
    assert np.linalg.norm(positions, axis=-1).mean() == pytest.approx(1.0)


def test_camera_conversion_round_trips_both_ways():
    sources = random_cameras(6, seed=1)
    frame = ViewerFrame.fit(sources)
    wxyz, positions = frame.to_viewer(sources.c2w)
    for index in range(len(sources)):
        back = frame.from_viewer(wxyz[index], positions[index])
        np.testing.assert_allclose(back, sources.c2w[index].numpy(), atol=1e-9)
        again_wxyz, again_position = frame.to_viewer(back)
        assert abs(float(again_wxyz[0] @ wxyz[index])) == pytest.approx(1.0)  # q and -q agree
        np.testing.assert_allclose(again_position[0], positions[index], atol=1e-9)


def test_viewer_pose_sees_scene_points_where_the_scene_camera_does():
    """A point projects to the same pixel through the scene camera and through the viewer's
    OpenCV camera (wxyz read as R_world_camera, as viser documents it)."""
    sources = random_cameras(3, seed=2)
    frame = ViewerFrame.fit(sources)
    wxyz, positions = frame.to_viewer(sources.c2w)
    fx, fy, cx, cy = sources.fxfycxcy[0].tolist()
    point = np.array([0.2, -0.1, 0.3])

    def project(rotation: np.ndarray, centre: np.ndarray, x: np.ndarray) -> np.ndarray:
        local = rotation.T @ (x - centre)
        return np.array([fx * local[0] / local[2] + cx, fy * local[1] / local[2] + cy])

    scene_c2w = sources.c2w[0].numpy()
    in_scene = project(scene_c2w[:3, :3], scene_c2w[:3, 3], point)
    in_viewer = project(wxyz_matrix(wxyz[0]), positions[0], frame.points_to_viewer(point[None])[0])
    np.testing.assert_allclose(in_viewer, in_scene, atol=1e-9)


def test_conversion_agrees_with_viser_transforms():
    transforms = pytest.importorskip("viser.transforms")
    sources = random_cameras(3, seed=3)
    frame = ViewerFrame.fit(sources)
    wxyz, _ = frame.to_viewer(sources.c2w)
    for index in range(len(sources)):
        expected = frame.rotation @ sources.c2w[index, :3, :3].numpy()
        np.testing.assert_allclose(transforms.SO3(wxyz[index]).as_matrix(), expected, atol=1e-9)
        viser_wxyz = transforms.SO3.from_matrix(expected).wxyz
        np.testing.assert_allclose(
            frame.from_viewer(viser_wxyz, np.zeros(3))[:3, :3],
            sources.c2w[index, :3, :3].numpy(),
            atol=1e-9,
        )


def test_orbit_pose_looks_along_the_optical_axis():
    sources = random_cameras(2, seed=4)
    frame = ViewerFrame.fit(sources)
    position, look_at = frame.orbit_pose(sources.c2w[0])
    forward = frame.rotation @ sources.c2w[0, :3, 2].numpy()
    direction = (look_at - position) / np.linalg.norm(look_at - position)
    np.testing.assert_allclose(direction, forward, atol=1e-12)
    assert np.linalg.norm(look_at - position) == pytest.approx(np.linalg.norm(position))


def test_viewport_camera_spans_the_canvas_field_of_view():
    pose = ViewPose(np.eye(4), fov_y=math.radians(50.0), aspect=16 / 9)
    camera = viewport_camera(pose, height=64, patch=8)
    height, width = camera.image_size
    assert (height, width) == (64, 112)
    fx, fy, cx, cy = camera.fxfycxcy[0].tolist()
    assert math.degrees(2 * math.atan(0.5 * height / fy)) == pytest.approx(50.0)
    tan_x = math.tan(math.radians(25.0)) * 16 / 9
    assert 0.5 * width / fx == pytest.approx(tan_x)  # the frame spans the canvas' width
    assert (cx, cy) == (width / 2, height / 2)
    odd = viewport_camera(ViewPose(np.eye(4), 1.0, 1.0), height=61, patch=8)
    assert odd.image_size == (64, 64)


# ----------------------------------------------------------------------------- render loop


def test_queue_keeps_only_the_newest_view_and_bounds_tasks():
    queue = RequestQueue(max_tasks=2)
    for index in range(5):
        queue.put_view(Request("view", index))
    assert queue.put_task(Request("sample", "a")) and queue.put_task(Request("sample", "b"))
    assert not queue.put_task(Request("sample", "c"))
    assert [queue.take().payload for _ in range(3)] == ["a", "b", 4]
    assert queue.dropped_views == 4
    queue.close()
    assert queue.take() is None


def test_worker_renders_only_the_latest_pose_while_busy():
    release, handled = threading.Event(), []

    def handle(request: Request) -> None:
        handled.append(request.payload)
        if request.payload == 0:
            release.wait(10)

    worker = RenderWorker(handle, lambda request, error: None)
    worker.submit_view(Request("view", 0))
    wait_until(lambda: handled == [0])
    for pose in range(1, 20):  # a mouse drag while the first frame renders
        worker.submit_view(Request("view", pose))
    release.set()
    wait_until(lambda: handled[-1] == 19)
    assert handled == [0, 19]
    assert worker.queue.dropped_views == 18
    assert worker.close() and not worker.alive


def test_worker_reports_an_error_and_keeps_going():
    errors, handled = [], []

    def handle(request: Request) -> None:
        if request.payload == "bad":
            raise RuntimeError("boom")
        handled.append(request.payload)

    worker = RenderWorker(handle, lambda request, error: errors.append((request.payload, error)))
    worker.submit_task(Request("view", "bad"))
    worker.submit_task(Request("view", "good"))
    wait_until(lambda: handled == ["good"])
    assert [(payload, str(error)) for payload, error in errors] == [("bad", "boom")]
    assert worker.failed == 1 and worker.alive
    worker.close()


def test_worker_survives_a_failing_error_reporter():
    handled = []

    def handle(request: Request) -> None:
        if request.payload == 0:
            raise RuntimeError("render failed")
        handled.append(request.payload)

    def report(request: Request, error: Exception) -> None:
        raise ConnectionError("the page is gone")

    worker = RenderWorker(handle, report)
    worker.submit_task(Request("view", 0))
    worker.submit_task(Request("view", 1))
    wait_until(lambda: handled == [1])
    worker.close()


# ----------------------------------------------------------------------------- sessions


class FakeEngine:
    """Renders flat frames whose grey level encodes the camera's x position; samples are
    seeded noise. ``fail`` makes renders at x > 0.5 raise; ``gate`` holds samples back."""

    patch_size = 8
    can_sample = True

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        self.renders: list[Cameras] = []

    def render(self, cameras: Cameras) -> np.ndarray:
        if self.fail and float(cameras.c2w[0, 0, 3]) > 0.5:
            raise RuntimeError("out of memory (simulated)")
        self.renders.append(cameras)
        height, width = cameras.image_size
        grey = (cameras.c2w[:, 0, 3].numpy() % 1.0).astype(np.float32)
        return np.broadcast_to(grey[:, None, None, None], (len(cameras), height, width, 3)).copy()

    def sample(self, cameras, count, steps, guidance, seed):
        self.gate.wait(10)
        height, width = cameras.image_size
        return np.random.default_rng(seed).random((count, height, width, 3), dtype=np.float32)


class Recorder:
    """A Display that keeps everything it is asked to show."""

    def __init__(self) -> None:
        self.frames: list[tuple[np.ndarray, int]] = []
        self.statuses: list[str] = []
        self.errors: list[str] = []
        self.samples: list[tuple[SampleSet | None, int, bool]] = []
        self.keyframes: list[int] = []
        self.files: dict[str, bytes] = {}

    def show_frame(self, image, quality):
        self.frames.append((image, quality))

    def show_status(self, text):
        self.statuses.append(text)

    def show_error(self, message):
        self.errors.append(message)

    def show_samples(self, samples, index, overlay):
        self.samples.append((samples, index, overlay))

    def show_keyframes(self, keyframes):
        self.keyframes.append(len(keyframes))

    def send_file(self, name, data):
        self.files[name] = data


def pose_at(x: float, fov_deg: float = 50.0, aspect: float = 1.5) -> ViewPose:
    c2w = np.eye(4)
    c2w[0, 3] = x
    return ViewPose(c2w, math.radians(fov_deg), aspect)


def make_session(engine=None, **kwargs) -> tuple[ViewerSession, Recorder]:
    display = Recorder()
    settings = ViewSettings(fov_deg=50.0, render_height=16, jpeg_quality=80)
    session = ViewerSession(engine or FakeEngine(), display, settings, name="test", **kwargs)
    return session, display


@pytest.fixture
def session_factory():
    sessions = []

    def factory(engine=None, **kwargs):
        session, display = make_session(engine, **kwargs)
        sessions.append(session)
        return session, display

    yield factory
    for session in sessions:
        session.close()


def test_session_renders_the_view_at_the_canvas_aspect(session_factory):
    session, display = session_factory()
    session.camera_moved(pose_at(0.25))
    wait_until(lambda: len(display.frames) == 1)
    image, quality = display.frames[0]
    assert image.shape == (16, 24, 3) and image.dtype == np.uint8 and quality == 80
    assert int(image[0, 0, 0]) == round(0.25 * 255)
    assert session.stats.frames == 1 and session.stats.latency_ms >= session.stats.render_ms


def test_sessions_keep_their_own_camera_and_settings(session_factory):
    first, first_display = session_factory()
    second, second_display = session_factory()
    first.camera_moved(pose_at(0.1))
    second.camera_moved(pose_at(0.4))
    wait_until(lambda: first_display.frames and second_display.frames)
    first.update_settings(render_height=32, jpeg_quality=40)
    wait_until(lambda: len(first_display.frames) == 2)
    assert first_display.frames[-1][0].shape[:2] == (32, 48) and first_display.frames[-1][1] == 40
    assert second.settings.render_height == 16 and second.settings.jpeg_quality == 80
    assert len(second_display.frames) == 1
    assert int(second_display.frames[0][0][0, 0, 0]) == round(0.4 * 255)
    first.add_keyframe()
    assert first.keyframes and not second.keyframes


def test_render_error_is_shown_and_the_next_pose_renders(session_factory):
    session, display = session_factory(FakeEngine(fail=True))
    session.camera_moved(pose_at(0.75))
    wait_until(lambda: display.errors)
    assert "view failed: out of memory (simulated)" in display.errors[0]
    session.camera_moved(pose_at(0.25))
    wait_until(lambda: display.frames)
    assert session.worker.alive and session.worker.failed == 1


def test_render_height_is_bounded(session_factory):
    session, _ = session_factory(max_render_height=64)
    session.update_settings(render_height=10_000)
    assert session.settings.render_height == 64
    session.update_settings(render_height=1)
    assert session.settings.render_height == 8


def test_samples_are_shown_stepped_overlaid_and_dropped_on_a_move(session_factory):
    session, display = session_factory()
    session.camera_moved(pose_at(0.25))
    wait_until(lambda: display.frames)
    assert session.request_samples(SampleOptions(count=3, steps=2, guidance=1.0, seed=7))
    wait_until(lambda: session.samples is not None)
    samples = session.samples
    assert len(samples) == 3 and samples.images.shape == (3, 16, 24, 3)
    assert display.samples[-1][:2] == (samples, 0)
    shown = len(display.frames)
    session.camera_moved(pose_at(0.25))  # the page echoing the same camera keeps the samples
    session.step_sample(1)
    assert display.samples[-1][1] == 1 and len(display.frames) == shown + 1
    np.testing.assert_array_equal(display.frames[-1][0], np.round(samples.images[1] * 255))
    session.step_sample(0, overlay=True)
    assert display.samples[-1][2] is True
    assert not np.array_equal(display.frames[-1][0], display.frames[-2][0])
    session.camera_moved(pose_at(0.5))
    wait_until(lambda: session.samples is None)
    assert display.samples[-1][0] is None
    wait_until(lambda: int(display.frames[-1][0][0, 0, 0]) == round(0.5 * 255))


def test_samples_of_a_view_left_while_sampling_are_dropped(session_factory):
    engine = FakeEngine()
    session, display = session_factory(engine)
    session.camera_moved(pose_at(0.25))
    wait_until(lambda: display.frames)
    engine.gate.clear()
    session.request_samples(SampleOptions(count=2))
    wait_until(lambda: any("sampling" in text for text in display.statuses))
    session.camera_moved(pose_at(0.3))
    engine.gate.set()
    wait_until(lambda: any("samples dropped" in text for text in display.statuses))
    assert session.samples is None


def test_keyframes_export_as_cameras_json(session_factory, tmp_path):
    session, display = session_factory(output_dir=tmp_path)
    with pytest.raises(ValueError, match="camera yet"):
        session.add_keyframe()
    for x in (0.0, 0.5, 1.0):
        session.camera_moved(pose_at(x))
        session.add_keyframe()
    session.camera_moved(pose_at(2.0))
    session.add_keyframe()
    assert session.remove_keyframe() == 3 and display.keyframes == [1, 2, 3, 4, 3]
    name = session.export_path(PathOptions(frames=9))
    assert (tmp_path / name).is_file() and display.files[name] == (tmp_path / name).read_bytes()
    assert json.loads(display.files[name])["convention"] == "opencv_c2w"
    path = Cameras.load(tmp_path / name)
    assert len(path) == 9 and path.image_size == (16, 24)
    np.testing.assert_allclose(path.centers[[0, -1], 0].numpy(), [0.0, 1.0], atol=1e-9)
    session.clear_keyframes()
    with pytest.raises(ValueError, match="two keyframes"):
        session.export_path(PathOptions())


def test_export_without_output_dir_is_a_download_only(session_factory):
    session, display = session_factory()
    for x in (0.0, 1.0):
        session.camera_moved(pose_at(x))
        session.add_keyframe()
    name = session.export_path(PathOptions(frames=5))
    assert name.endswith(".json") and "/" not in name
    assert len(Cameras.from_dict(json.loads(display.files[name]))) == 5


def test_path_plays_and_renders_to_a_video(session_factory, tmp_path):
    engine = FakeEngine()
    session, display = session_factory(engine, output_dir=tmp_path)
    for x in (0.0, 0.8):
        session.camera_moved(pose_at(x))
        session.add_keyframe()
    wait_until(lambda: display.frames)
    before = len(engine.renders)
    assert session.play_path(PathOptions(frames=6, fps=60.0))
    wait_until(lambda: any("frame 6/6" in text for text in display.statuses))
    assert len(engine.renders) - before >= 6
    assert session.render_video(PathOptions(frames=10, fps=10.0))
    wait_until(lambda: any(name.endswith(".mp4") for name in display.files))
    name = next(name for name in display.files if name.endswith(".mp4"))
    assert display.files[name][4:8] == b"ftyp" and (tmp_path / name).is_file()


def test_playback_stops_when_the_camera_moves(session_factory):
    session, display = session_factory()
    for x in (0.0, 0.8):
        session.camera_moved(pose_at(x))
        session.add_keyframe()
    session.play_path(PathOptions(frames=200, fps=20.0))
    wait_until(lambda: any("playing path" in text for text in display.statuses))
    session.camera_moved(pose_at(0.4))
    wait_until(lambda: int(display.frames[-1][0][0, 0, 0]) == round(0.4 * 255))
    assert not any("frame 200/200" in text for text in display.statuses)


def test_client_values_are_bounded(session_factory):
    options = SampleOptions(count=10_000, steps=0, guidance=-3.0, seed=-1).bounded()
    assert (options.count, options.steps, options.guidance) == (MAX_SAMPLES, 1, 0.0)
    assert 0 <= options.seed < 2**31
    assert PathOptions(frames=10**9, fps=1e6).bounded() == PathOptions(MAX_PATH_FRAMES, 60.0)
    session, _ = session_factory()
    for x in (0.0, 1.0):
        session.camera_moved(pose_at(x))
        session.add_keyframe()
    assert len(session.path_cameras(10**9)) == MAX_PATH_FRAMES


def test_frame_stats_report_the_rate_of_the_last_second():
    stats = FrameStats()
    for index in range(31):
        stats.record(0.010, 0.015, now=100.0 + index / 30, size=(64, 96))
    assert stats.fps == pytest.approx(30.0)
    assert stats.frames == 31 and stats.size == (64, 96)
    assert stats.summary() == "render 10 ms · latency 15 ms · 30.0 FPS · 96×64 px"
    stats.record(0.010, 0.015, now=110.0, size=(64, 96))
    assert stats.fps == 0.0  # one frame in the last second


def test_close_ends_the_worker_and_frees_the_state(session_factory):
    session, display = session_factory()
    session.camera_moved(pose_at(0.1))
    session.add_keyframe()
    wait_until(lambda: display.frames)
    assert session.close()
    assert not session.worker.alive and session.keyframes == [] and session.samples is None
    session.camera_moved(pose_at(0.2))  # a late camera message is ignored
    assert len(display.frames) == 1


# ----------------------------------------------------------------------------- samples


def test_spread_is_the_sample_standard_deviation_averaged_over_rgb():
    samples = np.random.default_rng(0).random((5, 4, 6, 3), dtype=np.float32)
    expected = torch.from_numpy(samples).std(dim=0).mean(dim=-1).numpy()
    np.testing.assert_allclose(spread_map(samples), expected, rtol=1e-5)
    assert not spread_map(samples[:1]).any()
    colors = heat_colors(np.array([0.0, 0.5, 1.0, 2.0]))
    np.testing.assert_allclose(colors[0], 0.0)
    np.testing.assert_allclose(colors[1], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(colors[2:], [[1.0, 1.0, 0.0]] * 2)


def test_overlay_marks_where_samples_disagree():
    agree = np.full((4, 8, 8, 3), 0.5, dtype=np.float32)
    agree[:, :, 4:] = np.random.default_rng(1).random((4, 8, 4, 3))  # right half disagrees
    samples = SampleSet.from_samples(agree, pose_at(0.0))
    plain, overlay = samples.frame(0, overlay=False), samples.frame(0, overlay=True)
    np.testing.assert_array_equal(plain, agree[0])
    assert samples.spread[:, 4:].mean() > SPREAD_FULL_SCALE / 2 > samples.spread[:, :4].max()
    warm = (overlay[..., 0] - overlay[..., 2]).mean(axis=0)  # red minus blue, per column
    assert warm[4:].min() > 0.5 and np.abs(warm[:4]).max() < 1e-6
    np.testing.assert_array_equal(samples.frame(5, overlay=False), agree[1])


# ----------------------------------------------------------------------------- command line


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lagernvs")
    add_view_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["view", *argv])


def test_parser_defaults_are_safe():
    args = parse("--demo")
    assert args.host == "127.0.0.1" and args.port == 8080 and args.model == "demo"
    assert args.handler.__name__ == "run_view"
    check_view_args(args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "exactly one source"),
        (("--demo", "--scene", "x"), "exactly one source"),
        (("--demo", "--cameras", "c.json"), "need --images"),
        (("--images", "a.png", "--cameras", "c.json", "--vggt-weights", "v.pt"), "not both"),
        (("--images", "a.png", "--views", "0", "1"), "needs --scene"),
        (("--demo", "--port", "70000"), "--port"),
    ],
)
def test_bad_option_combinations_are_one_line_errors(argv, message):
    with pytest.raises(ValueError, match=message):
        check_view_args(parse(*argv))


def test_other_hosts_than_loopback_warn():
    assert host_warning("127.0.0.1") is None and host_warning("localhost") is None
    assert "visible to anyone on the network" in host_warning("0.0.0.0")


def test_a_busy_port_is_refused():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", 0)


@pytest.mark.parametrize(
    ("origin", "host", "loopback", "allowed"),
    [
        (None, "127.0.0.1:8080", True, True),  # not a browser
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True, True),
        ("http://localhost:8080", "localhost:8080", True, True),
        ("http://[::1]:8080", "[::1]:8080", True, True),
        ("http://evil.example", "127.0.0.1:8080", True, False),  # another site's page
        ("http://127.0.0.1:9999", "127.0.0.1:8080", True, False),  # another local server
        ("http://evil.example:8080", "evil.example:8080", True, False),  # DNS rebinding
        ("http://192.168.1.5:8080", "192.168.1.5:8080", False, True),  # --host 0.0.0.0
        ("http://evil.example", "192.168.1.5:8080", False, False),
        ("null", "127.0.0.1:8080", True, False),  # sandboxed frames, file:// pages
    ],
)
def test_only_the_viewers_own_page_may_connect(origin, host, loopback, allowed):
    assert same_origin(origin, host, loopback) is allowed


def test_vggt_without_the_estimator_is_a_one_line_error(tmp_path, monkeypatch):
    from lagernvs.viewer.sources import estimate_source_cameras

    with pytest.raises(FileNotFoundError, match="VGGT weights"):
        estimate_source_cameras([], str(tmp_path / "missing.pt"), "cpu")
    weights = tmp_path / "vggt.pt"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "lagernvs.models.camera_estimator", None)
    with pytest.raises(ValueError, match="camera estimation is not available"):
        estimate_source_cameras([], str(weights), "cpu")


def test_vggt_weights_give_the_images_estimated_cameras(tmp_path, monkeypatch):
    """--images with --vggt-weights: a VGGT-layout file loads and each image gets a camera."""
    from PIL import Image

    from lagernvs.viewer.cli import add_view_arguments
    from lagernvs.viewer.sources import read_sources

    camera_estimator = pytest.importorskip("lagernvs.models.camera_estimator")
    tiny = camera_estimator.ESTIMATOR_PRESETS["tiny"]
    monkeypatch.setitem(camera_estimator.ESTIMATOR_PRESETS, "vggt_1b", tiny)
    estimator = camera_estimator.VGGTCameraEstimator.from_preset("tiny")
    with torch.no_grad():  # random weights whose predicted fields of view are usable (~1 rad)
        estimator.camera_head.pose_branch.fc2.weight[7:9] *= 0.05
        estimator.camera_head.pose_branch.fc2.bias[7:9] = 0.25
    weights = tmp_path / "vggt.pt"
    torch.save(estimator.state_dict(), weights)
    paths = []
    for index in range(2):
        pixels = np.random.default_rng(index).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(pixels).save(paths[-1])
    parser = argparse.ArgumentParser()
    add_view_arguments(parser)
    args = parser.parse_args(
        ["--images", *map(str, paths), "--vggt-weights", str(weights), "--device", "cpu"]
    )
    sources = read_sources(args)
    assert len(sources.cameras) == 2 and sources.cameras.image_size == (40, 48)
    np.testing.assert_allclose(sources.cameras.c2w[0].numpy(), np.eye(4), atol=1e-6)
    assert "VGGT" in sources.label


# ----------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def demo_scene_and_pipeline():
    from lagernvs.demo import DEMO_SCENES_DIR, load_demo_scenes
    from lagernvs.pipeline import load_pipeline

    return load_demo_scenes(DEMO_SCENES_DIR)[0], load_pipeline("demo")


def test_engine_renders_and_samples_views_of_the_encoded_scene(demo_scene_and_pipeline):
    from lagernvs.viewer.app import scene_layout
    from lagernvs.viewer.engine import SceneEngine

    scene, pipe = demo_scene_and_pipeline
    engine = SceneEngine.encode(pipe, scene.source_images, scene.source_cameras, "demo")
    layout = scene_layout(engine, output_dir=None)
    assert layout.images.shape == (2, 64, 64, 3) and layout.images.dtype == np.uint8
    start = layout.start.c2w[0, :3, 3]
    np.testing.assert_allclose(start, scene.source_cameras.centers.mean(0), atol=1e-6)
    pose = ViewPose(layout.start.c2w[0].numpy(), math.radians(layout.settings.fov_deg), 1.5)
    camera = viewport_camera(pose, 64, engine.patch_size)
    frame = engine.render(camera)
    assert frame.shape == (1, 64, 96, 3) and frame.std() > 0.01  # not blank (smooth walls)
    expected = pipe.render(engine.encoded, camera, height=64, width=96).images
    np.testing.assert_allclose(frame[0], expected[0].permute(1, 2, 0).numpy(), atol=1e-6)
    samples = engine.sample(camera, count=3, steps=2, guidance=1.0, seed=0)
    again = engine.sample(camera, count=3, steps=2, guidance=1.0, seed=0)
    assert samples.shape == (3, 64, 96, 3) and np.array_equal(samples, again)
    assert spread_map(samples).mean() > 0


def test_unposed_images_are_viewed_from_the_first_camera(demo_scene_and_pipeline):
    from lagernvs.viewer.app import scene_layout
    from lagernvs.viewer.engine import SceneEngine

    scene, pipe = demo_scene_and_pipeline
    engine = SceneEngine.encode(pipe, scene.source_images, None, "unposed")
    layout = scene_layout(engine, output_dir=None)
    assert len(layout.sources) == 1 and len(layout.images) == 1
    np.testing.assert_allclose(layout.sources.c2w[0].numpy(), np.eye(4))
    np.testing.assert_allclose(layout.frame.rotation @ [0.0, -1.0, 0.0], [0, 0, 1], atol=1e-12)
    assert layout.settings.fov_deg == pytest.approx(53.1, abs=0.1)  # focal = width, as assumed
