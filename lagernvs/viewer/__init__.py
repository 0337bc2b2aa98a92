"""`lagernvs view`: explore a scene in the browser in real time, and sample what it never saw.

Built on viser (the optional ``viewer`` extra). Importing this package is light: viser, torch and
the model load only when the viewer runs.

* :mod:`~lagernvs.viewer.cli`: the subcommand's arguments and handler (:func:`add_view_parser`).
* :mod:`~lagernvs.viewer.app`: the server (shared scene, one view per browser tab).
* :mod:`~lagernvs.viewer.client`: one tab's controls and canvas.
* :mod:`~lagernvs.viewer.session`: one tab's state and render worker, without the web page.
* :mod:`~lagernvs.viewer.loop`: the latest-pose render loop.
* :mod:`~lagernvs.viewer.stats`: render time, latency and FPS of the live preview.
* :mod:`~lagernvs.viewer.engine`: the encoded scene every tab renders from.
* :mod:`~lagernvs.viewer.frames`: browser camera <-> scene ``Cameras``.
* :mod:`~lagernvs.viewer.samples`: samples of one view and their spread overlay.
* :mod:`~lagernvs.viewer.sources`: sources and model from the command line.
"""

from lagernvs.viewer.cli import add_view_arguments, add_view_parser, main, run_view

__all__ = ["add_view_arguments", "add_view_parser", "main", "run_view"]
