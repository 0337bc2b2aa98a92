"""Comparison grids with a label on every row: what the demo, eval and benchmarks write.

A grid is rows of images (sources, ground truth, renders, samples, ...); each row gets its name
in a label column on the left, so a grid read on its own says what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from lagernvs.io import write_image

__all__ = ["labelled_grid", "save_labelled_grid"]

PADDING = 2
FONT_SIZE = 11
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)


def _tiles(rows: Sequence[Tensor], columns: int) -> Tensor:
    """(R * columns, 3, H, W) float tiles in [0, 1]; short rows are padded with white."""
    padded = []
    for row in rows:
        row = row.detach().float().cpu().clamp(0, 1)
        padded.append(torch.cat([row, row.new_ones(columns - row.shape[0], *row.shape[1:])]))
    return torch.cat(padded)


def labelled_grid(rows: Sequence[Tensor], labels: Sequence[str]) -> np.ndarray:
    """(H, W, 3) uint8 grid of ``rows`` ((N_i, 3, h, w) images in [0, 1], one size), each row
    preceded by its label."""
    from torchvision.utils import make_grid

    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} grid rows but {len(labels)} labels; give one label per row")
    columns = max(row.shape[0] for row in rows)
    grid = make_grid(_tiles(rows, columns), nrow=columns, padding=PADDING, pad_value=1.0)
    pixels = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    font = ImageFont.load_default(size=FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = int(max(measure.textlength(label, font=font) for label in labels)) + 4 * PADDING
    canvas = Image.new("RGB", (label_width + pixels.shape[1], pixels.shape[0]), _BACKGROUND)
    canvas.paste(Image.fromarray(pixels), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = rows[0].shape[-2] + PADDING
    for index, label in enumerate(labels):
        middle = PADDING + index * row_height + row_height // 2
        draw.text((2 * PADDING, middle), label, fill=_TEXT, font=font, anchor="lm")
    return np.asarray(canvas)


def save_labelled_grid(path: str | Path, rows: Sequence[Tensor], labels: Sequence[str]) -> None:
    """Write :func:`labelled_grid` as a PNG, atomically."""
    write_image(labelled_grid(rows, labels), Path(path))
