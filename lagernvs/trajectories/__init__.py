"""Camera paths through and around the source cameras: what videos and viewers render.

Every path takes the source :class:`~lagernvs.cameras.Cameras` and returns new ``Cameras``
with ``num_frames`` cameras, one image size (the first source camera's unless ``image_size``
is given; other cameras' intrinsics are cropped/resized to it as the pipeline does) and the
intrinsics of the sources. Paths are in the sources' own frame and units.

Through the sources (:mod:`~lagernvs.trajectories.through`):

* :func:`spline`: the default video path, an eased Catmull-Rom spline through every source
  camera in order and back, as a loop;
* :func:`interpolate`: the same spline one way (also resamples keyframe paths);
* :func:`extrapolate`: the first-to-last source line, continued beyond both.

Around the scene (:mod:`~lagernvs.trajectories.around`), closed loops looking at the subject:

* :func:`orbit`: a circle about the centre of attention (the point closest to every source
  camera's optical axis), about the sources' mean "up", at their mean radius and height;
* :func:`spiral`, :func:`lemniscate`: a spiral and a figure eight about the mean source camera.

Moves of the mean source camera (:mod:`~lagernvs.trajectories.moves`):

* :func:`dolly` (along the axis and back), :func:`move` (``left``/``right``/``up``/``down``/
  ``forward``/``back`` by a distance), :func:`zoom_in` / :func:`zoom_out` (focal length only),
  :func:`dolly_zoom` (focal length follows the distance: the subject keeps its image size).

:data:`PATHS` names them all (hyphenated, as the command line spells them) for
:func:`camera_path`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from lagernvs.cameras import Cameras

from .around import lemniscate, orbit, spiral
from .geometry import center_of_attention, subject_depth, up_direction
from .moves import MOVES, dolly, dolly_zoom, move, zoom_in, zoom_out
from .through import extrapolate, interpolate, spline

__all__ = [
    "MOVES",
    "PATHS",
    "SOURCE_PATHS",
    "camera_path",
    "center_of_attention",
    "dolly",
    "dolly_zoom",
    "extrapolate",
    "interpolate",
    "lemniscate",
    "move",
    "orbit",
    "spiral",
    "spline",
    "subject_depth",
    "up_direction",
    "zoom_in",
    "zoom_out",
]

PATHS: dict[str, Callable[..., Cameras]] = {
    "spline": spline,
    "interpolate": interpolate,
    "extrapolate": extrapolate,
    "orbit": orbit,
    "spiral": spiral,
    "lemniscate": lemniscate,
    "dolly": dolly,
    "dolly-zoom": dolly_zoom,
    "zoom-in": zoom_in,
    "zoom-out": zoom_out,
    **{name: partial(move, direction=name) for name in MOVES},
}
SOURCE_PATHS = ("spline", "interpolate", "extrapolate")
"""Paths that follow the source cameras themselves (they need more than one known camera)."""


def camera_path(kind: str, cameras: Cameras, num_frames: int = 60, **kwargs: object) -> Cameras:
    """The path ``kind`` (a key of :data:`PATHS`) through/around ``cameras``."""
    if kind not in PATHS:
        raise ValueError(f"unknown camera path {kind!r}; choose one of {', '.join(PATHS)}")
    return PATHS[kind](cameras, num_frames, **kwargs)
