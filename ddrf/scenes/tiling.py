"""Windows of the output (PAN) grid, feathered weights and the row-streaming blender.

Windows are `tile` pixels on a side and step by `tile - 2 * halo`, so neighbours overlap by 2 * halo. Each window's
output is weighted zero over its outer 3/4 halo pixels (where the network saw the window border instead of context)
and by a raised cosine from there to 5/4 halo inside it; in every overlap the two ramps are mirror images and sum to
exactly 1 (sin^2 + cos^2), so the blend is a cross-fade over the middle halo / 2 pixels of the overlap, where both
windows are at least 3/4 halo from their edges.

The windows cover the scene padded by `halo` on every side (the scene reader fills outside pixels by reflection and
marks them invalid): the scene border gets the same context margin as any interior window edge, and what a scene
pixel sees does not depend on where the tile boundaries fall.

Window starts are multiples of `align` = window_alignment(ratio, network size multiple): MS windows then fall on
whole MS pixels, the network's stride-2 phases are the same in every window, and two runs with different tile sizes see
the same content at the same phase. The last window is clamped to end `halo` past the (aligned) scene edge. `tile` is
the largest window: each axis takes the fewest windows of that side that cover it, shrunk to the smallest aligned
side that still does, so that no window is spent mostly on pixels its neighbour already computed.

A window here is a `TileBox(row, col, height, width)` on the PAN grid, in that order; rasterio's
`Window(col_off, row_off, width, height)` is used only where rasterio reads or writes. Windows are laid out in row
strips (`TileGrid.row_strips`): every window of a strip starts on the same row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np

from ddrf import model_dir
from ddrf.card import unweighted_border


def window_alignment(ratio: int, multiple: int) -> int:
    """What every window start and side must be a multiple of: whole MS pixels and whole network strides."""
    return math.lcm(int(ratio), int(multiple))


DEFAULT_HALO = 32  # PAN pixels, for classical methods; a model's is its card's `halo`
CHUNK_COLUMNS = 4096  # PAN columns blended and written at a time: memory stays flat at any scene width (8 x 512 blocks)


def round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def leaves_no_room(tile: int, halo: int, align: int) -> bool:
    """Whether a window of `tile` keeps less than one aligned step inside `halo` on each side (both rounded up to
    `align`, as the windows are): ddrf-run refuses such a tile, and ddrf-profile with it."""
    return round_up(tile, align) - 2 * round_up(halo, align) < max(align, 1)


def least_tile(halo: int, align: int) -> int:
    """The smallest aligned window side worth advising with this halo: four halos, so that an inner window keeps half
    of its side (a quarter of its pixels) and the model computes at most about 4x the scene's pixels. Below it the
    cost climbs as (tile / (tile - 2 halo))^2: the 200 px windows that a halo of 96 leaves room for keep 8 x 8 px
    each, 625x the work. (The default window is at least seven halos: `ddrf.card.default_window`.)"""
    return max(round_up(4 * halo, align), align)


def axis_starts(length: int, tile: int, halo: int, align: int) -> tuple[int, list[int]]:
    """(window length, window starts) along one axis of `length` pixels, padded by `halo` on both sides."""
    span = round_up(length, align) + 2 * halo
    tile = min(tile, span)
    stride = tile - 2 * halo
    if tile < span and stride < align:
        # met by a scene, not before the run, where the alignment is the scene's ratio (a classical method's)
        raise ValueError(f"tile {tile} leaves no room inside a halo of {halo} on each side (both in multiples of "
                         f"{align}): use a tile of {least_tile(halo, align)} or more, or a smaller halo")
    count = 1 + -(-(span - tile) // stride)
    # The fewest windows of at most `tile` that cover the span, shrunk to the smallest aligned side that still does:
    # otherwise the last one, clamped to the edge, recomputes most of its neighbour. The output does not depend on it.
    tile = round_up(-(-(span + (count - 1) * 2 * halo) // count), align)
    stride = tile - 2 * halo
    return tile, [k * stride - halo for k in range(count - 1)] + [span - tile - halo]


def axis_weights(n: int, halo: int, taper_lo: bool, taper_hi: bool) -> np.ndarray:
    """Feather profile of one window axis: zero over the outer 3/4 halo pixels of a tapered side (exactly
    `ddrf.card.unweighted_border(halo)` of them, which a model may leave uncomputed), then a raised cosine up to 1
    at 5/4 halo."""
    weights = np.ones(n, dtype=np.float64)
    if halo <= 0:
        return weights
    ramp = np.sin(0.5 * np.pi * np.clip((np.arange(n) + 0.5 - 0.75 * halo) / (0.5 * halo), 0.0, 1.0)) ** 2
    if taper_lo:
        weights *= ramp
    if taper_hi:
        weights *= ramp[::-1]
    return weights


@dataclass(frozen=True)
class TileBox:
    """A window of the PAN grid: top row, left column, height, width (pixels; may reach past the scene edge)."""

    row: int
    col: int
    height: int
    width: int


# Where a model with scene statistics (ModelCard.scene_statistics) takes them: a function of the scene alone, never of
# the tile, so that every tile size and batch gets the same statistics.
WHOLE_CONTEXT = 256  # a scene up to this many PAN pixels on both sides is its own single context window
CONTEXT_SIDE = 128  # otherwise: windows of this side ...
CONTEXT_WINDOWS = 4  # ... at most this many, spread evenly over the scene
# what the scene graphs' engine profiles allow (ddrf.model_dir), with room for alignment
assert WHOLE_CONTEXT <= model_dir.CONTEXT_SIDE and CONTEXT_WINDOWS <= model_dir.CONTEXT_BATCH
assert max(WHOLE_CONTEXT ** 2, CONTEXT_WINDOWS * CONTEXT_SIDE ** 2) <= model_dir.CONTEXT_PIXELS


def context_windows(height: int, width: int, align: int) -> list[TileBox]:
    """Same-sized, aligned windows of the scene over which a scene-statistics model records its statistics."""
    h, w = round_up(height, align), round_up(width, align)
    if h <= WHOLE_CONTEXT and w <= WHOLE_CONTEXT:
        return [TileBox(0, 0, h, w)]
    side_r, side_c = min(round_up(CONTEXT_SIDE, align), h), min(round_up(CONTEXT_SIDE, align), w)
    n_rows = min(CONTEXT_WINDOWS, max(1, round(math.sqrt(CONTEXT_WINDOWS * h / w))), -(-h // side_r))
    n_cols = min(CONTEXT_WINDOWS // n_rows, -(-w // side_c))

    def starts(n: int, length: int, side: int) -> list[int]:  # window centres at (k + 1/2) / n of the free length
        return [int((length - side) * (2 * k + 1) / (2 * n)) // align * align for k in range(n)]

    return [TileBox(r, c, side_r, side_c) for r in starts(n_rows, h, side_r) for c in starts(n_cols, w, side_c)]


# Where a classical method fits its image-wide quantities (ddrf.baselines.FITS): the whole scene when it is at most
# this many PAN pixels a side, else its central window of this side; so every tiling gets the same coefficients. Not
# the run's windows pooled: their overlapping halos, counted twice, would still depend on the tile, and every window
# would have to be read before the first is fused.
FIT_SIDE = 1024


def fit_window(height: int, width: int, align: int) -> TileBox:
    """The aligned window of the scene (read like any other: past its edge by reflection) on which a classical method
    fits its coefficients: the whole scene, or its central FIT_SIDE x FIT_SIDE px."""

    def axis(length: int) -> tuple[int, int]:  # (start, side)
        side = min(round_up(length, align), round_up(FIT_SIDE, align))
        return max(0, (length - side) // 2) // align * align, side

    (row, rows), (col, cols) = axis(height), axis(width)
    return TileBox(row, col, rows, cols)

@dataclass(frozen=True)
class TileGrid:
    """The windows covering a height x width output grid."""

    height: int
    width: int
    tile_rows: int
    tile_cols: int
    halo: int
    align: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @classmethod
    def plan(cls, height: int, width: int, tile: int, halo: int, align: int) -> "TileGrid":
        """Round tile up and halo up to what `align` allows, then lay out the windows."""
        if height < 1 or width < 1:
            raise ValueError(f"empty output grid {height}x{width}")
        if tile < 1 or halo < 0:
            raise ValueError(f"tile must be >= 1 and halo >= 0, got {tile} and {halo}")
        halo = round_up(halo, align)  # the first window starts at -halo, which must stay aligned
        tile = round_up(tile, align)
        tile_rows, rows = axis_starts(height, tile, halo, align)
        tile_cols, cols = axis_starts(width, tile, halo, align)
        return cls(height, width, tile_rows, tile_cols, halo, align, tuple(rows), tuple(cols))

    @property
    def count(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def work(self, chunk: int = CHUNK_COLUMNS) -> int:
        """Pixels the engine computes for the scene: every window fused, halo included."""
        return self.fused_count(chunk) * self.tile_rows * self.tile_cols

    def column_chunks(self, chunk: int = CHUNK_COLUMNS) -> list[tuple[int, int]]:
        """[first, end) output columns of each chunk the scene is blended in, left to right."""
        return [(c, min(c + chunk, self.width)) for c in range(0, self.width, chunk)]

    def fused_count(self, chunk: int = CHUNK_COLUMNS) -> int:
        """Windows fused when the output is made in column chunks (border windows once per chunk)."""
        return len(self.row_starts) * sum(len(self.chunk_cols(c)) for c in self.column_chunks(chunk))

    def batch_used(self, batch: int, chunk: int = CHUNK_COLUMNS) -> int:
        """The most windows one engine call gets: a batch never spans two row strips (`read_batches`), so a batch
        asked above a strip's windows is that many."""
        return min(batch, max(len(self.chunk_cols(c)) for c in self.column_chunks(chunk)))

    def calls(self, batch: int, chunk: int = CHUNK_COLUMNS) -> int:
        """Engine calls of at most `batch` windows that fuse the scene: each row strip of each column chunk on its own
        (`read_batches`), its last call taking what is left."""
        return len(self.row_starts) * sum(-(-len(self.chunk_cols(c)) // batch) for c in self.column_chunks(chunk))

    def chunk_cols(self, columns: tuple[int, int] | None = None) -> tuple[int, ...]:
        """Starts of the windows that weigh on output columns [first, end) (all windows when None).

        A window straddling a chunk border is fused once for each chunk: the price of flat memory.
        """
        if columns is None:
            return self.col_starts
        first, end = columns
        return tuple(c for c in self.col_starts if c < end and c + self.tile_cols > first)

    def row_strip(self, row: int, columns: tuple[int, int] | None = None) -> list[TileBox]:
        return [TileBox(row, col, self.tile_rows, self.tile_cols) for col in self.chunk_cols(columns)]

    def row_strips(self, columns: tuple[int, int] | None = None) -> Iterator[tuple[int, list[TileBox]]]:
        """(rows final once this strip is blended, windows of the strip), top to bottom."""
        for k, row in enumerate(self.row_starts):
            final = self.row_starts[k + 1] if k + 1 < len(self.row_starts) else row + self.tile_rows
            yield final, self.row_strip(row, columns)

    @property
    def unweighted_border(self) -> int:
        """Outer pixels of every window side that the blend gives no weight."""
        return unweighted_border(self.halo)

    @cached_property
    def weights(self) -> np.ndarray:
        """(tile_rows, tile_cols) blending weights, the same for every window (every side tapers: the scene is
        padded too); made once per grid, not per window."""
        rows = axis_weights(self.tile_rows, self.halo, True, True)
        cols = axis_weights(self.tile_cols, self.halo, True, True)
        return (rows[:, None] * cols[None, :]).astype(np.float32)


class RowBlender:
    """Accumulates weighted window outputs and releases finished rows of one column chunk, top to bottom.

    Holds one row strip of windows (tile rows by the chunk's windows' width), whatever the scene size: every window
    of a strip starts on the buffer's first row, because rows above the strip's start were released before it.
    Sums are float32, half the memory of float64: relative error ~1e-7, under 0.01 DN even at 16 bits.
    """

    def __init__(self, grid: TileGrid, channels: int, columns: tuple[int, int] | None = None) -> None:
        self.grid, self.channels = grid, channels
        self.columns = columns or (0, grid.width)
        starts = grid.chunk_cols(self.columns)
        self.left = starts[0]  # scene column of buffer column 0
        width = starts[-1] + grid.tile_cols - self.left
        self.values = np.zeros((grid.tile_rows, width, channels), dtype=np.float32)
        self.wsum = np.zeros((grid.tile_rows, width), dtype=np.float32)
        self.valid = np.zeros((grid.tile_rows, width), dtype=bool)
        self.top = grid.row_starts[0]  # scene row of buffer row 0

    def nbytes(self) -> int:
        return self.values.nbytes + self.wsum.nbytes + self.valid.nbytes

    def add(self, window: TileBox, values: np.ndarray, valid: np.ndarray) -> None:
        weights = self.grid.weights  # every window is tile_rows x tile_cols
        r0, c0 = window.row - self.top, window.col - self.left
        rows, cols = slice(r0, r0 + window.height), slice(c0, c0 + window.width)
        self.values[rows, cols] += values * weights[..., None]
        self.wsum[rows, cols] += weights
        self.valid[rows, cols] = valid

    def release(self, until: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(first scene row, blended scene rows in [top, until) cropped to the scene and chunk, their valid mask)."""
        n = until - self.top
        if n <= 0:
            raise ValueError(f"rows must be released in order (top {self.top}, asked up to {until})")
        first, last = max(self.top, 0), min(until, self.grid.height)
        rows = slice(first - self.top, max(last - self.top, first - self.top))
        cols = slice(self.columns[0] - self.left, self.columns[1] - self.left)
        wsum = np.maximum(self.wsum[rows, cols], 1e-12)[..., None]
        values, valid = self.values[rows, cols] / wsum, self.valid[rows, cols].copy()
        for buf in (self.values, self.wsum, self.valid):
            shift_up(buf, n)
        self.top = until
        return first, values, valid


def shift_up(buf: np.ndarray, n: int) -> None:
    """Move rows n.. of `buf` to the top and zero the last n rows, in place (no copy of the whole buffer)."""
    for top in range(0, len(buf) - n, n):  # blocks of n rows: each source block lies below its destination
        stop = min(top + n, len(buf) - n)
        buf[top:stop] = buf[top + n:stop + n]
    buf[max(len(buf) - n, 0):] = 0


def stage_windows(length: int, tile: int, halo: int) -> list[tuple[slice, slice, slice]]:
    """A staged model's windows along one axis of a map of `length` pixels (ddrf.model.staged): per core of `tile`
    pixels, (window, core within the window, core within the map). Windows reach `halo` past their core but are cut
    at the map's ends, never padded, as one window over the whole map is: a window's zero-padded edge is then either
    the map's own or at least a halo from its core."""
    out = []
    for start in range(0, length, tile):
        end = min(start + tile, length)
        low, high = max(0, start - halo), min(length, end + halo)
        out.append((slice(low, high), slice(start - low, end - low), slice(start, end)))
    return out
