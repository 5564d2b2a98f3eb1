"""`Scene`: a validated PAN/MS scene read by windows of its output grid, MS aligned to the interp23 convention.

The grid, the alignment, edge padding and nodata handling are `ddrf.geometry` (shared with the GeoTIFF pair reader
of training and evaluation); this module validates the files and reads them. Memory: every read is a rasterio
window around the request.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from ddrf.geometry import (ConstantBand, PairGrid, bands_by_file, coded_values, constant_files, crs_names,
                           default_nodata, honoured_mask, is_nodata, lattice_origin, map_grid_problem, mask_facts,
                           read_decimated, read_error_reason, same_crs, same_grid, single_image_band)
from ddrf.scenes.discover import SceneFiles, discover_scene, open_raster, pair_from_paths, select_bands
from ddrf.scenes.errors import SceneError
from ddrf.scenes.writer import value_range

@dataclass(frozen=True)
class _Grid:
    path: Path
    crs: object
    transform: Affine
    height: int
    width: int
    count: int
    dtype: np.dtype
    nodata: tuple[float | None, ...]  # per band (GDAL keeps one per band; a VRT or .img may differ between bands)
    nbits: int | None
    mask_flags: tuple[tuple[MaskFlags, ...], ...] = ()  # per band: how GDAL finds its no-data (nodata, mask, alpha)
    alpha_bands: frozenset[int] = frozenset()  # bands whose colour interpretation is alpha
    scales: tuple[float, ...] = ()  # per band: physical value = DN x scale + offset (GDAL's band metadata)
    offsets: tuple[float, ...] = ()
    band_tags: tuple[dict[str, str], ...] = ()  # per band: its metadata the output band carries (`carried_tags`)


def carried_tags(tags: dict[str, str]) -> dict[str, str]:
    """A band's metadata that its fused band keeps: what says what the band is (a hyperspectral cube's `wavelength`,
    `wavelength_units`, `fwhm`, as GDAL writes an ENVI header's), not GDAL's statistics of the input's values."""
    return {key: value for key, value in tags.items() if not key.startswith("STATISTICS_")}


def _inspect(path: Path) -> _Grid:
    """Header facts of one file; unreadable, truncated, RPC-only or ungeoreferenced files raise SceneError."""
    if not path.is_file():
        raise SceneError(path, "file missing")
    try:
        with open_raster(path) as src:
            if reason := map_grid_problem(path, src):
                raise SceneError(path, reason)
            if any(np.dtype(t).kind == "c" for t in src.dtypes):  # read as real, its imaginary part dropped
                raise SceneError(path, f"complex data ({src.dtypes[0]}): not an image to fuse; write its magnitude "
                                       "or real part as a real type first")
            src.read(window=Window(0, 0, 1, 1))  # first and last pixel of every band: catches truncated files cheaply
            src.read(window=Window(src.width - 1, src.height - 1, 1, 1))
            if coded := coded_values(src):
                raise SceneError(path, coded)
            nbits = src.tags(1, "IMAGE_STRUCTURE").get("NBITS")
            return _Grid(path, src.crs, src.transform, src.height, src.width, src.count,
                         np.dtype(src.dtypes[0]), tuple(src.nodatavals), int(nbits) if nbits else None,
                         *mask_facts(src), tuple(src.scales), tuple(src.offsets),
                         tuple(carried_tags(src.tags(b)) for b in range(1, src.count + 1)))
    except SceneError:
        raise
    except (RasterioIOError, OSError, ValueError) as exc:
        raise SceneError(path, f"unreadable or truncated raster ({read_error_reason(exc)})") from exc


