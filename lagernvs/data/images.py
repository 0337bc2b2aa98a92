"""The one image converter: files, bytes, PIL images, arrays and tensors -> float tensors in [0, 1].

Decoding follows the reference pipeline: PIL decodes, 8-bit values are divided by 255 in float32,
an alpha channel is dropped (not composited), grey images are repeated to RGB. Every reader of
images (the pipeline, the data pipeline, the CLI, the demo) goes through :func:`load_images`, so
an image is read the same way and a bad one is refused with the same one-line message everywhere.

Images are read as they are displayed: an EXIF orientation tag (phone photos) is applied to the
pixels, and :func:`read_image_size` reports the size after it, so sizes from headers and decoded
images always agree. (A capture tool that calibrated the stored pixels of a rotated photo, as
COLMAP does, then disagrees with the displayed size; the scene readers refuse that mismatch.)
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "ImageInput",
    "Images",
    "decode_image",
    "image_to_tensor",
    "load_images",
    "read_image",
    "read_image_size",
    "upright",
]

ImageInput = Image.Image | np.ndarray | Tensor | str | os.PathLike | bytes
"""One image (or, for arrays and tensors, a stack of images) in any supported form."""
Images = ImageInput | Sequence[ImageInput]

RANGE_TOLERANCE = 1e-3
"""Float images may overshoot [0, 1] by this much (resampling ringing); they are clipped later."""
EXIF_ORIENTATION = 0x0112
"""The EXIF tag of the orientation: 1 upright, 2-8 mirrored and/or rotated by 90/180/270."""
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
"""Orientations that swap width and height."""


def _open_error(source: str, error: Exception) -> ValueError:
    return ValueError(
        f"cannot decode image {source}: {error}. The file is corrupt, truncated or not an "
        "image; re-extract or re-download it, or drop the frame from the scene"
    )


def _check_exists(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(
            f"image file {path} is a folder, not an image; give the image files inside it "
            f"(e.g. {path / '*.jpg'})"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"image file {path} does not exist; check the dataset root and that the scene was "
            "extracted completely"
        )


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file as displayed (after its EXIF orientation), reading its header."""
    path = Path(path)
    _check_exists(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if _orientation(image) in TRANSPOSED_ORIENTATIONS:
                width, height = height, width
    except (UnidentifiedImageError, OSError) as error:
        raise _open_error(str(path), error) from error
    return int(height), int(width)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation of ``image`` (1 when it has none)."""
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    return orientation if isinstance(orientation, int) else 1


def upright(image: Image.Image) -> Image.Image:
    """``image`` as displayed: its EXIF orientation applied to the pixels (itself when upright)."""
    if _orientation(image) == 1:
        return image
    return ImageOps.exif_transpose(image)


def image_to_tensor(image: Image.Image) -> Tensor:
    """PIL image -> (3, H, W) float32 in [0, 1] (alpha dropped, grey repeated)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32) / np.float32(65535.0)
        array = np.repeat(array[..., None], 3, axis=-1)
    else:
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        array = np.asarray(image)[..., :3].astype(np.float32) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def _decode(opener: Path | io.BytesIO, source: str) -> Tensor:
    try:
        with Image.open(opener) as image:
            image.load()
            return image_to_tensor(upright(image))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise _open_error(source, error) from error


def read_image(path: str | Path) -> Tensor:
    """Read an image file as a (3, H, W) float32 tensor in [0, 1], upright (EXIF orientation)."""
    path = Path(path)
    _check_exists(path)
    return _decode(path, str(path))


def decode_image(data: bytes, name: str = "<bytes>") -> Tensor:
    """Decode encoded image bytes (PNG, JPEG, ...) as a (3, H, W) float32 tensor in [0, 1],
    upright (EXIF orientation applied)."""
    return _decode(io.BytesIO(data), name)


