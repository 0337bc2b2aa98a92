"""Reading frames from disk or bytes into float tensors, with errors that name the file.

Decoding follows the reference pipeline: PIL decodes, 8-bit values are divided by 255 in float32,
an alpha channel is dropped (not composited), grey images are repeated to RGB.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = ["decode_image", "image_to_tensor", "read_image", "read_image_size"]


def _open_error(source: str, error: Exception) -> ValueError:
    return ValueError(
        f"cannot decode image {source}: {error}. The file is corrupt, truncated or not an "
        "image; re-extract or re-download it, or drop the frame from the scene"
    )


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"image file {path} does not exist; check the dataset root and that the scene was "
            "extracted completely"
        )


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file, reading only its header."""
    path = Path(path)
    _check_exists(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as error:
        raise _open_error(str(path), error) from error
    return int(height), int(width)


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
            return image_to_tensor(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise _open_error(source, error) from error


def read_image(path: str | Path) -> Tensor:
    """Read an image file as a (3, H, W) float32 tensor in [0, 1]."""
    path = Path(path)
    _check_exists(path)
    return _decode(path, str(path))


def decode_image(data: bytes, name: str = "<bytes>") -> Tensor:
    """Decode encoded image bytes (PNG, JPEG, ...) as a (3, H, W) float32 tensor in [0, 1]."""
    return _decode(io.BytesIO(data), name)
