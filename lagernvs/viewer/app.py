"""The viewer server: one encoded scene, a viser web server, one :class:`ClientView` per tab.

Everything a tab sees of the scene is per tab: a tab that connects gets its own source frustums,
controls and render worker; one that disconnects has them freed. Safe by default:

* clients only ever send camera poses and control values: no control names a file on the
  server, and the HTTP server only serves viser's bundled web client;
* viser's public share tunnel is switched off;
* a websocket opened by a page of another origin (any website the user has open can try
  ``ws://127.0.0.1:PORT``; browsers do not stop it) gets no session, so it never receives the
  scene: see :func:`same_origin`.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from lagernvs import trajectories
from lagernvs.cameras import Cameras
from lagernvs.viewer.client import ClientView, SceneLayout
from lagernvs.viewer.engine import SceneEngine
from lagernvs.viewer.frames import ViewerFrame
from lagernvs.viewer.network import LOOPBACK_HOSTS, check_port, same_origin
from lagernvs.viewer.session import ViewerSession, ViewSettings

__all__ = ["ViewerApp", "scene_layout", "start_camera"]

LOGGER = logging.getLogger("lagernvs.viewer")
MAX_RENDER_HEIGHT = 1024
STOP_TIMEOUT_S = 1.0


def _frustum_scale(frame: ViewerFrame, sources: Cameras) -> float:
    """Frustum size in viewer units: a quarter of the closest spacing of the sources, within
    limits (so a view between two sources is not crossed by their frustums)."""
    centres = frame.points_to_viewer(sources.centers.double().numpy())
    if len(centres) < 2:
        return 0.15
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    closest = float(gaps[~np.eye(len(centres), dtype=bool)].min())
    return float(np.clip(0.25 * closest, 0.02, 0.2))


def start_camera(sources: Cameras) -> Cameras:
    """Where new tabs start: halfway along the spline through the sources (a novel view), or
    the only source."""
    if len(sources) < 2:
        return sources[:1]
    return trajectories.interpolate(sources, 3)[1]


def scene_layout(engine: SceneEngine, output_dir: Path | None) -> SceneLayout:
    """The viewer frame, frustums and default settings of ``engine``'s scene."""
    sources = engine.source_cameras()
    frame = ViewerFrame.fit(sources)
    start = start_camera(sources)
    native, patch = engine.native_size[0], engine.patch_size
    return SceneLayout(
        engine=engine,
        frame=frame,
        sources=sources,
        images=engine.source_images(),
        start=start,
        frustum_scale=_frustum_scale(frame, sources),
        settings=ViewSettings(fov_deg=round(float(start.fov_deg[0, 0]), 1), render_height=native),
        max_render_height=max(native, min(4 * native, MAX_RENDER_HEIGHT) // patch * patch),
        output_dir=output_dir,
    )


class ViewerApp:
    """Serve ``engine``'s scene at ``http://host:port`` until :meth:`stop`.

    Args:
        engine: the encoded scene.
        host: interface to listen on (127.0.0.1: this machine only).
        port: TCP port (0: a free one; see :attr:`port`).
        output_dir: exported paths and videos are also written here (None: downloads only).
    """

    def __init__(
        self,
        engine: SceneEngine,
        host: str = "127.0.0.1",
        port: int = 8080,
        output_dir: Path | None = None,
    ) -> None:
        import viser

        check_port(host, port)
        self.host = host
        self.layout = scene_layout(engine, output_dir)
        self._views: dict[int, ClientView] = {}
        self._lock = threading.Lock()
        self.server = viser.ViserServer(host=host, port=port, label="LagerNVS", verbose=False)
        self.server.request_share_url = self._refuse_share_url
        self.server.gui.configure_theme(show_share_button=False)
        self._set_initial_camera()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def sessions(self) -> dict[int, ViewerSession]:
        """The live sessions by client id."""
        with self._lock:
            return {client_id: view.session for client_id, view in self._views.items()}

    def stop(self) -> None:
        """Free every session and stop the web server."""
        with self._lock:
            views, self._views = list(self._views.values()), {}
        for view in views:
            view.close(timeout=STOP_TIMEOUT_S)
        self.server.stop()

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _refuse_share_url(*_: Any, **__: Any) -> None:
        LOGGER.warning("a client asked for a public share link; the viewer never opens one")

    def _set_initial_camera(self) -> None:
        """New tabs start at the layout's start camera, +z up."""
        position, look_at = self.layout.frame.orbit_pose(self.layout.start.c2w[0])
        initial = self.server.initial_camera
        initial.fov = math.radians(self.layout.settings.fov_deg)
        initial.up = (0.0, 0.0, 1.0)
        initial.position = tuple(position)
        initial.look_at = tuple(look_at)

    # ------------------------------------------------------------------ clients

    def _from_own_page(self, client: Any) -> bool:
        """:func:`same_origin` on the client's websocket handshake (read from viser's
        connection table; if a viser version hides it, the check cannot run and says so)."""
        connections = getattr(self.server._websock_server, "_live_connections", None)
        request = getattr((connections or {}).get(client.client_id), "request", None)
        if request is None:
            LOGGER.warning("client %d: handshake not readable, origin unchecked", client.client_id)
            return True
        headers = request.headers
        allowed = same_origin(
            headers.get("Origin"), headers.get("Host"), self.host in LOOPBACK_HOSTS
        )
        if not allowed:
            LOGGER.warning(
                "refused client %d: a page of %s is not this viewer's page",
                client.client_id,
                headers.get("Origin"),
            )
        return allowed

    def _connect(self, client: Any) -> None:
        if not self._from_own_page(client):
            return
        view = ClientView(client, self.layout)
        with self._lock:
            connected = client.client_id in self.server.get_clients()
            if connected:
                self._views[client.client_id] = view
        if not connected:  # the tab left while its controls were being built
            view.close()
            return
        LOGGER.info("client %d connected", client.client_id)
        view.session.camera_moved(view.pose())

    def _disconnect(self, client: Any) -> None:
        with self._lock:
            view = self._views.pop(client.client_id, None)
        if view is not None:
            view.close()
            LOGGER.info("client %d disconnected; its state is freed", client.client_id)
