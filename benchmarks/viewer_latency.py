"""Viewer latency and frame rate: from a camera update to the frame sent, during a mouse drag.

Two measurements on the first bundled demo scene (the bundled demo model by default):

* ``session``: a viewer session without a web page. A camera pose arrives every 1/60 s (a drag
  along an arc about the scene centre) for ``--seconds``; each frame is rendered and
  JPEG-encoded as the page would receive it. Latency runs from the pose's arrival to the
  encoded frame.
* ``browser``: the real server and headless Chromium (skipped without Playwright or
  /usr/bin/chromium). The mouse drags across the canvas for ``--seconds``; the server measures
  latency from the camera message's arrival to the frame flushed to the websocket.

Each prints the render time, the latency (median and 90th percentile), the frames per second
delivered and how many poses were dropped as stale. Asserts nothing.

    python benchmarks/viewer_latency.py --seconds 5
    python benchmarks/viewer_latency.py --model preset:re10k_2v_256 --height 512 --device cuda
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lagernvs.viewer.engine import SceneEngine
from lagernvs.viewer.frames import ViewerFrame, ViewPose
from lagernvs.viewer.session import ViewerSession, ViewSettings
from lagernvs.viewer.stats import FrameStats

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]
POSE_RATE_HZ = 60.0
ASPECT = 1.5
ARC_DEGREES = 40.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model spec (load_pipeline)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--height", type=int, default=None, help="render height (default native)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each drag")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality")
    parser.add_argument("--no-browser", action="store_true", help="only the session measurement")
    return parser.parse_args(argv)


class JpegDisplay:
    """Encodes every frame as the page would receive it; ignores everything else."""

    def show_frame(self, image: np.ndarray, quality: int) -> None:
        Image.fromarray(image).save(io.BytesIO(), format="JPEG", quality=quality)

    def show_error(self, message: str) -> None:
        raise RuntimeError(message)

    def show_status(self, text: str) -> None: ...

    def show_samples(self, samples: object, index: int, overlay: bool) -> None: ...

    def show_keyframes(self, keyframes: object) -> None: ...

    def send_file(self, name: str, data: bytes) -> None: ...


def load_engine(model: str, device: str) -> SceneEngine:
    from lagernvs.demo import DEMO_SCENES_DIR, load_demo_scenes
    from lagernvs.pipeline import load_pipeline

    scene = load_demo_scenes(DEMO_SCENES_DIR)[0]
    pipe = load_pipeline(model, device=device)
    return SceneEngine.encode(pipe, scene.source_images, scene.source_cameras, scene.scene_id)


def drag_poses(engine: SceneEngine, count: int) -> list[ViewPose]:
    """``count`` poses of source camera 0 turned about the scene's up axis through its centre,
    by up to :data:`ARC_DEGREES`."""
    sources = engine.source_cameras()
    frame = ViewerFrame.fit(sources)
    c2w = sources.c2w[0].double().numpy()
    fov_y = math.radians(float(sources.fov_deg[0, 0]))
    poses = []
    for angle in np.radians(np.linspace(0.0, ARC_DEGREES, count)):
        cos, sin = math.cos(angle), math.sin(angle)
        about_z = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        turn = frame.rotation.T @ about_z @ frame.rotation
        moved = np.eye(4)
        moved[:3, :3] = turn @ c2w[:3, :3]
        moved[:3, 3] = frame.center + turn @ (c2w[:3, 3] - frame.center)
        poses.append(ViewPose(moved, fov_y, ASPECT))
    return poses


def report(name: str, stats: FrameStats, frames: int, poses: int, seconds: float) -> str:
    latency = np.asarray(list(stats.latencies_ms)[-frames:])
    render = np.asarray(list(stats.render_times_ms)[-frames:])
    height, width = stats.size
    return (
        f"{name:<8} {width}x{height} px: render {np.median(render):6.1f} ms, latency median "
        f"{np.median(latency):6.1f} / p90 {np.percentile(latency, 90):6.1f} ms, "
        f"{frames / seconds:5.1f} FPS delivered; {poses} poses ({poses / seconds:.0f}/s) -> "
        f"{frames} frames ({100.0 * (1.0 - frames / max(poses, 1)):.0f}% dropped as stale)"
    )


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the viewer stopped delivering frames")
        time.sleep(0.01)


def measure_session(engine: SceneEngine, args: argparse.Namespace, height: int) -> str:
    settings = ViewSettings(50.0, height, args.quality)
    session = ViewerSession(engine, JpegDisplay(), settings, "bench", max_render_height=4096)
    poses = drag_poses(engine, int(args.seconds * POSE_RATE_HZ))
    session.camera_moved(poses[-1])  # warm-up frame, not counted
    wait_for(lambda: session.stats.frames == 1)
    worker, started = session.worker, time.perf_counter()
    for index, pose in enumerate(poses):
        session.camera_moved(pose)
        time.sleep(max(0.0, started + (index + 1) / POSE_RATE_HZ - time.perf_counter()))
    wait_for(lambda: worker.handled + worker.queue.dropped_views == worker.arrivals)
    seconds = time.perf_counter() - started
    session.close()
    return report("session", session.stats, session.stats.frames - 1, len(poses), seconds)


def measure_browser(engine: SceneEngine, args: argparse.Namespace, height: int) -> str:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "browser  skipped: Playwright is not installed"
    if not CHROMIUM.exists():
        return f"browser  skipped: no Chromium at {CHROMIUM}"
    from lagernvs.viewer.app import ViewerApp

    app = ViewerApp(engine, port=0)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 960, "height": 640})
            page.goto(app.url)
            page.get_by_text("Field of view").wait_for()
            (session,) = app.sessions.values()
            session.update_settings(render_height=height, jpeg_quality=args.quality)
            wait_for(lambda: session.stats.size[0] == session.settings.render_height)
            time.sleep(0.5)
            first, arrivals = session.stats.frames, session.worker.arrivals
            started = time.perf_counter()
            page.mouse.move(200, 320)
            page.mouse.down()
            steps = int(args.seconds * POSE_RATE_HZ)
            for step in range(steps):
                page.mouse.move(200 + 300 * math.sin(math.pi * step / steps), 320)
                time.sleep(max(0.0, started + (step + 1) / POSE_RATE_HZ - time.perf_counter()))
            page.mouse.up()
            worker = session.worker
            wait_for(lambda: worker.handled + worker.queue.dropped_views == worker.arrivals)
            seconds = time.perf_counter() - started
            frames, poses = session.stats.frames - first, worker.arrivals - arrivals
            browser.close()
    finally:
        app.stop()
    return report("browser", session.stats, frames, poses, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    engine = load_engine(args.model, args.device)
    height = args.height or engine.native_size[0]
    print(f"model {args.model} on {args.device}, demo scene {engine.label}")
    print(measure_session(engine, args, height))
    if not args.no_browser:
        print(measure_browser(engine, args, height))


if __name__ == "__main__":
    main()
