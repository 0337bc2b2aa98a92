"""`lagernvs view` in a real browser: headless system Chromium driven by Playwright.

The page must load with no request leaving the machine, show a rendered frame, follow mouse
drags, sample the view with a spread overlay, keep each tab's camera to itself, free a closed
tab's state and export the path; the command itself must listen on 127.0.0.1 only and stop on
SIGINT. Skipped only when Playwright or /usr/bin/chromium is missing (CI installs both).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "the browser tests need Chromium at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need Playwright (pip install playwright)"
)

from PIL import Image  # noqa: E402

from lagernvs.cameras import Cameras  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1000, "height": 700}
CANVAS_CLIP = {"x": 20, "y": 180, "width": 560, "height": 500}  # clear of the panels
DRAG_START, DRAG_END = (300, 420), (440, 380)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def app() -> Iterator:
    from lagernvs.demo import DEMO_SCENES_DIR, load_demo_scenes
    from lagernvs.pipeline import load_pipeline
    from lagernvs.viewer.app import ViewerApp
    from lagernvs.viewer.engine import SceneEngine

    scene = load_demo_scenes(DEMO_SCENES_DIR)[0]
    engine = SceneEngine.encode(
        load_pipeline("demo"), scene.source_images, scene.source_cameras, "demo"
    )
    viewer = ViewerApp(engine, port=0)
    yield viewer
    viewer.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


class Tab:
    """One page of the viewer, with the requests it made beyond the server."""

    def __init__(self, browser, url: str) -> None:
        self.page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        self.foreign: list[str] = []
        local = url.rstrip("/")
        self.page.route(re.compile(r"^https?://.*"), self._only_local(local))
        self.page.goto(url)
        self.page.get_by_text("Field of view").wait_for()

    def _only_local(self, local: str):
        server = local.split("://", 1)[1]

        def handle(route) -> None:
            if route.request.url.split("://", 1)[1].startswith(server):
                route.continue_()
            else:
                self.foreign.append(route.request.url)
                route.abort()

        return handle

    def canvas(self) -> np.ndarray:
        shot = self.page.screenshot(clip=CANVAS_CLIP)
        return np.asarray(Image.open(BytesIO(shot)).convert("RGB"), dtype=np.float32)

    def drag(self, start=DRAG_START, end=DRAG_END) -> None:
        self.page.mouse.move(*start)
        self.page.mouse.down()
        self.page.mouse.move(*end, steps=12)
        self.page.mouse.up()

    def hide_sources(self) -> None:
        """Untick "Show source cameras", so the canvas holds the rendered frame alone."""
        self.page.get_by_text("Show source cameras").click()

    def canvas_changes(self, before: np.ndarray, threshold: float = 6.0) -> np.ndarray:
        """Wait until the canvas differs from ``before`` by ``threshold`` (mean abs, 0-255)."""
        shots = [before]

        def changed() -> bool:
            shots.append(self.canvas())
            return float(np.abs(shots[-1] - before).mean()) > threshold

        wait_until(changed)
        return shots[-1]

    def close(self) -> None:
        self.page.close()


def open_tab(app, browser) -> tuple[Tab, object]:
    """A new page and the session the server made for it (after its first frame)."""
    known = set(app.sessions)
    tab = Tab(browser, app.url)
    wait_until(lambda: set(app.sessions) - known)
    (client_id,) = set(app.sessions) - known
    session = app.sessions[client_id]
    wait_until(lambda: session.stats.frames >= 1)
    return tab, session


def assert_rendered(pixels: np.ndarray) -> None:
    """A frame, not the page's white background: few near-white pixels and real contrast."""
    near_white = (pixels > 245).all(axis=-1).mean()
    assert near_white < 0.05, f"{near_white:.0%} of the canvas is blank"
    assert pixels.std() > 3.0


def test_page_loads_offline_and_shows_a_rendered_frame(app, browser):
    tab, session = open_tab(app, browser)
    tab.hide_sources()
    time.sleep(0.5)
    assert_rendered(tab.canvas())
    tab.page.get_by_text(re.compile(r"render \d+ ms")).wait_for()
    assert tab.foreign == [], f"the page fetched {tab.foreign}"
    tab.close()


def test_mouse_drag_changes_the_frame(app, browser):
    tab, session = open_tab(app, browser)
    tab.hide_sources()
    time.sleep(0.5)
    before, frames = tab.canvas(), session.stats.frames
    tab.drag()
    after = tab.canvas_changes(before)
    assert session.stats.frames > frames
    assert_rendered(after)
    tab.close()


def test_sample_this_view_shows_samples_and_the_spread_overlay(app, browser):
    tab, session = open_tab(app, browser)
    tab.hide_sources()
    page = tab.page
    time.sleep(0.5)
    live = tab.canvas()
    page.get_by_role("button", name="Sample this view").click()
    page.get_by_text(re.compile(r"Showing sample 1 of 4")).wait_for()
    first = tab.canvas_changes(live, threshold=2.0)
    assert session.samples is not None and len(session.samples) == 4
    page.get_by_role("button", name="Next").click()
    page.get_by_text(re.compile(r"Showing sample 2 of 4")).wait_for()
    tab.canvas_changes(first, threshold=1.0)
    plain = tab.canvas()
    page.get_by_text("Spread overlay").click()
    page.get_by_text(re.compile(r"with the spread overlay")).wait_for()
    overlaid = tab.canvas_changes(plain, threshold=3.0)
    warmth = lambda pixels: float((pixels[..., 0] - pixels[..., 2]).mean())  # noqa: E731
    assert warmth(overlaid) > warmth(plain) + 3.0
    assert page.get_by_text("Spread across samples").is_visible()
    tab.drag()
    page.get_by_text("Live preview.").wait_for()
    wait_until(lambda: session.samples is None)
    tab.close()


