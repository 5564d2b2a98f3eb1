"""The column-chunked blender: its memory does not grow with the scene width, and chunking changes no output value."""
from __future__ import annotations

import numpy as np

from ddrf.scenes.tiling import RowBlender, TileGrid


def blend(grid: TileGrid, chunk: int, channels: int = 3) -> np.ndarray:
    """Blend a deterministic fake window output (a function of scene coordinates plus a per-window offset)."""
    out = np.zeros((grid.height, grid.width, channels))
    for columns in grid.column_chunks(chunk):
        blender = RowBlender(grid, channels, columns)
        for final, windows in grid.row_strips(columns):
            for w in windows:
                rows, cols = np.mgrid[w.row:w.row + w.height, w.col:w.col + w.width]
                values = np.stack([np.sin(rows * 0.01 * (c + 1)) + cols * 0.001 + (w.row + w.col) * 1e-4
                                   for c in range(channels)], axis=-1)
                blender.add(w, values, np.ones((w.height, w.width), bool))
            first, rows_out, _ = blender.release(final)
            out[first:first + len(rows_out), columns[0]:columns[1]] = rows_out
    return out


def test_blender_memory_does_not_grow_with_width() -> None:
    sizes = {}
    for width in (2048, 16384, 65536):
        grid = TileGrid.plan(512, width, 256, 32, 8)
        sizes[width] = max(RowBlender(grid, 4, c).nbytes() for c in grid.column_chunks(4096))
    assert sizes[2048] <= sizes[16384] == sizes[65536] < 64 * 2**20  # a chunk's worth, whatever the width


def test_chunked_blend_equals_whole_width_blend() -> None:
    grid = TileGrid.plan(200, 700, 64, 8, 4)
    whole = blend(grid, chunk=grid.width)
    chunked = blend(grid, chunk=128)
    assert len(grid.column_chunks(128)) == 6 and grid.fused_count(128) > grid.count
    np.testing.assert_array_equal(chunked, whole)
