"""A PAN/MS pair from GeoTIFFs on nested grids, aligned through the geotransforms (never by array index).

Alignment rule, per axis: let o be the MS grid origin in PAN pixel coordinates (from the inverse PAN transform).
We drop the fewest leading MS pixels m0 and PAN pixels k0 such that k0 = round_half_down(o + ratio * m0) >= 0, so MS
pixel m0 + j is paired with PAN pixels [k0 + ratio*j, k0 + ratio*j + ratio), and keep as many MS pixels as both
rasters cover. The residual r = o + ratio*m0 - k0 lies in (-0.5, 0.5] PAN pixels and is returned as Pair.pan_offset
(row, col): the MS footprint starts r PAN pixels after the paired PAN block.

Landsat (Collection 1/2 L1): the PAN origin is half a PAN pixel up-left of the MS origin (pixel-centre convention:
MS pixel j's centre is PAN pixel 2j+1's centre), so o = 0.5 and no exact nesting exists. Round-half-down keeps
k0 = 0 (the whole PAN), giving r = +0.5: every PAN block sits half a PAN pixel (7.5 m) up-left of its MS pixel.
A PAN 2N-1 pixels wide for N MS pixels then yields N-1 MS columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from ddrf.data.pair import Pair

RATIO_TOLERANCE = 1e-6


def _grid(path: Path) -> tuple[Any, Affine, int, int, int, np.dtype]:
    if not path.is_file():
        raise ValueError(f"{path}: file missing")
    try:
        with rasterio.open(path) as src:
            return src.crs, src.transform, src.height, src.width, src.count, np.dtype(src.dtypes[0])
    except rasterio.errors.RasterioIOError as exc:
        raise ValueError(f"{path}: not a readable raster ({exc})") from exc


def _check_north_up(path: Path, transform: Affine) -> None:
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise ValueError(f"{path}: geotransform {tuple(transform)[:6]} is rotated or not north-up")


def derive_ratio(pan_path: Path, pan_t: Affine, ms_path: Path, ms_t: Affine) -> int:
    """Integer PAN/MS resolution ratio from the pixel sizes; both axes must agree."""
    ratios = (ms_t.a / pan_t.a, ms_t.e / pan_t.e)
    ratio = round(ratios[0])
    if any(abs(r - ratio) > RATIO_TOLERANCE for r in ratios) or ratio < 1:
        raise ValueError(
            f"{ms_path}: pixel size {ms_t.a, -ms_t.e} over {pan_path} pixel size {pan_t.a, -pan_t.e} "
            f"gives ratio {ratios}, not one integer"
        )
    return ratio


def nest_axis(origin: float, ratio: int, pan_len: int, ms_len: int) -> tuple[int, int, int, float]:
    """(k0, m0, n, residual) for one axis; origin is the MS grid origin in PAN pixels."""
    origin = round(origin, 6)  # keep exact half-pixel offsets exact despite float noise
    m0 = 0 if origin > -0.5 else math.floor((-0.5 - origin) / ratio) + 1
    k0 = math.ceil(origin + ratio * m0 - 0.5)
    n = min((pan_len - k0) // ratio, ms_len - m0)
    return k0, m0, n, origin + ratio * m0 - k0


def _read_ms(paths: Sequence[Path], window: Window) -> tuple[np.ndarray, list[str]]:
    bands, names = [], []
    for path in paths:
        with rasterio.open(path) as src:
            data = src.read(window=window).astype(np.float64)
        bands.extend(data)
        names.extend([path.stem] if len(data) == 1 else [f"{path.stem}_b{i + 1}" for i in range(len(data))])
    return np.stack(bands, axis=-1), names


def _default_bits(path: Path, dtype: np.dtype) -> int:
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{path}: {dtype} data has no implied bit depth; pass bits=")
    return dtype.itemsize * 8


def read_geotiff_pair(
    pan_path: str | Path,
    ms_paths: Sequence[str | Path],
    sensor: str = "generic",
    bits: int | None = None,
    band_names: Sequence[str] | None = None,
    name: str | None = None,
    acquisition: str | None = None,
) -> Pair:
    """Read a PAN GeoTIFF and MS GeoTIFF(s) (bands stacked in the order given) as a nested-grid Pair.

    bits defaults to the PAN's integer dtype width (pass 12 for Landsat-8/9 L1, 11 for Maxar).
    """
    pan_path, ms_list = Path(pan_path), [Path(p) for p in ms_paths]
    if not ms_list:
        raise ValueError(f"{pan_path}: no MS files given")
    pan_crs, pan_t, pan_h, pan_w, pan_count, pan_dtype = _grid(pan_path)
    if pan_count != 1:
        raise ValueError(f"{pan_path}: PAN has {pan_count} bands, expected 1")
    if pan_crs is None:
        raise ValueError(f"{pan_path}: no CRS")
    _check_north_up(pan_path, pan_t)
    ms_grid = _grid(ms_list[0])
    for path in ms_list:
        crs, transform, h, w = _grid(path)[:4]
        if crs != pan_crs:
            raise ValueError(f"{path}: CRS {crs} differs from PAN CRS {pan_crs}")
        if (h, w) != ms_grid[2:4] or not transform.almost_equals(ms_grid[1]):
            raise ValueError(f"{path}: MS grid differs from {ms_list[0]}")
    ms_t, ms_h, ms_w = ms_grid[1], ms_grid[2], ms_grid[3]
    _check_north_up(ms_list[0], ms_t)
    ratio = derive_ratio(pan_path, pan_t, ms_list[0], ms_t)
    col, row = ~pan_t @ (ms_t.c, ms_t.f)
    k_row, m_row, n_row, r_row = nest_axis(row, ratio, pan_h, ms_h)
    k_col, m_col, n_col, r_col = nest_axis(col, ratio, pan_w, ms_w)
    if n_row < 1 or n_col < 1:
        raise ValueError(f"{pan_path}: PAN and MS {ms_list[0]} do not overlap")
    pan_win = Window(k_col, k_row, ratio * n_col, ratio * n_row)
    ms_win = Window(m_col, m_row, n_col, n_row)
    with rasterio.open(pan_path) as src:
        pan = src.read(1, window=pan_win).astype(np.float64)
    ms, file_names = _read_ms(ms_list, ms_win)
    stem = name or pan_path.stem
    return Pair(
        name=stem,
        acquisition=acquisition or stem,
        pan=pan,
        ms=ms,
        ratio=ratio,
        sensor=sensor,
        bits=bits if bits is not None else _default_bits(pan_path, pan_dtype),
        band_names=tuple(band_names) if band_names is not None else tuple(file_names),
        crs=pan_crs,
        pan_transform=pan_t @ Affine.translation(k_col, k_row),
        ms_transform=ms_t @ Affine.translation(m_col, m_row),
        pan_offset=(r_row, r_col),
    )