def test_two_pages_have_independent_cameras(app, browser):
    first, first_session = open_tab(app, browser)
    second, second_session = open_tab(app, browser)
    for tab in (first, second):
        tab.hide_sources()
    time.sleep(0.5)
    first_before, second_before = first.canvas(), second.canvas()
    second_frames = second_session.stats.frames
    first.drag()
    first.canvas_changes(first_before)
    time.sleep(0.5)
    assert float(np.abs(second.canvas() - second_before).mean()) < 1.0
    assert second_session.stats.frames == second_frames
    first_pose, second_pose = first_session.current_camera(), second_session.current_camera()
    assert not np.allclose(first_pose.c2w.numpy(), second_pose.c2w.numpy())
    first.close()
    second.close()


class FailingEngine:
    """The scene engine, except that live renders raise while ``failing``."""

    def __init__(self, engine) -> None:
        self.engine, self.failing = engine, True
        self.patch_size, self.can_sample = engine.patch_size, engine.can_sample

    def render(self, cameras):
        if self.failing:
            raise RuntimeError("simulated device failure")
        return self.engine.render(cameras)


def test_a_render_error_is_shown_in_the_page_and_the_viewer_recovers(app, browser):
    tab, session = open_tab(app, browser)
    engine = FailingEngine(session.engine)
    session.engine = engine
    tab.drag()
    tab.page.get_by_text("view failed: simulated device failure").first.wait_for()
    frames = session.stats.frames
    engine.failing = False
    tab.drag(DRAG_END, DRAG_START)
    wait_until(lambda: session.stats.frames > frames)
    tab.page.get_by_text(re.compile(r"render \d+ ms")).wait_for()
    tab.close()


def test_a_page_of_another_origin_gets_no_session(app, browser, caplog):
    """Any website can open a websocket to 127.0.0.1; viser's own client served from another
    port stands in for one. It gets no session (no frames, no source images); the viewer's own
    page under another loopback name still does."""
    import functools
    import http.server
    import threading

    import viser

    client_build = Path(viser.__file__).parent / "client" / "build"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=client_build)
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        known = set(app.sessions)
        with caplog.at_level("WARNING", logger="lagernvs.viewer"):
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"http://127.0.0.1:{other.server_port}/?websocket=ws://127.0.0.1:{app.port}")
            wait_until(lambda: "refused client" in caplog.text)
        assert not set(app.sessions) - known  # earlier tabs may still be closing
        assert "http://127.0.0.1:" in caplog.text and "is not this viewer's page" in caplog.text
        page.close()
    finally:
        other.shutdown()
        other.server_close()
    tab = Tab(browser, f"http://localhost:{app.port}")
    wait_until(lambda: set(app.sessions) - known)
    tab.close()


def test_closing_a_page_frees_its_session(app, browser):
    tab, session = open_tab(app, browser)
    tab.close()
    wait_until(lambda: all(live is not session for live in app.sessions.values()))
    wait_until(lambda: not session.worker.alive)
    assert session.keyframes == []


def test_path_exports_as_cameras_json_download(app, browser):
    tab, session = open_tab(app, browser)
    page = tab.page
    page.get_by_role("button", name="Add keyframe").click()
    wait_until(lambda: len(session.keyframes) == 1)
    frames = session.stats.frames
    tab.drag()
    wait_until(lambda: session.stats.frames > frames)
    time.sleep(0.3)
    page.get_by_role("button", name="Add keyframe").click()
    page.get_by_text("2 keyframes.").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export cameras JSON").click()
    data = json.loads(Path(download.value.path()).read_text())
    cameras = Cameras.from_dict(data)
    keyframes = session.keyframes
    assert data["convention"] == "opencv_c2w" and len(cameras) == 60
    np.testing.assert_allclose(cameras.c2w[0].numpy(), keyframes[0].c2w[0].numpy(), atol=1e-9)
    np.testing.assert_allclose(cameras.c2w[-1].numpy(), keyframes[1].c2w[0].numpy(), atol=1e-9)
    tab.close()


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of sockets listening on ``port``."""
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                addresses.append(address)
    return addresses


def test_command_listens_on_loopback_only_and_stops_on_sigint(browser):
    process = subprocess.Popen(
        [sys.executable, "-m", "lagernvs.viewer", "--demo", "--port", "0", "--device", "cpu"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        for line in process.stdout:
            match = re.search(r"LagerNVS viewer: (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "the viewer did not print its address"
        port = int(url.rsplit(":", 1)[1])
        assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1, and nothing else
        tab = Tab(browser, url)
        tab.hide_sources()
        time.sleep(1.0)
        before = tab.canvas()
        assert_rendered(before)
        tab.drag()
        tab.canvas_changes(before)
        tab.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) in (0, 130)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
