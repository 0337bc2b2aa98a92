"""One browser tab in viser: its controls, its camera, and the :class:`Display` of its session.

Every control is created on the client's own GUI (``client.gui``), so settings, samples and
keyframes are per tab; frames go to the tab's canvas as a JPEG background image that fills the
viewport. Camera messages are handled on the server's event loop, in arrival order, and only
hand the pose to the session's worker, so the page never waits for a render.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lagernvs import trajectories
from lagernvs.cameras import Cameras
from lagernvs.viewer.engine import SceneEngine
from lagernvs.viewer.frames import ViewerFrame, ViewPose
from lagernvs.viewer.samples import SampleSet
from lagernvs.viewer.session import (
    MAX_FPS,
    MAX_GUIDANCE,
    MAX_PATH_FRAMES,
    MAX_SAMPLES,
    MAX_STEPS,
    PathOptions,
    SampleOptions,
    ViewerSession,
    ViewSettings,
)

__all__ = ["ClientView", "KEYFRAME_COLOR", "SOURCE_COLOR", "SceneLayout"]

LOGGER = logging.getLogger("lagernvs.viewer")
KEYFRAME_COLOR = (240, 140, 20)
SOURCE_COLOR = (40, 90, 220)
PATH_PREVIEW_POINTS = 100
LINE_PIXELS = 2.0  # screen-space, so a frustum at the eye does not cover the view


@dataclass(frozen=True)
class SceneLayout:
    """What every tab starts from.

    Attributes:
        engine: the shared scene engine.
        frame: the viewer frame of the scene.
        sources: the source cameras (scene frame) and ``images`` (V, H, W, 3) uint8 they carry.
        start: the camera new tabs start at (scene frame).
        frustum_scale: size of drawn frustums (viewer units).
        settings: the initial view settings.
        max_render_height: the render height slider's maximum.
        output_dir: exports are also written here (None: downloads only).
    """

    engine: SceneEngine
    frame: ViewerFrame
    sources: Cameras
    images: np.ndarray
    start: Cameras
    frustum_scale: float
    settings: ViewSettings
    max_render_height: int
    output_dir: Path | None


class ClientView:
    """The page of one client: controls, source frustums, camera callback and the session."""

    def __init__(self, client: Any, layout: SceneLayout) -> None:
        self.client = client
        self.frame = layout.frame
        self.frustum_scale = layout.frustum_scale
        self._keyframe_nodes: list[Any] = []
        self._keyframe_lock = threading.Lock()
        self.sample_info: Any = None
        self.session = ViewerSession(
            layout.engine,
            self,
            layout.settings,
            name=f"client{client.client_id}",
            output_dir=layout.output_dir,
            max_render_height=layout.max_render_height,
        )
        self._build_view_controls(layout)
        self._build_sample_controls(layout.engine)
        self._build_path_controls()
        client.camera.on_update(self._camera_update)

    # ------------------------------------------------------------------ controls

    def _build_view_controls(self, layout: SceneLayout) -> None:
        gui, patch, settings = self.client.gui, layout.engine.patch_size, layout.settings
        with gui.add_folder("View"):
            gui.add_markdown(f"**Scene** {layout.engine.label}")
            self.status = gui.add_markdown("waiting for the first frame …")
            fov = gui.add_slider("Field of view (°)", 10.0, 120.0, 0.5, settings.fov_deg)
            height = gui.add_slider(
                "Render height (px)", patch, layout.max_render_height, patch, settings.render_height
            )
            quality = gui.add_slider("Stream quality", 10, 100, 5, settings.jpeg_quality)
            show_sources = gui.add_checkbox("Show source cameras", True)
        frustums = self._add_source_frustums(layout)
        fov.on_update(self._guarded(lambda _: self._set_fov(fov.value)))
        height.on_update(
            self._guarded(lambda _: self.session.update_settings(render_height=height.value))
        )
        quality.on_update(
            self._guarded(lambda _: self.session.update_settings(jpeg_quality=quality.value))
        )

        def toggle_sources(_: Any) -> None:
            for frustum in frustums:
                frustum.visible = show_sources.value

        show_sources.on_update(toggle_sources)

    def _add_source_frustums(self, layout: SceneLayout) -> list[Any]:
        """The source cameras as frustums carrying their images; a click goes to the camera."""
        wxyz, positions = self.frame.to_viewer(layout.sources.c2w)
        fov_y = np.radians(layout.sources.fov_deg[:, 0].double().numpy())
        sizes = layout.sources.image_sizes.tolist()
        frustums = []
        for index in range(len(layout.sources)):
            frustum = self.client.scene.add_camera_frustum(
                f"/sources/{index}",
                fov=float(fov_y[index]),
                aspect=sizes[index][1] / sizes[index][0],
                scale=self.frustum_scale,
                thickness=LINE_PIXELS,
                thickness_units="screen",
                color=SOURCE_COLOR,
                image=layout.images[index],
                wxyz=wxyz[index],
                position=positions[index],
            )
            camera = layout.sources[index]
            frustum.on_click(self._guarded(lambda _, camera=camera: self.go_to(camera)))
            frustums.append(frustum)
        return frustums

    def _build_sample_controls(self, engine: SceneEngine) -> None:
        gui = self.client.gui
        with gui.add_folder("Sample this view"):
            if not engine.can_sample:
                gui.add_markdown("This model has no diffusion decoder: nothing to sample.")
                return
            defaults = SampleOptions()
            count = gui.add_number("Samples", defaults.count, min=1, max=MAX_SAMPLES, step=1)
            steps = gui.add_number("Steps", defaults.steps, min=1, max=MAX_STEPS, step=1)
            guidance = gui.add_number(
                "Guidance", defaults.guidance, min=0.0, max=MAX_GUIDANCE, step=0.1
            )
            seed = gui.add_number("Seed", defaults.seed, min=0, max=2**31 - 1, step=1)
            sample = gui.add_button("Sample this view")
            self.sample_info = gui.add_markdown("Live preview.")
            self.sample_step = gui.add_button_group("Show sample", ("Previous", "Next"))
            self.overlay = gui.add_checkbox("Spread overlay", False)
            self.spread_image = gui.add_image(
                np.zeros((8, 8, 3), np.uint8), label="Spread across samples", visible=False
            )
        self.sample_step.visible = False

        def request(_: Any) -> None:
            options = SampleOptions(
                int(count.value), int(steps.value), float(guidance.value), int(seed.value)
            )
            if not self.session.request_samples(options):
                self.notify("Busy", "this tab already has work queued; try again shortly")

        def step(event: Any) -> None:
            self.session.step_sample(-1 if event.target.value == "Previous" else 1)

        sample.on_click(self._guarded(request))
        self.sample_step.on_click(self._guarded(step))
        self.overlay.on_update(
            self._guarded(lambda _: self.session.step_sample(0, overlay=self.overlay.value))
        )

    def _build_path_controls(self) -> None:
        gui = self.client.gui
        with gui.add_folder("Camera path"):
            self.path_info = gui.add_markdown("No keyframes.")
            add = gui.add_button("Add keyframe")
            remove = gui.add_button("Remove last keyframe")
            clear = gui.add_button("Clear keyframes")
            frames = gui.add_number("Path frames", 60, min=2, max=MAX_PATH_FRAMES, step=1)
            fps = gui.add_number("Frames per second", 24.0, min=1.0, max=MAX_FPS, step=1.0)
            play = gui.add_button("Play path")
            export = gui.add_button("Export cameras JSON")
            video = gui.add_button("Render video")

        def options() -> PathOptions:
            return PathOptions(frames=int(frames.value), fps=float(fps.value))

        def queued(accepted: bool) -> None:
            if not accepted:
                self.notify("Busy", "this tab already has work queued; try again shortly")

        add.on_click(self._guarded(lambda _: self.session.add_keyframe()))
        remove.on_click(self._guarded(lambda _: self.session.remove_keyframe()))
        clear.on_click(self._guarded(lambda _: self.session.clear_keyframes()))
        play.on_click(self._guarded(lambda _: queued(self.session.play_path(options()))))
        export.on_click(
            self._guarded(lambda _: self.notify("Exported", self.session.export_path(options())))
        )
        video.on_click(self._guarded(lambda _: queued(self.session.render_video(options()))))

    def _guarded(self, action: Callable[[Any], object]) -> Callable[[Any], None]:
        """A GUI callback whose bad-input errors become a notification in the page."""

        def callback(event: Any) -> None:
            try:
                action(event)
            except ValueError as error:
                self.notify("Cannot do that", str(error))
            except Exception as error:
                LOGGER.exception("%s: a control failed", self.session.name)
                self.show_error(f"{type(error).__name__}: {error}")

        return callback

    # ------------------------------------------------------------------ camera

    def pose(self) -> ViewPose:
        """The tab's current view in the scene frame."""
        camera = self.client.camera
        aspect = camera.image_width / max(camera.image_height, 1)
        return ViewPose(self.frame.from_viewer(camera.wxyz, camera.position), camera.fov, aspect)

    async def _camera_update(self, _: Any) -> None:
        self.session.camera_moved(self.pose())

    def _set_fov(self, fov_deg: float) -> None:
        self.client.camera.fov = math.radians(fov_deg)
        self.session.update_settings(fov_deg=fov_deg)
        self.session.camera_moved(self.pose())

    def go_to(self, cameras: Cameras) -> None:
        """Move the tab's camera to ``cameras[0]`` (scene frame; see
        :meth:`ViewerFrame.orbit_pose`)."""
        position, look_at = self.frame.orbit_pose(cameras.c2w[0])
        camera = self.client.camera
        with self.client.atomic():
            camera.fov = math.radians(float(cameras.fov_deg[0, 0]))
            camera.up_direction = (0.0, 0.0, 1.0)
            camera.position = position
            camera.look_at = look_at

    # ------------------------------------------------------------------ Display

    def show_frame(self, image: np.ndarray, quality: int) -> None:
        self.client.scene.set_background_image(image, format="jpeg", jpeg_quality=int(quality))
        self.client.flush()

    def show_status(self, text: str) -> None:
        self.status.content = text

    def show_error(self, message: str) -> None:
        self.status.content = f"**Error:** {message}"
        self.client.add_notification("Error", message, color="red", auto_close_seconds=10.0)

    def notify(self, title: str, message: str) -> None:
        self.client.add_notification(title, message, auto_close_seconds=6.0)

    def show_samples(self, samples: SampleSet | None, index: int, overlay: bool) -> None:
        if self.sample_info is None:  # no diffusion decoder, no sample controls
            return
        if samples is None:
            self.sample_info.content = "Live preview."
            self.sample_step.visible = False
            self.spread_image.visible = False
            return
        self.sample_info.content = (
            f"Showing sample {index + 1} of {len(samples)}"
            f"{' with the spread overlay' if overlay else ''}; "
            f"mean spread {float(samples.spread.mean()):.3f}. Move the camera for the live view."
        )
        self.sample_step.visible = len(samples) >= 2
        self.spread_image.image = (np.clip(samples.spread_image(), 0, 1) * 255).astype(np.uint8)
        self.spread_image.visible = True

    def show_keyframes(self, keyframes: list[Cameras]) -> None:
        with self._keyframe_lock:  # control callbacks of one tab may run concurrently
            for node in self._keyframe_nodes:
                node.remove()
            self._keyframe_nodes = [
                self._keyframe_frustum(index, camera) for index, camera in enumerate(keyframes)
            ]
            if len(keyframes) >= 2:
                path = trajectories.interpolate(Cameras.cat(keyframes), PATH_PREVIEW_POINTS)
                points = self.frame.points_to_viewer(path.centers.double().numpy())
                self._keyframe_nodes.append(
                    self.client.scene.add_line_segments(
                        "/keyframes/path",
                        np.stack([points[:-1], points[1:]], axis=1),
                        colors=KEYFRAME_COLOR,
                        thickness=LINE_PIXELS,
                        thickness_units="screen",
                    )
                )
        count = len(keyframes)
        self.path_info.content = f"{count} keyframe{'s' if count != 1 else ''}."

    def _keyframe_frustum(self, index: int, camera: Cameras) -> Any:
        wxyz, position = self.frame.to_viewer(camera.c2w)
        height, width = camera.image_size
        return self.client.scene.add_camera_frustum(
            f"/keyframes/{index}",
            fov=math.radians(float(camera.fov_deg[0, 0])),
            aspect=width / height,
            scale=self.frustum_scale,
            thickness=LINE_PIXELS,
            thickness_units="screen",
            color=KEYFRAME_COLOR,
            wxyz=wxyz[0],
            position=position[0],
        )

    def send_file(self, name: str, data: bytes) -> None:
        self.client.send_file_download(name, data, save_immediately=True)

    def close(self, timeout: float = 5.0) -> bool:
        """Free the session (the tab disconnected); True when its worker has ended within
        ``timeout`` seconds."""
        return self.session.close(timeout)
