"""Comparison grids carry a label on every row."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lagernvs.grids import PADDING, labelled_grid, save_labelled_grid


def test_every_row_is_labelled_and_the_images_are_kept(tmp_path) -> None:
    rows = [torch.zeros(2, 3, 16, 16), torch.ones(3, 3, 16, 16) * 0.5]
    grid = labelled_grid(rows, ["sources", "a much longer label"])
    row_height = 16 + PADDING
    label_width = grid.shape[1] - (3 * row_height + PADDING)
    assert grid.shape[0] == 2 * row_height + PADDING and label_width > 0
    for index in range(2):  # dark text pixels in each row's label cell
        cell = grid[PADDING + index * row_height : (index + 1) * row_height, :label_width]
        assert (cell < 128).any()
    first = grid[PADDING : PADDING + 16, label_width + PADDING : label_width + PADDING + 16]
    assert (first == 0).all()  # the first image, black
    padded = grid[-16 - PADDING : -PADDING, -16 - PADDING : -PADDING]
    assert (padded == 128).all()  # the second row is full: 3 columns of grey
    assert (grid[PADDING : PADDING + 16, -16 - PADDING : -PADDING] == 255).all()  # short row
    save_labelled_grid(tmp_path / "grid.png", rows, ["sources", "a much longer label"])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grid.png")), grid)


def test_one_label_per_row() -> None:
    with pytest.raises(ValueError, match="2 grid rows but 1 labels"):
        labelled_grid([torch.zeros(1, 3, 8, 8)] * 2, ["only one"])
