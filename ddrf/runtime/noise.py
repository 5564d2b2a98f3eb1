"""Counter-based Gaussian noise keyed to pixel coordinates.

The value at (seed, step, band, row, col) depends on nothing else, so overlapping tiles see the same noise and the
output of a tiled run does not depend on the tile size; ddrf-run's rows and columns are those of the CRS's pixel
lattice (`ddrf.geometry.lattice_origin`), so overlapping scenes see the same noise too. splitmix64 hashes the
counter; Box-Muller makes it Gaussian.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# the noise seed is hashed as 64 bits: larger or negative seeds would alias smaller ones (seed and seed + N - 1 of
# N samples stay below 2^64 too)
MAX_SEED = 2**63 - 1
_MAX_COORD = 1 << 25  # rows and columns below 33.5 M pixels; bands below 8192


def _mix64(z: Any) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


def _mix64_in_place(z: np.ndarray, scratch: np.ndarray) -> None:
    """`_mix64` without temporaries (the same bits)."""
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        np.right_shift(z, np.uint64(shift), out=scratch)
        z ^= scratch
        z *= np.uint64(factor)
    np.right_shift(z, np.uint64(31), out=scratch)
    z ^= scratch


def _uniform(counter: np.ndarray, key: Any, z: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Uniform in (0, 1] from the top 53 bits of the hash (z and scratch: uint64 work arrays of counter's shape)."""
    np.bitwise_xor(counter, key, out=z)
    _mix64_in_place(z, scratch)
    z >>= np.uint64(11)
    u = z.astype(np.float64)
    u += 1.0
    u *= 1.0 / (1 << 53)
    return u


_BLOCK_ROWS = 128  # rows hashed at a time: work arrays stay in cache (1.9x faster than the whole window at once)


def scene_noise(seed: int, bands: int, row0: int, col0: int, height: int, width: int, step: int = 0) -> np.ndarray:
    """Standard normal noise (bands, height, width) float32 for the window at (row0, col0) of the PAN grid.

    Negative origins (padding outside the scene) are allowed down to -2**24.
    """
    if height < 0 or width < 0 or bands < 1:
        raise ValueError(f"bad noise window: {bands} bands, {height}x{width}")
    offset = _MAX_COORD // 2
    rows = np.arange(row0, row0 + height, dtype=np.int64) + offset
    cols = np.arange(col0, col0 + width, dtype=np.int64) + offset
    if rows.size and (rows[0] < 0 or rows[-1] >= _MAX_COORD) or cols.size and (cols[0] < 0 or cols[-1] >= _MAX_COORD):
        raise ValueError(f"noise window at ({row0}, {col0}) is outside the supported coordinate range")
    out = np.empty((bands, height, width), dtype=np.float32)
    row_bits, col_bits = rows.astype(np.uint64) << np.uint64(25), cols.astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) + _GOLDEN * np.uint64(2 * step + 1))
        key2 = _mix64(key + _GOLDEN)
        for band in range(bands):
            for first in range(0, height, _BLOCK_ROWS):
                counter = row_bits[first:first + _BLOCK_ROWS, None] | col_bits | (np.uint64(band) << np.uint64(50))
                z, scratch = np.empty_like(counter), np.empty_like(counter)
                radius = _uniform(counter, key, z, scratch)
                angle = _uniform(counter, key2, z, scratch)
                np.log(radius, out=radius)
                radius *= -2.0
                np.sqrt(radius, out=radius)
                angle *= 2.0 * np.pi
                np.cos(angle, out=angle)
                radius *= angle
                out[band, first:first + _BLOCK_ROWS] = radius
    return out