def _array_tensor(array: np.ndarray, label: str) -> Tensor:
    """(H, W), (H, W, C) or (V, H, W, C) numpy images -> a channels-first tensor."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim not in (3, 4) or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{label}: numpy images must be (H, W), (H, W, C) or (V, H, W, C) with C in 1, 3, "
            f"4, got shape {array.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3)


def _to_float(tensor: Tensor, label: str, allow_uint8: bool) -> Tensor:
    """uint8 / float values -> float32 in [0, 1]; finite and in range (checked on the CPU only,
    so that a GPU tensor never forces a device sync)."""
    if tensor.dtype == torch.uint8 and allow_uint8:
        return tensor.float() / 255.0
    if not tensor.is_floating_point():
        expected = "uint8 or float values" if allow_uint8 else "float values in [0, 1]"
        raise ValueError(
            f"{label} holds {tensor.dtype} values; expected {expected} (decode files with "
            "read_image, or pass paths)"
        )
    tensor = tensor.float()
    if tensor.device.type == "cpu" and tensor.numel():
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{label} contains NaN or infinite values")
        low, high = float(tensor.min()), float(tensor.max())
        if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
            raise ValueError(
                f"{label} has values in [{low:.3g}, {high:.3g}]; float images must be in [0, 1] "
                "(divide 8-bit values by 255)"
            )
    return tensor


def _convert(image: ImageInput, label: str, allow_uint8: bool) -> list[Tensor]:
    """One input -> (3, H, W) float32 tensors: one, or V for a stacked array or tensor."""
    if isinstance(image, bytes):
        return [decode_image(image, name=label)]
    if isinstance(image, (str, os.PathLike)):
        return [read_image(image)]
    if isinstance(image, Image.Image):
        return [image_to_tensor(upright(image))]
    if isinstance(image, np.ndarray):
        tensor = _array_tensor(image, label)
    elif isinstance(image, Tensor):
        tensor = image
        if tensor.dim() not in (3, 4) or tensor.shape[-3] not in (1, 3, 4):
            raise ValueError(
                f"{label}: tensors must be (3, H, W) or (V, 3, H, W), got shape "
                f"{tuple(tensor.shape)}; one scene per call"
            )
    else:
        raise ValueError(
            f"{label} has unsupported type {type(image).__name__}; pass PIL images, numpy arrays "
            "(H, W, 3), tensors (3, H, W) in [0, 1], image file paths or encoded bytes"
        )
    tensor = _to_float(tensor, label, allow_uint8)
    if tensor.shape[-3] == 1:
        tensor = tensor.expand(*tensor.shape[:-3], 3, *tensor.shape[-2:])
    tensor = tensor[..., :3, :, :]
    return list(tensor) if tensor.dim() == 4 else [tensor]


def load_images(images: Images, name: str = "image", allow_uint8: bool = True) -> list[Tensor]:
    """User images -> a list of (3, H, W) float32 tensors in [0, 1] (sizes may differ).

    Args:
        images: one image or a sequence of them: PIL images, numpy arrays (H, W, C) uint8 or
            float in [0, 1] (or a stacked (V, H, W, C)), tensors (3, H, W) (or a stacked
            (V, 3, H, W)), file paths, or encoded bytes (PNG, JPEG, ...). C is 1, 3 or 4 (alpha
            is dropped).
        name: what an error calls one element ("image 3", "frame 3").
        allow_uint8: accept 8-bit arrays and tensors (divided by 255); the data pipeline, whose
            tensors are already decoded, refuses them.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"no {name}s given; pass at least one")
        frames = [
            frame
            for index, image in enumerate(images)
            for frame in _convert(image, f"{name} {index}", allow_uint8)
        ]
    else:
        frames = _convert(images, f"{name} 0", allow_uint8)
    for index, frame in enumerate(frames):
        if frame.shape[-1] == 0 or frame.shape[-2] == 0:
            raise ValueError(f"{name} {index} is empty ({tuple(frame.shape)})")
    return frames
