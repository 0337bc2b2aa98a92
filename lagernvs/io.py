"""Writing results to disk atomically: images, frame folders, mp4 videos, JSON and folders.

Every writer goes through :func:`atomic_path` (:func:`atomic_folder` for a folder of results):
the data lands in a hidden temporary sibling and is renamed onto its final name only once
complete, so an interrupt or an error never leaves a half-written file under a final name.
:class:`VideoWriter` encodes frames as they arrive (memory stays flat however long the video),
and :class:`FrameWriter` streams PNG frames to a folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

__all__ = [
    "FrameWriter",
    "VideoWriter",
    "atomic_folder",
    "atomic_path",
    "check_fps",
    "check_video_size",
    "to_uint8",
    "write_frames",
    "write_image",
    "write_json",
    "write_video",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the suffix (writers pick the format from it) and is removed when the
    block raises (KeyboardInterrupt included).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary sibling folder of ``path``; it replaces ``path`` if the block
    succeeds (an earlier folder of that name is removed only then) and is removed if it raises.

    For results made of several files (a ``save_pretrained`` folder): readers see the old folder
    or the complete new one, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        yield temporary
        if path.exists():
            old = path.with_name(f".{path.name}.replaced-{os.getpid()}")
            os.replace(path, old)
            os.replace(temporary, path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (any leading shape, channels last) -> uint8, rounded."""
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def write_image(frame: np.ndarray, path: str | os.PathLike) -> Path:
    """Write one (H, W, 3) float image in [0, 1] (or uint8) atomically; format from the suffix."""
    from PIL import Image

    pixels = frame if frame.dtype == np.uint8 else to_uint8(frame)
    path = Path(path)
    with atomic_path(path) as temporary:
        Image.fromarray(pixels).save(temporary)
    return path


def write_json(data: Any, path: str | os.PathLike, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=indent))
    return path


MAX_FPS = 1000.0
"""The highest frame rate accepted (ffmpeg refuses absurd ones only once frames are written)."""
MAX_VIDEO_SIDE = 8192
"""The longest video frame side accepted (after upscaling), as H.264 encoders allow."""


def check_fps(fps: float) -> float:
    """A video frame rate: a finite number in (0, MAX_FPS], else a one-line ValueError."""
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0 (frames per second), got {fps}")
    if fps > MAX_FPS:
        raise ValueError(f"fps must be at most {MAX_FPS:g} (frames per second), got {fps:g}")
    return float(fps)


def check_video_size(height: int, width: int, upscale: int = 1) -> None:
    """Refuse video frames of (H, W) x ``upscale`` larger than MAX_VIDEO_SIDE a side."""
    longest = max(height, width) * upscale
    if longest > MAX_VIDEO_SIDE:
        raise ValueError(
            f"video frames of {height * upscale}x{width * upscale} pixels (upscale {upscale}) are "
            f"above the {MAX_VIDEO_SIDE} pixels a side video encoders take; lower --upscale"
        )


class FrameWriter:
    """Stream frames to ``folder/00000.png``, ``00001.png``, ... each written atomically."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def append(self, frame: np.ndarray) -> Path:
        """Write the next (H, W, 3) frame."""
        path = write_image(frame, self.folder / f"{self.count:05d}.png")
        self.count += 1
        return path


def write_frames(frames: np.ndarray, folder: str | os.PathLike) -> list[Path]:
    """Write (T, H, W, 3) float frames in [0, 1] as ``folder/00000.png`` ..."""
    writer = FrameWriter(folder)
    return [writer.append(frame) for frame in frames]


class VideoWriter:
    """An H.264 mp4 written frame by frame into a temporary file, renamed when closed cleanly.

    ``upscale`` enlarges every frame by an integer factor (nearest neighbour) for small models;
    frames are padded to even sizes, which H.264 requires. Use as a context manager: leaving the
    block with an exception (or an interrupt) discards the partial video.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 24.0, upscale: int = 1) -> None:
        if isinstance(upscale, bool) or not isinstance(upscale, int) or upscale < 1:
            raise ValueError(f"upscale must be a positive integer, got {upscale!r}")
        self.fps = check_fps(fps)
        self.upscale = upscale
        self.path = Path(path)
        self.count = 0
        self._temporary = self.path
        self._atomic: contextlib.AbstractContextManager[Path] | None = None
        self._writer: Any = None

    def __enter__(self) -> VideoWriter:
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401 (the mp4 backend; fail here, not mid-video)
        except ImportError:
            raise ModuleNotFoundError(
                "writing mp4 videos needs imageio and imageio-ffmpeg: pip install 'lagernvs[video]'"
            ) from None
        self._atomic = atomic_path(self.path)
        self._temporary = self._atomic.__enter__()
        self._writer = imageio.get_writer(
            self._temporary,
            fps=self.fps,
            codec="libx264",
            quality=8,
            macro_block_size=1,
            pixelformat="yuv420p",
        )
        return self

    def append(self, frame: np.ndarray) -> None:
        """Add one (H, W, 3) float frame in [0, 1] (or uint8)."""
        pixels = frame if frame.dtype == np.uint8 else to_uint8(frame)
        pixels = pixels.repeat(self.upscale, axis=0).repeat(self.upscale, axis=1)
        pad_h, pad_w = pixels.shape[0] % 2, pixels.shape[1] % 2
        pixels = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        self._writer.append_data(pixels)
        self.count += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._atomic is not None
        try:
            self._writer.close()
            if kind is None and self.count == 0:
                raise ValueError("a video needs at least one frame")
            if kind is None and not self._temporary.is_file():
                raise OSError(f"ffmpeg wrote no {self.path.name} (its messages are above)")
        except BaseException as failure:
            self._atomic.__exit__(type(failure), failure, failure.__traceback__)
            raise
        self._atomic.__exit__(kind, error, traceback)


def write_video(
    frames: np.ndarray, path: str | os.PathLike, fps: float = 24.0, upscale: int = 1
) -> Path:
    """Encode (T, H, W, 3) float frames in [0, 1] as an H.264 mp4, atomically."""
    with VideoWriter(path, fps=fps, upscale=upscale) as writer:
        for frame in frames:
            writer.append(frame)
    return Path(path)