class Scene:
    """A PAN/MS scene on its output grid (see the module docstring for the grid and the alignment)."""

    def __init__(self, files: SceneFiles) -> None:
        self.files = files
        pan = _inspect(files.pan)
        ms_grids = {path: _inspect(path) for path in dict.fromkeys(path for path, _ in files.ms)}  # each file once
        if not files.ms:
            raise SceneError(files.pan.parent, "no MS bands found")
        self._check_bands(pan, ms_grids)
        first = ms_grids[files.ms[0][0]]
        self._check_same_grids(pan, first, ms_grids)
        try:
            self.grid = PairGrid.from_transforms(pan.transform, (pan.height, pan.width), first.transform,
                                                 (first.height, first.width))
        except ValueError as exc:
            raise SceneError(first.path, f"{exc} (PAN {pan.path.name})") from exc
        self.ratio, self.rows, self.cols = self.grid.ratio, self.grid.rows, self.grid.cols
        if self.rows.length <= 0 or self.cols.length <= 0:
            raise SceneError(first.path, f"MS footprint does not overlap PAN {pan.path.name}")
        bands_read = ((pan, 1), *((ms_grids[path], band) for path, band in files.ms))  # (file, band) of each band
        self._nodata = {(g.path, band): default_nodata(g.nodata[band - 1], files.sensor) for g, band in bands_read}
        used = bands_by_file(pan.path, files.ms)
        self._masked = frozenset(g.path for g in (pan, *ms_grids.values())
                                 if honoured_mask(g.mask_flags, g.alpha_bands, used[g.path]))
        self.name, self.sensor, self.band_names = files.name, files.sensor, list(files.band_names)
        # the output holds the sharpened MS bands: their type and bit depth, whatever the PAN's
        self.dtype = first.dtype
        self.bits = files.bits or first.nbits or (first.dtype.itemsize * 8 if first.dtype.kind in "iu" else None)
        self.crs = pan.crs
        self.transform = self.grid.transform
        self.height, self.width = self.rows.length, self.cols.length
        # outputs are written on the whole PAN grid: the fused grid sits at `offset`, nodata around it
        self.pan_transform, self.pan_height, self.pan_width = pan.transform, pan.height, pan.width
        self.offset = (self.rows.start, self.cols.start)
        # noise is keyed to this + the scene's row and column, so overlapping scenes draw the same at each pixel
        self.noise_origin = lattice_origin(self.transform)
        self.pan_nodata, self.ms_nodata = self._nodata[(pan.path, 1)], self._nodata[files.ms[0]]
        # the fused bands are in the MS's DN, so each keeps its MS band's scale and offset to physical units
        self.band_scaling = {name: (ms_grids[path].scales[band - 1], ms_grids[path].offsets[band - 1])
                             for name, (path, band) in zip(files.band_names, files.ms)}
        self.band_tags = {name: ms_grids[path].band_tags[band - 1] for name, (path, band) in zip(files.band_names,
                                                                                                  files.ms)}
        # (MS, PAN) saturation: the largest value of each file's type and bit depth (None for floats)
        self.ceilings = tuple(limits[1] if (limits := value_range(dtype, bits)) else None
                              for dtype, bits in ((first.dtype, self.bits), (pan.dtype, pan.nbits)))
        self._previews: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}  # see preview

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
        if not single_image_band(pan.count, pan.alpha_bands):
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
            if not same_crs(pan.crs, grid.crs, pan.transform, (pan.height, pan.width)):
                names = crs_names(grid.crs, pan.crs)
                raise SceneError(grid.path, f"CRS {names[0]} differs from PAN {pan.path.name} CRS {names[1]}")
            shape = (grid.height, grid.width) == (first.height, first.width)
            if not (shape and same_grid(grid.transform, first.transform)):
                raise SceneError(grid.path, f"MS grid differs from {first.path.name} (geotransform or size)")

    # ------------------------------------------------------------ reading
    def read_pair(self, row0: int, col0: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pan (height, width), ms (height/ratio, width/ratio, B), valid (height, width)) of an output window.

        Any window of the output grid, also reaching outside it; all four numbers multiples of the ratio.
        """
        return self.grid.read_window(self.files.pan, self.files.ms, self._nodata, row0, col0,
                                     height, width, self._masked)

    def preview(self, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decimated whole-scene reads for scene statistics, bounded in memory whatever the scene size:
        (pan (h, w), pan_valid, ms (h', w', B), ms_valid), nearest-neighbour decimation, nodata marked invalid.
        Read once per scene and size (kept: a few MB at most), for the engine's statistics and the input checks."""
        if max_side not in self._previews:
            self._previews[max_side] = self._read_preview(max_side)
        return self._previews[max_side]

    def _read_preview(self, max_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        def read(path: Path, bands: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
            """The file's bands in one read: a pixel-interleaved cube's tiles decoded once, not once per band."""
            try:
                with open_raster(path) as src:
                    step = max(1, -(-max(src.height, src.width) // max_side))
                    shape = (-(-src.height // step), -(-src.width // step))
                    data = read_decimated(src, bands, shape, path in self._masked)
            except (RasterioIOError, OSError) as exc:  # _inspect read only the corner pixels
                raise SceneError(path, f"unreadable or corrupt raster ({read_error_reason(exc)})") from exc
            found = {}
            for band, values in zip(bands, data):
                valid = ~is_nodata(values, self._nodata[(path, band)])
                if not valid.any():  # named here: the statistics downstream no longer know which file
                    raise SceneError(path, f"band {band} has no valid pixels (all nodata)")
                found[band] = (values, valid)
            return found

        pan, pan_valid = read(self.files.pan, [1])[1]
        by_file: dict[Path, list[int]] = {}
        for path, band in self.files.ms:
            by_file.setdefault(path, []).append(band)
        read_bands = {path: read(path, wanted) for path, wanted in by_file.items()}
        bands = [read_bands[path][band] for path, band in self.files.ms]
        ms_valid = np.logical_and.reduce([valid for _, valid in bands])
        if not ms_valid.any():
            raise SceneError(self.files.ms[0][0], "no pixel is valid in every MS band")
        return pan, pan_valid, np.stack([data for data, _ in bands], axis=-1), ms_valid

    def constant_bands(self) -> list[tuple[Path, list[ConstantBand]]]:
        """The PAN and the MS files with bands that hold one value over the preview's valid pixels (the one the
        engine reads), each with those bands (`ddrf.geometry.constant_files`)."""
        pan, pan_valid, ms, ms_valid = self.preview()
        return constant_files(self.files.pan, pan[pan_valid], self.files.ms, self.band_names, ms[ms_valid])

    def __repr__(self) -> str:
        return (f"Scene({self.name!r}, {self.sensor}, {self.height}x{self.width} ratio {self.ratio}, "
                f"bands {self.band_names}, MS shift rows {self.rows.base + self.rows.frac:g} "
                f"cols {self.cols.base + self.cols.frac:g})")
