"""`lagernvs view`: its argparse arguments and handler (heavy imports wait until it runs).

``lagernvs.cli`` adds the subcommand with :func:`add_view_parser`; ``python -m lagernvs.viewer``
runs the same handler through :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from lagernvs.viewer.network import host_warning

__all__ = ["add_view_arguments", "add_view_parser", "check_view_args", "main", "run_view"]

DESCRIPTION = (
    "Serve a scene in the browser: the encoder runs once, every camera move renders the view "
    "with the renderer alone. 'Sample this view' draws samples of the diffusion decoder with "
    "their spread; keyframes make a path to play, export as cameras JSON (for lagernvs render "
    "--cameras-path) or render to a video. Listens on 127.0.0.1 unless --host says otherwise."
)


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lagernvs view` (shared with ``python -m lagernvs.viewer``)."""
    sources = parser.add_argument_group("sources (one of --images, --scene, --demo)")
    sources.add_argument("--images", nargs="+", default=[], help="source image files")
    sources.add_argument("--cameras", default=None, help="cameras JSON (Cameras.save) of --images")
    sources.add_argument(
        "--vggt-weights", default=None, help="VGGT-1B weights file: estimate the --images' cameras"
    )
    sources.add_argument("--scene", default=None, help="a scene folder/file load_scene reads")
    sources.add_argument(
        "--views", nargs="+", type=int, default=None, help="frames of --scene (default first, last)"
    )
    sources.add_argument(
        "--ignore-distortion", action="store_true", help="treat a distorted --scene as pinhole"
    )
    sources.add_argument(
        "--demo", action="store_true", help="the bundled demo model and scene (offline)"
    )
    parser.add_argument(
        "--model",
        default="demo",
        help="'demo' (default), a save_pretrained / model / run folder, or preset:NAME",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0: any free port)")
    parser.add_argument(
        "--output-dir", default=None, help="also write exported paths and videos here"
    )
    parser.set_defaults(handler=run_view)


def add_view_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``view`` subcommand to the `lagernvs` command line."""
    parser = subparsers.add_parser(
        "view", help="explore a scene in the browser in real time", description=DESCRIPTION
    )
    add_view_arguments(parser)
    return parser


def check_view_args(args: argparse.Namespace) -> None:
    """One-line errors for option combinations argparse cannot express."""
    options = {"--images": args.images, "--scene": args.scene, "--demo": args.demo}
    given = [name for name, value in options.items() if value]
    if len(given) != 1:
        raise ValueError(
            "give exactly one source: --images a.png b.png, --scene DIR or --demo"
            + (f" (got {' and '.join(given)})" if given else "")
        )
    if (args.cameras or args.vggt_weights) and not args.images:
        raise ValueError("--cameras and --vggt-weights describe --images; they need --images")
    if args.cameras and args.vggt_weights:
        raise ValueError("give either --cameras or --vggt-weights, not both")
    if args.views and not args.scene:
        raise ValueError("--views selects frames of a --scene; it needs --scene")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")


def _wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM (the handlers are restored afterwards)."""
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in signals}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_view(args: argparse.Namespace) -> int:
    """Load the sources and the model, encode once, serve until SIGINT / SIGTERM; returns 0."""
    check_view_args(args)
    try:
        import viser  # noqa: F401 (fail before loading anything)
    except ImportError:
        raise ValueError("the viewer needs viser: pip install 'lagernvs[viewer]'") from None
    from lagernvs.viewer.app import ViewerApp
    from lagernvs.viewer.engine import SceneEngine
    from lagernvs.viewer.sources import load_viewer_pipeline, read_sources

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lagernvs.viewer").setLevel(logging.INFO)
    warning = host_warning(args.host)
    if warning is not None:
        print(warning, file=sys.stderr)
    sources = read_sources(args)
    pipe = load_viewer_pipeline(args.model, args.device)
    engine = SceneEngine.encode(pipe, sources.images, sources.cameras, sources.label)
    output_dir = Path(args.output_dir) if args.output_dir else None
    app = ViewerApp(engine, host=args.host, port=args.port, output_dir=output_dir)
    try:
        print(f"LagerNVS viewer: {app.url} (Ctrl+C to stop)", flush=True)
        _wait_for_stop()
    finally:
        app.stop()
    print("LagerNVS viewer stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lagernvs.viewer``: the handler with one-line errors, as `lagernvs` does."""
    parser = argparse.ArgumentParser(prog="python -m lagernvs.viewer", description=DESCRIPTION)
    add_view_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_view(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as error:
        print(f"lagernvs view: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
