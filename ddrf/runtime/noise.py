"""Counter-based Gaussian noise keyed to pixel coordinates.

The value at (seed, step, band, row, col) depends on nothing else, so overlapping tiles see the same noise and the
output of a tiled run does not depend on the tile size; ddrf-run's rows and columns are those of the CRS's pixel
lattice (`ddrf.geometry.lattice_origin`), so overlapping scenes see the same noise too. splitmix64 hashes the counter; Box-Muller makes it Gaussian.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MAX_COORD = 1 << 25  # rows and columns below 33.5 M pixels; bands below 8192


def _mix64(z: Any) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


def _uniform(counter: np.ndarray, key: Any) -> np.ndarray:
    """Uniform in (0, 1] from the top 53 bits of the hash."""
    bits = _mix64(counter ^ key) >> np.uint64(11)
    return np.asarray((bits.astype(np.float64) + 1.0) * (1.0 / (1 << 53)))


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
    band = np.arange(bands, dtype=np.uint64)[:, None, None] << np.uint64(50)
    counter = band | (rows.astype(np.uint64)[None, :, None] << np.uint64(25)) | cols.astype(np.uint64)[None, None, :]
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) + _GOLDEN * np.uint64(2 * step + 1))
        u1 = _uniform(counter, key)
        u2 = _uniform(counter, _mix64(key + _GOLDEN))
    return np.asarray(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2), dtype=np.float32)
