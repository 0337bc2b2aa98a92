"""One client's viewer state and the work its render worker does, independent of the web page.

A :class:`ViewerSession` holds what belongs to one browser tab: its camera, its settings (field of
view, render resolution, stream quality), its samples and its keyframes. Camera moves and button
presses arrive from the server's threads; every render happens on the session's
:class:`~lagernvs.viewer.loop.RenderWorker`. What the page shows goes through a :class:`Display`
(the viser client in the app, a recorder in tests and benchmarks).

What is on screen is either the live deterministic preview or a set of samples of one view: a
camera move away from the sampled view drops the samples and returns to the live preview.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from lagernvs import trajectories
from lagernvs.cameras import Cameras
from lagernvs.viewer.frames import ViewPose, viewport_camera
from lagernvs.viewer.loop import RenderWorker, Request
from lagernvs.viewer.samples import SampleSet
from lagernvs.viewer.stats import FrameStats

__all__ = [
    "Display",
    "Engine",
    "MAX_FPS",
    "MAX_GUIDANCE",
    "MAX_KEYFRAMES",
    "MAX_PATH_FRAMES",
    "MAX_SAMPLES",
    "MAX_STEPS",
    "PathOptions",
    "SampleOptions",
    "ViewSettings",
    "ViewerSession",
]

LOGGER = logging.getLogger("lagernvs.viewer")
MAX_KEYFRAMES, MAX_SAMPLES, MAX_STEPS, MAX_GUIDANCE = 100, 16, 200, 20.0
MAX_PATH_FRAMES, MAX_FPS = 1200, 60.0
STATUS_INTERVAL_S = 0.25
ERROR_REPEAT_S = 5.0
VIDEO_CHUNK = 8


class Engine(Protocol):
    """What a session renders with (:class:`~lagernvs.viewer.engine.SceneEngine`)."""

    patch_size: int
    can_sample: bool

    def render(self, cameras: Cameras) -> np.ndarray: ...

    def sample(
        self, cameras: Cameras, count: int, steps: int, guidance: float, seed: int
    ) -> np.ndarray: ...


class Display(Protocol):
    """What a session shows (called from the worker and the server's threads)."""

    def show_frame(self, image: np.ndarray, quality: int) -> None:
        """Put an (H, W, 3) uint8 frame on the canvas, JPEG-encoded at ``quality``."""

    def show_status(self, text: str) -> None:
        """One line of timing / progress text."""

    def show_error(self, message: str) -> None:
        """A failure, shown in the page."""

    def show_samples(self, samples: SampleSet | None, index: int, overlay: bool) -> None:
        """The sample controls: which sample is shown (None: live preview, no samples)."""

    def show_keyframes(self, keyframes: list[Cameras]) -> None:
        """The path's keyframes (scene frame)."""

    def send_file(self, name: str, data: bytes) -> None:
        """Offer ``data`` to the browser as a download called ``name``."""


@dataclass(frozen=True)
class ViewSettings:
    """Per-client view settings: vertical field of view, render height, JPEG quality."""

    fov_deg: float
    render_height: int
    jpeg_quality: int = 85


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


@dataclass(frozen=True)
class SampleOptions:
    """ "Sample this view": number of samples, denoising steps, guidance scale, seed."""

    count: int = 4
    steps: int = 10
    guidance: float = 2.0
    seed: int = 0

    def bounded(self) -> SampleOptions:
        """The options within the limits one client may ask for (the page enforces them too,
        but its values come from the client)."""
        return SampleOptions(
            count=int(_clip(self.count, 1, MAX_SAMPLES)),
            steps=int(_clip(self.steps, 1, MAX_STEPS)),
            guidance=float(_clip(self.guidance, 0.0, MAX_GUIDANCE)),
            seed=int(self.seed) % 2**31,
        )


@dataclass(frozen=True)
class PathOptions:
    """Path playback and video: frames along the keyframe spline, frames per second."""

    frames: int = 60
    fps: float = 24.0

    def bounded(self) -> PathOptions:
        """The options within the limits one client may ask for."""
        return PathOptions(
            frames=int(_clip(self.frames, 2, MAX_PATH_FRAMES)),
            fps=float(_clip(self.fps, 1.0, MAX_FPS)),
        )


def _uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


class ViewerSession:
    """One client's state and render loop (see the module docstring).

    Args:
        engine: renders the scene.
        display: shows the results.
        settings: initial view settings.
        name: this client's name, used in thread names and exported file names.
        output_dir: where exported paths and videos are also written (None: download only).
        max_render_height: the largest render height a client may ask for.
    """

    def __init__(
        self,
        engine: Engine,
        display: Display,
        settings: ViewSettings,
        name: str,
        output_dir: Path | None = None,
        max_render_height: int = 1024,
    ) -> None:
        self.engine = engine
        self.display = display
        self.name = name
        self.output_dir = output_dir
        self.max_render_height = max_render_height
        self.stats = FrameStats()
        self._lock = threading.Lock()
        self._settings = settings
        self._pose: ViewPose | None = None
        self._samples: SampleSet | None = None
        self._sample_index = 0
        self._overlay = False
        self._keyframes: list[Cameras] = []
        self._exports = 0
        self._last_status = 0.0
        self._last_error = ("", 0.0)
        self.worker = RenderWorker(self._handle, self._report, name=f"lagernvs-viewer-{name}")

    # ------------------------------------------------------------------ inputs (any thread)

    @property
    def settings(self) -> ViewSettings:
        return self._settings

    @property
    def samples(self) -> SampleSet | None:
        return self._samples

    @property
    def keyframes(self) -> list[Cameras]:
        with self._lock:
            return list(self._keyframes)

    def camera_moved(self, pose: ViewPose) -> None:
        """A camera message: render it live (unless it shows the sampled view unchanged)."""
        with self._lock:
            if self._samples is not None and pose.same_view(self._samples.pose):
                return
            self._pose = pose
        self.worker.submit_view(Request("view", pose))

    def update_settings(self, **changes: float | int) -> None:
        """Change view settings (``fov_deg``, ``render_height``, ``jpeg_quality``) and show the
        view again with them."""
        if "render_height" in changes:
            height = min(max(int(changes["render_height"]), 1), self.max_render_height)
            changes["render_height"] = max(height, self.engine.patch_size)
        with self._lock:
            self._settings = replace(self._settings, **changes)
            pose = self._pose
            if self._samples is not None:
                self._show_samples_locked()
                return
        if pose is not None:
            self.worker.submit_view(Request("view", pose))

    def current_camera(self) -> Cameras:
        """The camera of the live view at the render resolution (scene frame)."""
        with self._lock:
            pose, settings = self._pose, self._settings
        if pose is None:
            raise ValueError("the page has not reported its camera yet; move the view once")
        return viewport_camera(pose, settings.render_height, self.engine.patch_size)

    def request_samples(self, options: SampleOptions) -> bool:
        """Queue "sample this view" at the current camera; False when the queue is full."""
        if not self.engine.can_sample:
            raise ValueError("this model has no diffusion decoder, so it cannot sample")
        with self._lock:
            pose = self._pose
        if pose is None:
            raise ValueError("the page has not reported its camera yet; move the view once")
        return self.worker.submit_task(Request("sample", (pose, options.bounded())))

    def step_sample(self, step: int = 0, overlay: bool | None = None) -> None:
        """Show the sample ``step`` places further (wrapping), and toggle the spread overlay."""
        with self._lock:
            if overlay is not None:
                self._overlay = overlay
            if self._samples is None:
                return
            self._sample_index = (self._sample_index + step) % len(self._samples)
            self._show_samples_locked()

    def add_keyframe(self) -> int:
        """Append the current camera to the path; returns the number of keyframes."""
        camera = self.current_camera()
        with self._lock:
            if len(self._keyframes) >= MAX_KEYFRAMES:
                raise ValueError(f"a path holds at most {MAX_KEYFRAMES} keyframes")
            self._keyframes.append(camera)
            keyframes = list(self._keyframes)
        self.display.show_keyframes(keyframes)
        return len(keyframes)

    def remove_keyframe(self, index: int = -1) -> int:
        """Remove keyframe ``index`` (default the last); returns the number left."""
        with self._lock:
            if self._keyframes:
                self._keyframes.pop(index)
            keyframes = list(self._keyframes)
        self.display.show_keyframes(keyframes)
        return len(keyframes)

    def clear_keyframes(self) -> None:
        with self._lock:
            self._keyframes.clear()
        self.display.show_keyframes([])

    def path_cameras(self, frames: int) -> Cameras:
        """The keyframe spline (:func:`lagernvs.trajectories.interpolate`) with ``frames``
        cameras (at most ``MAX_PATH_FRAMES``), in the scene's frame, at the first keyframe's
        image size."""
        keyframes = self.keyframes
        if len(keyframes) < 2:
            raise ValueError("a path needs at least two keyframes; add the current view twice")
        frames = PathOptions(frames=frames).bounded().frames
        return trajectories.interpolate(Cameras.cat(keyframes), frames)

    def play_path(self, options: PathOptions) -> bool:
        """Queue playback of the path (it stops when the camera moves)."""
        options = options.bounded()
        cameras = self.path_cameras(options.frames)
        return self.worker.submit_task(Request("play", (cameras, options)))

    def render_video(self, options: PathOptions) -> bool:
        """Queue rendering the path into an mp4, sent as a download (and kept in output_dir)."""
        options = options.bounded()
        cameras = self.path_cameras(options.frames)
        return self.worker.submit_task(Request("video", (cameras, options)))

    def export_path(self, options: PathOptions) -> str:
        """Send the path as the cameras JSON ``lagernvs render --cameras-path`` reads (what
        :meth:`Cameras.save` writes); returns the file name."""
        cameras = self.path_cameras(options.frames)
        return self._export("json", cameras.save)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the worker and free the state; True when the worker thread has ended."""
        ended = self.worker.close(timeout)
        with self._lock:
            self._samples, self._pose = None, None
            self._keyframes.clear()
        return ended

    # ------------------------------------------------------------------ worker side

    def _handle(self, request: Request) -> None:
        handlers: dict[str, Callable[[Request], None]] = {
            "view": self._render_view,
            "sample": self._render_samples,
            "play": self._play,
            "video": self._video,
        }
        handlers[request.kind](request)

    def _report(self, request: Request, error: Exception) -> None:
        """Log a failed request and show it in the page (a repeated message at most every
        :data:`ERROR_REPEAT_S` seconds, so a failing live view does not flood the page)."""
        LOGGER.error("%s: %s request failed: %s", self.name, request.kind, error, exc_info=error)
        message = f"{request.kind} failed: {' '.join(str(error).split()) or type(error).__name__}"
        now = time.monotonic()
        if message != self._last_error[0] or now - self._last_error[1] >= ERROR_REPEAT_S:
            self._last_error = (message, now)
            self.display.show_error(message)

    def _render_view(self, request: Request) -> None:
        pose: ViewPose = request.payload
        settings = self._settings
        camera = viewport_camera(pose, settings.render_height, self.engine.patch_size)
        started = time.perf_counter()
        image = _uint8(self.engine.render(camera)[0])
        rendered = time.perf_counter()
        with self._lock:
            if self._samples is not None and pose.same_view(self._samples.pose):
                return
            self._drop_samples_locked()
            self.display.show_frame(image, settings.jpeg_quality)
        now = time.perf_counter()
        self.stats.record(rendered - started, now - request.created, now, camera.image_size)
        if now - self._last_status >= STATUS_INTERVAL_S:
            self._last_status = now
            self.display.show_status(self.stats.summary())

    def _render_samples(self, request: Request) -> None:
        pose, options = request.payload
        camera = viewport_camera(pose, self._settings.render_height, self.engine.patch_size)
        self.display.show_status(f"sampling {options.count} × {options.steps} steps …")
        started = time.perf_counter()
        images = self.engine.sample(
            camera, options.count, options.steps, options.guidance, options.seed
        )
        seconds = time.perf_counter() - started
        with self._lock:
            if not pose.same_view(self._pose):
                self.display.show_status("the camera moved while sampling: samples dropped")
                return
            self._samples = SampleSet.from_samples(images, pose)
            self._sample_index = 0
            self._show_samples_locked()
        self.display.show_status(f"{len(images)} samples in {seconds:.1f} s")

    def _show_samples_locked(self) -> None:
        samples = self._samples
        assert samples is not None
        frame = samples.frame(self._sample_index, self._overlay)
        self.display.show_frame(_uint8(frame), self._settings.jpeg_quality)
        self.display.show_samples(samples, self._sample_index, self._overlay)

    def _drop_samples_locked(self) -> None:
        if self._samples is not None:
            self._samples = None
            self.display.show_samples(None, 0, self._overlay)

    def _play(self, request: Request) -> None:
        cameras, options = request.payload
        period = 1.0 / options.fps
        arrivals = self.worker.arrivals
        for index in range(len(cameras)):
            if self.worker.interrupted(since=arrivals):
                return  # the user moved or pressed something: that comes next
            started = time.perf_counter()
            image = _uint8(self.engine.render(cameras[index])[0])
            with self._lock:
                self._drop_samples_locked()
                self.display.show_frame(image, self._settings.jpeg_quality)
            self.display.show_status(f"playing path: frame {index + 1}/{len(cameras)}")
            time.sleep(max(0.0, period - (time.perf_counter() - started)))
        with self._lock:
            pose = self._pose
        if pose is not None:
            self.worker.submit_view(Request("view", pose))

    def _video(self, request: Request) -> None:
        from lagernvs.io import VideoWriter

        cameras, options = request.payload

        def write(path: Path) -> None:
            with VideoWriter(path, fps=options.fps) as writer:
                for start in range(0, len(cameras), VIDEO_CHUNK):
                    for frame in self.engine.render(cameras[start : start + VIDEO_CHUNK]):
                        writer.append(frame)
                    done = min(start + VIDEO_CHUNK, len(cameras))
                    self.display.show_status(f"rendering video: {done}/{len(cameras)} frames")

        name = self._export("mp4", write)
        self.display.show_status(f"video {name}: {len(cameras)} frames")

    def _export(self, suffix: str, write: Callable[[Path], object]) -> str:
        """Write a file with a server-chosen name (``lagernvs-path-<time>-<client>-<n>``) into
        output_dir (or a temporary folder), send it to the browser and return its name."""
        with self._lock:
            self._exports += 1
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = f"lagernvs-path-{stamp}-{self.name}-{self._exports:02d}.{suffix}"
        if self.output_dir is not None:
            path = self.output_dir / name
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write(path)
            data = path.read_bytes()
        else:
            with tempfile.TemporaryDirectory(prefix="lagernvs-viewer-") as folder:
                path = Path(folder) / name
                write(path)
                data = path.read_bytes()
        self.display.send_file(name, data)
        return name
