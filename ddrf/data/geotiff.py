"""A PAN/MS pair from GeoTIFFs on nested grids, aligned through the geotransforms (never by array index).

The alignment is `ddrf.geometry.PairGrid`, the one `ddrf-run` uses: the PAN grid cropped to the MS footprint and
MS sample i placed on PAN pixel ratio*i + ratio//2 (the interp23 convention), by an index shift where the grids
allow it (Landsat) and by cubic resampling of the fractional part otherwise (nested Maxar/Pleiades/GaoFen grids
are half a PAN pixel off). Nodata (the file's tag; 0 for Landsat; what the file's own mask or alpha band marks) is
filled with the nearest valid value, as in ddrf-run. So a model trained on these pairs sees exactly the arrays
`ddrf-run` gives it for the same scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rasterio
from affine import Affine

from ddrf.data.pair import Pair
from ddrf.geometry import (PairGrid, bands_by_file, coded_values, crs_names, default_nodata, honoured_mask,
                           map_grid_problem, mask_facts, nothing_valid, same_crs, same_grid, single_image_band)
from ddrf.rasters import TileListError, open_raster


class _Header(NamedTuple):
    crs: Any
    transform: Affine
    height: int
    width: int
    bands: int  # how many (NamedTuple keeps `count` for tuple.count)
    dtype: np.dtype
    alpha_bands: frozenset[int]  # bands whose colour interpretation is alpha


def _grid(path: Path) -> _Header:
    if not path.is_file():
        raise ValueError(f"{path}: file missing")
    try:
        with open_raster(path) as src:  # a Maxar .TIL as its tiles' mosaic, as ddrf-run opens it
            if problem := coded_values(src) or map_grid_problem(path, src):  # refused as ddrf-run refuses it
                raise ValueError(f"{path}: {problem}")
            return _Header(src.crs, src.transform, src.height, src.width, src.count, np.dtype(src.dtypes[0]),
                           mask_facts(src)[1])
    except (rasterio.errors.RasterioIOError, TileListError) as exc:
        raise ValueError(f"{path}: not a readable raster ({exc})") from exc


def _band_files(paths: Sequence[Path]) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, band) per MS band in the order given, and names from the file stems."""
    bands: list[tuple[Path, int]] = []
    names: list[str] = []
    for path in paths:
        count = _grid(path).bands
        bands.extend((path, b) for b in range(1, count + 1))
        names.extend([path.stem] if count == 1 else [f"{path.stem}_b{i + 1}" for i in range(count)])
    return bands, names


def _no_data(path: Path, bands: list[int], sensor: str) -> tuple[dict[tuple[Path, int], float | None], bool]:
    """One file's nodata value per band read, and whether its own mask (internal, external or alpha) marks no data
    in those bands, as ddrf-run reads them (one open per file)."""
    with open_raster(path) as src:
        values = {(path, b): default_nodata(src.nodatavals[b - 1], sensor) for b in bands}
        return values, honoured_mask(*mask_facts(src), bands)


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
    ms_list = [Path(p) for p in ms_paths]
    if not ms_list:
        raise ValueError(f"{pan_path}: no MS files given")
    ms_bands, file_names = _band_files(ms_list)
    return read_band_pair(pan_path, ms_bands, sensor, bits, band_names or file_names, name, acquisition)


def read_band_pair(
    pan_path: str | Path,
    ms_bands: Sequence[tuple[Path, int]],
    sensor: str,
    bits: int | None,
    band_names: Sequence[str],
    name: str | None = None,
    acquisition: str | None = None,
) -> Pair:
    """A Pair from the PAN and MS bands given as (file, 1-based band) in order: what scene discovery finds."""
    pan_path = Path(pan_path)
    ms_list = list(dict.fromkeys(Path(f) for f, _ in ms_bands))
    if not ms_list:
        raise ValueError(f"{pan_path}: no MS files given")
    pan_header = _grid(pan_path)
    pan_crs, pan_t, pan_h, pan_w, pan_count, pan_dtype, pan_alpha = pan_header
    if not single_image_band(pan_count, pan_alpha):  # grey + alpha is read as ddrf-run reads it
        raise ValueError(f"{pan_path}: PAN has {pan_count} bands, expected 1")
    ms_grid = _grid(ms_list[0])
    for path in ms_list:
        crs, transform, h, w = _grid(path)[:4]
        if not same_crs(pan_crs, crs, pan_t, (pan_h, pan_w)):  # ddrf-run's rule and words
            names = crs_names(crs, pan_crs)
            raise ValueError(f"{path}: CRS {names[0]} differs from PAN CRS {names[1]}")
        if (h, w) != ms_grid[2:4] or not same_grid(transform, ms_grid.transform):  # ddrf-run's tolerance
            raise ValueError(f"{path}: MS grid differs from {ms_list[0]}")
    ms_t, ms_h, ms_w = ms_grid[1], ms_grid[2], ms_grid[3]
    try:
        grid = PairGrid.from_transforms(pan_t, (pan_h, pan_w), ms_t, (ms_h, ms_w))
    except ValueError as exc:
        raise ValueError(f"{ms_list[0]}: {exc} (PAN {pan_path.name})") from exc
    ratio = grid.ratio
    height, width = ratio * (grid.height // ratio), ratio * (grid.width // ratio)
    if height < ratio or width < ratio:
        raise ValueError(f"{pan_path}: PAN and MS {ms_list[0]} do not overlap")
    ms_read = [(Path(f), b) for f, b in ms_bands]
    nodata: dict[tuple[Path, int], float | None] = {}
    masked: list[Path] = []
    for path, bands in bands_by_file(pan_path, ms_read).items():
        values, own_mask = _no_data(path, bands, sensor)
        nodata.update(values)
        if own_mask:
            masked.append(path)
    pan, ms, valid = grid.read_window(pan_path, ms_read, nodata, 0, 0, height, width, masked)
    if not valid.any():  # filled, it would be all zeros: scored or trained on as an image
        raise ValueError(nothing_valid(pan_path, ms_read, nodata, masked))
    stem = name or pan_path.stem
    return Pair(
        name=stem,
        acquisition=acquisition or stem,
        pan=pan,
        ms=ms,
        ratio=ratio,
        sensor=sensor,
        bits=bits if bits is not None else _default_bits(pan_path, pan_dtype),
        band_names=tuple(band_names),
        crs=pan_crs,
        pan_transform=grid.transform,
        ms_transform=grid.ms_transform,
        source=str(pan_path),
    )
