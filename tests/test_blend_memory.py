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


def test_release_shifts_the_buffer_in_place() -> None:
    """Releasing rows allocates only the rows it returns, never a copy of the whole strip buffer (which, with the
    writer's float temporaries, is what pushed a wide scene's peak over 1 GiB)."""
    import tracemalloc

    grid = TileGrid.plan(1024, 2048, 576, 96, 8)
    blender = RowBlender(grid, 4, (0, grid.width))
    final, windows = next(grid.row_strips())
    for w in windows:
        blender.add(w, np.ones((w.height, w.width, 4), np.float32), np.ones((w.height, w.width), bool))
    released = final - grid.row_starts[0]
    below = blender.wsum[released:].copy()
    tracemalloc.start()
    try:
        first, rows, _ = blender.release(final)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first == 0 and len(rows) == final
    assert peak < 1.5 * rows.nbytes + 2 * 2**20 < blender.nbytes()
    # what stays is the part of the strip below the released rows, now at the buffer's top, zeros under it
    assert below.max() > 0
    np.testing.assert_array_equal(blender.wsum[:len(below)], below)
    np.testing.assert_array_equal(blender.wsum[len(below):], 0)


def test_shift_up_moves_rows_and_zeroes_the_rest() -> None:
    from ddrf.scenes.tiling import shift_up

    for n in (1, 3, 7, 10, 12):
        buf = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
        want = np.zeros_like(buf)
        want[:max(10 - n, 0)] = buf[n:]
        shift_up(buf, n)
        np.testing.assert_array_equal(buf, want)


def test_many_band_scenes_get_narrower_chunks_and_classical_windows() -> None:
    """A 200-band cube at the defaults (4096-column chunks, 1024 windows for a classical method) took 3.9 GB on a
    600 x 600 PAN: its blend rows and float64 intermediates grow with the bands. Beyond eight bands the chunk and a
    classical method's default window shrink so that chunk x window x bands stays near eight bands' size; a given
    --tile and a model's window are kept."""
    from types import SimpleNamespace

    from ddrf.scenes.engines import BaselineEngine
    from ddrf.scenes.streaming import RunSettings, for_band_count, resolved_window

    settings, gsa = RunSettings(tile=None, batch=1), BaselineEngine("GSA")
    assert for_band_count(settings, gsa, 8) == settings  # WorldView's eight bands: the defaults
    cube = for_band_count(settings, gsa, 200)
    window, halo = resolved_window(settings, gsa)
    before = settings.chunk * window * 200
    after = cube.chunk * resolved_window(cube, gsa)[0] * 200
    assert cube.chunk == 512 and cube.tile is not None and 4 * halo <= cube.tile < window
    assert after <= before / 25 and after <= settings.chunk * window * 8  # near eight bands' blend rows
    assert for_band_count(RunSettings(tile=300, batch=1), gsa, 200).tile == 300
    model = SimpleNamespace(card=object(), halo=96, default_tile=704)
    assert for_band_count(settings, model, 200).tile is None and for_band_count(settings, model, 200).chunk == 512
