"""`Scene`: a validated PAN/MS scene read by windows of its output grid, MS aligned to the interp23 convention.

Output grid = the PAN grid, cropped to the PAN pixels whose centres lie on the MS footprint, and cropped by up to
ratio-1 further leading pixels where that removes a fractional MS offset (see `_align_axis`). Its geotransform is the
PAN's, shifted by the crop; fused products are written on it.

interp23 convention (ddrf.sensors): in a window whose first output pixel is (row0, col0), MS sample (i, j) must sit
on output pixel (row0 + ratio*i + ratio//2, col0 + ratio*j + ratio//2), centre on centre. Per axis, with `o` the MS
grid origin in output-pixel units, that sample is MS index row0/ratio + i + shift with
    shift = (ratio//2 + 1/2 - ratio/2 - o) / ratio        (MS pixels).
The integer part of `shift` is an index shift; a fractional part is resampled with a 4-tap separable cubic
convolution (Keys, a = -0.5) -- only for grids that are not nested the Landsat way.
- Landsat (this repository's clips): PAN origin half a PAN pixel up-left of the MS origin: o = 0.5, shift = 0, no
  crop, no resampling (MS pixel j's centre is PAN pixel 2j+1's centre).
- Landsat full products (PAN origin half a PAN pixel down-right of the MS origin, PAN 2N-1 wide): o = -0.5; the first
  PAN row and column are dropped, shift = 1: again an index shift only.
- Nested grids (Maxar, Pleiades, GaoFen; o = 0, ratio 4): shift = 1/8 MS pixel = half a PAN pixel, resampled.

Windows may reach outside the grid: PAN and MS are padded by half-sample reflection (each on its own grid) and
`valid` is False there. Nodata (the file's nodata value; 0 for Landsat, whose collars carry no tag) is False in
`valid` and replaced by the nearest valid value of the window read, so filters do not smear nodata into neighbours.
Memory: every read is a rasterio window around the request.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioIOError
from rasterio.windows import Window
from scipy import ndimage

from ddrf.scenes.discover import SceneFiles, discover_scene, pair_from_paths, select_bands
from ddrf.scenes.errors import SceneError

EPS = 1e-6


@dataclass(frozen=True)
class _Grid:
    path: Path
    crs: object
    transform: Affine
    height: int
    width: int
    count: int
    dtype: np.dtype
    nodata: float | None
    nbits: int | None


@dataclass(frozen=True)
class AxisAlignment:
    """One axis: output pixel k is PAN pixel start + k; output MS sample i of a window at row0 is MS index
    row0/ratio + i + base + frac."""

    start: int
    length: int
    base: int
    frac: float


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def _check_orthorectified(path: Path, src: rasterio.io.DatasetReader) -> None:
    if re.search(r"-[PM]1BS-", path.name, re.I):
        raise SceneError(path, "Maxar 1B product (P1BS/M1BS): RPC-only, not orthorectified; use 2A products "
                               "(P2AS/M2AS) or orthorectify first (e.g. gdalwarp -rpc)")
    no_geotransform = src.transform == Affine.identity() and src.crs is None
    if no_geotransform and src.rpcs is not None:
        raise SceneError(path, "RPC-only GeoTIFF (no geotransform): not orthorectified; orthorectify first "
                               "(e.g. gdalwarp -rpc -t_srs EPSG:...)")
    if no_geotransform or src.crs is None:
        raise SceneError(path, "not georeferenced (no CRS or no geotransform)")
    t = src.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise SceneError(path, f"geotransform {tuple(t)[:6]} is rotated or not north-up")


def _inspect(path: Path) -> _Grid:
    """Header facts of one file; unreadable, truncated, RPC-only or ungeoreferenced files raise SceneError."""
    if not path.is_file():
        raise SceneError(path, "file missing")
    try:
        with rasterio.open(path) as src:
            _check_orthorectified(path, src)
            for band in range(1, src.count + 1):  # first and last pixel: catches truncated files cheaply
                src.read(band, window=Window(0, 0, 1, 1))
                src.read(band, window=Window(src.width - 1, src.height - 1, 1, 1))
            nbits = src.tags(1, "IMAGE_STRUCTURE").get("NBITS")
            return _Grid(path, src.crs, src.transform, src.height, src.width, src.count,
                         np.dtype(src.dtypes[0]), src.nodata, int(nbits) if nbits else None)
    except SceneError:
        raise
    except (RasterioIOError, OSError, ValueError) as exc:
        raise SceneError(path, f"unreadable or truncated raster ({_short(exc)})") from exc


def _ratio(pan: _Grid, ms: _Grid) -> int:
    ratios = (ms.transform.a / pan.transform.a, ms.transform.e / pan.transform.e)
    ratio = round(ratios[0])
    if ratio < 2 or any(abs(r - ratio) > EPS for r in ratios):
        raise SceneError(ms.path, f"pixel size {ms.transform.a:g} x {-ms.transform.e:g} over PAN {pan.path.name} "
                                  f"pixel size {pan.transform.a:g} x {-pan.transform.e:g} is ratio "
                                  f"{ratios[0]:.4g} x {ratios[1]:.4g}, not one integer >= 2")
    return ratio


def _align_axis(origin: float, ratio: int, pan_len: int, ms_len: int) -> AxisAlignment:
    """Output-grid crop and MS offset on one axis; `origin` is the MS origin in PAN pixels (pixel k = [k, k+1))."""
    origin = round(origin, 6)
    first = max(0, math.ceil(origin - 0.5 - EPS))  # first PAN pixel whose centre lies on the MS footprint
    end = min(pan_len, math.ceil(origin + ratio * ms_len - 0.5 - EPS))

    def shift(start: int) -> float:
        return (ratio // 2 + 0.5 - ratio / 2 - (origin - start)) / ratio

    def exact(start: int) -> bool:
        return abs(shift(start) - round(shift(start))) < EPS

    # Crop up to ratio-1 leading PAN pixels only where that makes the MS offset whole (no resampling needed).
    start = next((c for c in range(first, first + ratio) if exact(c)), first)
    base = math.floor(shift(start) + EPS)
    frac = shift(start) - base
    return AxisAlignment(start, end - start, base, 0.0 if frac < EPS else frac)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Half-sample symmetric reflection into [0, n) (edge sample repeated), any distance out."""
    index = np.mod(index, 2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


def _read_indexed(src: rasterio.io.DatasetReader, band: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """src[band][rows][:, cols] for in-range index arrays, reading only their bounding window."""
    r0, c0 = int(rows.min()), int(cols.min())
    window = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
    try:
        data = src.read(band, window=window)
    except (RasterioIOError, OSError) as exc:
        raise SceneError(src.name, f"unreadable or truncated raster ({_short(exc)})") from exc
    return data[np.ix_(rows - r0, cols - c0)].astype(np.float64)


def _is_nodata(data: np.ndarray, nodata: float | None) -> np.ndarray:
    if nodata is None:
        return np.zeros(data.shape, dtype=bool)
    return np.isnan(data) if np.isnan(nodata) else data == nodata


def _fill_nearest(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels of (H, W[, B]) values by the nearest valid pixel (all invalid: zeros)."""
    if not invalid.any():
        return values
    if invalid.all():
        return np.zeros_like(values)
    rows, cols = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return values[rows, cols]


def _cubic_weights(frac: float) -> np.ndarray:
    """Keys cubic convolution (a = -0.5) weights of samples at offsets -1, 0, 1, 2 for a point at +frac."""
    a, t = -0.5, frac
    d = np.array([1 + t, t, 1 - t, 2 - t])
    near = (a + 2) * d**3 - (a + 3) * d**2 + 1
    far = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return np.where(d <= 1, near, far)


def _resample_axis(values: np.ndarray, invalid: np.ndarray, frac: float, axis: int,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples read at offsets -1 .. n+1 -> n samples at 0+frac .. n-1+frac (and their two-nearest invalid OR)."""
    if frac == 0.0:
        return values, invalid
    w = _cubic_weights(frac)
    take = lambda x, k: np.take(x, np.arange(k, k + n), axis=axis)  # noqa: E731
    out = sum(w[k] * take(values, k) for k in range(4))
    return out, take(invalid, 1) | take(invalid, 2)


class Scene:
    """A PAN/MS scene on its output grid (see the module docstring for the grid and the alignment)."""

    def __init__(self, files: SceneFiles) -> None:
        self.files = files
        pan = _inspect(files.pan)
        ms_grids = {path: _inspect(path) for path, _ in files.ms}
        if not files.ms:
            raise SceneError(files.pan.parent, "no MS bands found")
        self._check_bands(pan, ms_grids)
        first = ms_grids[files.ms[0][0]]
        self._check_same_grids(pan, first, ms_grids)
        self.ratio = _ratio(pan, first)
        self._pan_grid, self._ms_grid = pan, first
        self.rows = _align_axis((first.transform.f - pan.transform.f) / pan.transform.e, self.ratio,
                                pan.height, first.height)
        self.cols = _align_axis((first.transform.c - pan.transform.c) / pan.transform.a, self.ratio,
                                pan.width, first.width)
        if self.rows.length <= 0 or self.cols.length <= 0:
            raise SceneError(first.path, f"MS footprint does not overlap PAN {pan.path.name}")
        landsat_zero = 0.0 if files.sensor.startswith("Landsat") else None
        self._nodata = {g.path: g.nodata if g.nodata is not None else landsat_zero
                        for g in (pan, *ms_grids.values())}
        self.name, self.sensor, self.band_names = files.name, files.sensor, list(files.band_names)
        self.dtype = pan.dtype
        self.bits = files.bits or pan.nbits or (pan.dtype.itemsize * 8 if pan.dtype.kind in "iu" else None)
        self.crs = pan.crs
        self.transform = pan.transform @ Affine.translation(self.cols.start, self.rows.start)
        self.height, self.width = self.rows.length, self.cols.length
        self.pan_nodata, self.ms_nodata = self._nodata[pan.path], self._nodata[first.path]

    @classmethod
    def from_directory(cls, directory: str | Path, bands: list[str] | None = None) -> "Scene":
        files = discover_scene(directory)
        return cls(select_bands(files, bands) if bands else files)

    @classmethod
    def from_paths(cls, pan: str | Path, ms: str | Path | list[str | Path],
                   bands: list[str] | None = None) -> "Scene":
        files = pair_from_paths(pan, ms)
        return cls(select_bands(files, bands) if bands else files)

    def _check_bands(self, pan: _Grid, ms_grids: dict[Path, _Grid]) -> None:
        if pan.count != 1:
            raise SceneError(pan.path, f"PAN file has {pan.count} bands, expected 1")
        for path, band in self.files.ms:
            grid = ms_grids[path]
            if not 1 <= band <= grid.count:
                raise SceneError(path, f"has {grid.count} bands, band {band} requested")
            if self.files.scheme.startswith("landsat") and grid.count != 1:
                raise SceneError(path, f"Landsat band file has {grid.count} bands, expected 1")

    @staticmethod
    def _check_same_grids(pan: _Grid, first: _Grid, ms_grids: dict[Path, _Grid]) -> None:
        for grid in ms_grids.values():
            if grid.crs != pan.crs:
                raise SceneError(grid.path, f"CRS {grid.crs} differs from PAN {pan.path.name} CRS {pan.crs}")
            if (grid.transform, grid.height, grid.width) != (first.transform, first.height, first.width):
                raise SceneError(grid.path, f"MS grid differs from {first.path.name} (geotransform or size)")

    # ------------------------------------------------------------ reading
    def _ms_index(self, axis: AxisAlignment, start: int, n: int) -> np.ndarray:
        """Raw MS indices to read for n output MS samples from output MS sample `start` (cubic margin if needed)."""
        lo, hi = (-1, n + 2) if axis.frac else (0, n)
        return start + axis.base + np.arange(lo, hi)

    def _read_ms(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw MS (len(rows), len(cols), B) at (possibly out-of-range) MS indices, and the nodata/outside mask."""
        grid = self._ms_grid
        r, c = _reflect(rows, grid.height), _reflect(cols, grid.width)
        bands, invalid = [], np.zeros((len(rows), len(cols)), dtype=bool)
        for path, band in self.files.ms:
            with rasterio.open(path) as src:
                data = _read_indexed(src, band, r, c)
            invalid |= _is_nodata(data, self._nodata[path])
            bands.append(data)
        outside = ((rows < 0) | (rows >= grid.height))[:, None] | ((cols < 0) | (cols >= grid.width))[None, :]
        ms = _fill_nearest(np.stack(bands, axis=-1), invalid)
        return ms, invalid | outside

    def read_pair(self, row0: int, col0: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pan (height, width), ms (height/ratio, width/ratio, B), valid (height, width)) of an output window.

        Any window of the output grid, also reaching outside it; all four numbers multiples of the ratio.
        """
        r = self.ratio
        if any(v % r for v in (row0, col0, height, width)) or height <= 0 or width <= 0:
            raise ValueError(f"window ({row0}, {col0}, {height}, {width}) must be positive multiples of ratio {r}")
        rows, cols = np.arange(row0, row0 + height), np.arange(col0, col0 + width)
        with rasterio.open(self.files.pan) as src:
            pan = _read_indexed(src, 1, self.rows.start + _reflect(rows, self.height),
                                self.cols.start + _reflect(cols, self.width))
        pan_invalid = _is_nodata(pan, self.pan_nodata)
        inside = ((rows >= 0) & (rows < self.height))[:, None] & ((cols >= 0) & (cols < self.width))[None, :]
        h, w = height // r, width // r
        ms, ms_invalid = self._read_ms(self._ms_index(self.rows, row0 // r, h), self._ms_index(self.cols, col0 // r, w))
        ms, ms_invalid = _resample_axis(ms, ms_invalid, self.rows.frac, 0, h)
        ms, ms_invalid = _resample_axis(ms, ms_invalid, self.cols.frac, 1, w)
        ms_invalid_pan = np.repeat(np.repeat(ms_invalid, r, axis=0), r, axis=1)  # MS sample i covers block [ri, ri+r)
        valid = inside & ~pan_invalid & ~ms_invalid_pan
        return _fill_nearest(pan, pan_invalid), ms, valid

    def preview(self, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decimated whole-scene reads for scene statistics, bounded in memory whatever the scene size:
        (pan (h, w), pan_valid, ms (h', w', B), ms_valid), nearest-neighbour decimation, nodata marked invalid."""
        def read(path: Path, band: int) -> tuple[np.ndarray, np.ndarray]:
            with rasterio.open(path) as src:
                step = max(1, -(-max(src.height, src.width) // max_side))
                data = src.read(band, out_shape=(-(-src.height // step), -(-src.width // step)))
            return data.astype(np.float64), ~_is_nodata(data, self._nodata[path])

        pan, pan_valid = read(self.files.pan, 1)
        bands = [read(path, band) for path, band in self.files.ms]
        ms_valid = np.logical_and.reduce([valid for _, valid in bands])
        return pan, pan_valid, np.stack([data for data, _ in bands], axis=-1), ms_valid

    def __repr__(self) -> str:
        return (f"Scene({self.name!r}, {self.sensor}, {self.height}x{self.width} ratio {self.ratio}, "
                f"bands {self.band_names}, MS shift rows {self.rows.base + self.rows.frac:g} "
                f"cols {self.cols.base + self.cols.frac:g})")
