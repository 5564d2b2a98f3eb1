"""Scene geometry, the one place that decides which PAN pixels and which MS samples make a pair.

Both `ddrf-run` (`ddrf.scenes.scene.Scene`) and training/evaluation on GeoTIFF pairs (`ddrf.data.geotiff`) read
through `PairGrid.read_window`, so a model fine-tuned on a user's scenes sees the same grids it is later run on.

Output grid = the PAN grid, cropped to the PAN pixels whose centres lie on the MS footprint, and cropped by up to
ratio-1 further leading pixels where that removes a fractional MS offset (see `align_axis`).

interp23 convention (ddrf.filters): in a window whose first output pixel is (row0, col0), MS sample (i, j) must sit
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
`valid` is False there. Inside the grid the MS covers every pixel: a cubic kernel reaching past the last MS sample
reads the reflection and does not make the pixel invalid (a nested grid's last MS pixel is fused, like the rest of
the grid the report gives as the fused window). Nodata (the file's nodata value; 0 for Landsat, whose collars carry
no tag) is False in `valid` and replaced by the nearest valid value of the window read, so filters do not smear
nodata into neighbours.
"""
from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window
from scipy import ndimage

from ddrf.rasters import TileListError, open_raster

EPS = 1e-6



@dataclass(frozen=True)
class AxisAlignment:
    """One axis: output pixel k is PAN pixel start + k; output MS sample i of a window at row0 is MS index
    row0/ratio + i + base + frac."""

    start: int
    length: int
    base: int
    frac: float


def crs_name(crs: Any) -> str:
    """A CRS as a line can hold it: its EPSG code, else the name its WKT gives it (a WKT runs to 1,000 characters)."""
    if crs is None:
        return "no CRS"
    code = crs.to_epsg()
    if code:
        return f"EPSG:{code}"
    found = re.match(r'\s*\w+\["([^"]+)"', crs.to_wkt())
    return f"'{found.group(1)}'" if found else str(crs)[:80]


def same_crs(a: Any, b: Any, transform: Affine, shape: tuple[int, int]) -> bool:
    """One CRS however written: equal, or PROJ identifies both as one EPSG code and the corners and centre of the
    grid (`transform`, `shape`: a's) keep their coordinates through a to b to a millionth of a pixel (a WGS 84 UTM
    zone written as a PROJ string with +towgs84=0, which rasterio holds apart from EPSG:32616). Two EPSG codes stay
    two CRSs though PROJ maps one datum onto the other unmoved (NAD83 and WGS 84, a metre or two apart)."""
    if a == b:
        return True
    if a is None or b is None or a.to_epsg() is None or a.to_epsg() != b.to_epsg():
        return False
    from rasterio.warp import transform as warp_points

    rows, cols = np.array([0, 0, 1, 1, 0.5]) * shape[0], np.array([0, 1, 0, 1, 0.5]) * shape[1]
    t = transform
    xs, ys = t.c + cols * t.a + rows * t.b, t.f + cols * t.d + rows * t.e
    moved = np.array(warp_points(a, b, xs, ys)) - np.array([xs, ys])
    return bool(np.isfinite(moved).all() and (np.abs(moved) <= EPS * min(abs(transform.a), abs(transform.e))).all())


def crs_names(a: Any, b: Any) -> tuple[str, str]:
    """Two different CRSs as a line tells them apart: their short names (`crs_name`), or where those agree (two
    custom CRSs both 'unknown', two spellings PROJ identifies as one code) their PROJ strings."""
    names = crs_name(a), crs_name(b)
    return (a.to_proj4(), b.to_proj4()) if names[0] == names[1] and a is not None and b is not None else names


def integer_ratio(pan_transform: Affine, ms_transform: Affine) -> int:
    """PAN/MS resolution ratio from the pixel sizes; ValueError unless both axes agree on one integer >= 2."""
    ratios = (ms_transform.a / pan_transform.a, ms_transform.e / pan_transform.e)
    ratio = round(ratios[0])
    if ratio < 2 or any(abs(r - ratio) > EPS for r in ratios):
        raise ValueError(f"pixel size {_size_text(ms_transform)} over PAN pixel size {_size_text(pan_transform)} is "
                         f"ratio {_ratio_text(ratios[0])} x {_ratio_text(ratios[1])}, not one integer >= 2")
    return ratio


def north_up(transform: Affine, height: int, width: int) -> bool:
    """x growing east and y south, unrotated: rotation terms of floating-point noise (moving no pixel of the raster
    by a millionth of a pixel) count as none."""
    t = transform
    return t.a > 0 > t.e and abs(t.b) * height <= EPS * t.a and abs(t.d) * width <= EPS * -t.e


def not_north_up(transform: Affine, height: int, width: int) -> str | None:
    """Why a file's grid is not one `north_up` accepts, in the words of a line that names the file; None if it is.
    A south-up grid (positive y pixel size, row 0 the southern edge) is said as such, with the way out."""
    if north_up(transform, height, width):
        return None
    t = transform
    if t.a > 0 < t.e and north_up(Affine(t.a, t.b, t.c, t.d, -t.e, t.f), height, width):
        return (f"geotransform {tuple(t)[:6]} is south-up (positive y pixel size {t.e:g}: the first row is the "
                "southern edge); flip it north-up first (e.g. gdalwarp, which writes north-up)")
    return f"geotransform {tuple(t)[:6]} is rotated or not north-up"


def map_grid_problem(path: Path, src: DatasetReader) -> str | None:
    """Why a file is on no map grid ddrf can read, in the words of a line that names it (None if it is): sensor
    geometry (Maxar 1B, a Pleiades/SPOT primary product, any RPC'd file without a geotransform), ground control
    points only, no CRS or no geotransform, a south-up or rotated grid. ddrf-run and the pair reader of training
    and evaluation refuse such a file with it."""
    if re.search(r"-[PM]1BS-", path.name, re.I):
        return ("Maxar 1B product (P1BS/M1BS): RPC-only, not orthorectified; use 2A products (P2AS/M2AS) or "
                "orthorectify first (e.g. gdalwarp -rpc)")
    # GDAL's identity transform is no geotransform, whatever CRS sits beside it: a sensor-geometry product may carry
    # the RPCs' ground CRS (EPSG:4326) tag too, which is no map grid either
    no_geotransform = src.transform == Affine.identity()
    if no_geotransform and re.match(r"IMG_(PHR|SPOT|PNEO).*_SEN_", path.name, re.I):  # its RPCs in RPC_*.XML
        return ("Pleiades/SPOT primary product (SEN: sensor geometry, RPCs only): not orthorectified; use an ortho "
                "product (ORT) or orthorectify first (e.g. gdalwarp -rpc -t_srs EPSG:...)")
    if no_geotransform and src.rpcs is not None:
        return ("RPC-only GeoTIFF (no geotransform): not orthorectified; orthorectify first (e.g. gdalwarp -rpc "
                "-t_srs EPSG:...)")
    if no_geotransform and src.gcps[0]:
        return ("georeferenced by ground control points only, no geotransform: not on a map grid; warp it onto one "
                "first (e.g. gdalwarp -t_srs EPSG:...)")
    if no_geotransform or src.crs is None:
        return "not georeferenced (no CRS or no geotransform)"
    return not_north_up(src.transform, src.height, src.width)


def same_grid(a: Affine, b: Affine) -> bool:
    """Two geotransforms equal to a millionth of a pixel: one grid written by tools that compute the origin from the
    bounds and leave floating-point noise in it."""
    return a.almost_equals(b, precision=1e-6 * min(abs(a.a), abs(a.e)))


def _size_text(transform: Affine) -> str:
    """A pixel size to 10 digits: 30.00003 m, which :g prints as 30."""
    return f"{transform.a:.10g} x {-transform.e:.10g}"


def _ratio_text(ratio: float) -> str:
    """A ratio with the digits that tell it from the nearest integer (2.000002, not 2), 4 significant at least."""
    return next((text for digits in range(4, 12) if float(text := f"{ratio:.{digits}g}") != round(ratio)),
                f"{ratio:g}")


def align_axis(origin: float, ratio: int, pan_len: int, ms_len: int) -> AxisAlignment:
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


LATTICE_PERIOD = 1 << 23  # lattice indices wrap here (within the noise generator's coordinate range)


def lattice_origin(transform: Affine) -> tuple[int, int]:
    """(row, column) of a north-up grid's top-left pixel on its CRS's lattice of pixels of that size (the CRS origin
    at 0, 0), modulo LATTICE_PERIOD: the same ground pixel has the same index in any scene cut from that lattice."""
    return round(transform.f / transform.e) % LATTICE_PERIOD, round(transform.c / transform.a) % LATTICE_PERIOD


def default_nodata(tag: float | None, sensor: str) -> float | None:
    """The file's nodata tag; Landsat collars carry none but are 0."""
    return tag if tag is not None else (0.0 if sensor.startswith("Landsat") else None)


def reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Half-sample symmetric reflection into [0, n) (edge sample repeated), any distance out."""
    index = np.mod(index, 2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


def read_error_reason(exc: BaseException) -> str:
    """One short line on why a read failed: GDAL's own message where rasterio only says "Read failed. See previous
    exception"."""
    if exc.__cause__ is not None and "previous exception" in str(exc):
        exc = exc.__cause__
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def bands_by_file(pan: Path, ms: Sequence[tuple[Path, int]]) -> dict[Path, list[int]]:
    """Each file a scene reads and its bands in it (1-based): the PAN's one, the MS bands of each MS file."""
    used: dict[Path, list[int]] = {pan: [1]}
    for path, band in ms:
        used.setdefault(path, []).append(band)
    return used


def mask_facts(src: DatasetReader) -> tuple[tuple[tuple[MaskFlags, ...], ...], frozenset[int]]:
    """(per band, how GDAL finds its no-data; the bands whose colour interpretation is alpha): what
    `honoured_mask` decides from."""
    return (tuple(tuple(flags) for flags in src.mask_flag_enums),
            frozenset(i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha))


def honoured_mask(mask_flags: Sequence[Sequence[MaskFlags]], alpha_bands: set[int] | frozenset[int],
                  bands: Sequence[int]) -> bool:
    """Whether a file's own mask marks no data in the `bands` read from it (1-based): an internal or external mask
    always; an alpha band only when it is not itself one of the bands read (GDAL writes a four-band byte file as
    RGB + alpha unless told otherwise, so a NIR band can carry the alpha flag: read as a band, it masks nothing)."""
    flags = {flag for band in bands for flag in mask_flags[band - 1]}
    if MaskFlags.alpha in flags:
        return not alpha_bands & set(bands)
    # GDAL takes an alpha band as the mask of 2- and 4-band files only; beside more bands (`gdalwarp -dstalpha` on a
    # four-band MS) its own mask is all valid, and `file_mask` reads the alpha band instead
    return MaskFlags.per_dataset in flags or bool(alpha_bands - set(bands))


def single_image_band(count: int, alpha_bands: Collection[int]) -> bool:
    """Whether a file holds one image band, as a PAN must: one band, or grey + alpha (`gdalwarp -dstalpha`), whose
    alpha band is the grey band's no-data (`honoured_mask`)."""
    return count == 1 or (count == 2 and set(alpha_bands) == {2})


def coded_values(src: DatasetReader) -> str | None:
    """Why a file's values are codes rather than brightness, which fused (or trained on, or scored) would be silent
    garbage: one bit (a mask), or indices into a colour table (a grey ramp, index i = grey i, is brightness and
    passes). ddrf-run's scenes and the GeoTIFF pair reader refuse such a file with this reason."""
    if src.tags(1, "IMAGE_STRUCTURE").get("NBITS") == "1":
        return "a 1-bit raster (NBITS=1): two values, a mask rather than an image, so it cannot be fused"
    for band, interp in enumerate(src.colorinterp, 1):
        if interp == ColorInterp.palette and any(
                not r == g == b == i for i, (r, g, b, *_) in src.colormap(band).items()):
            return ("a palette (colour-map) raster: its values index a colour table, not brightness, so it cannot "
                    "be fused; give the image the colours were made from")
    return None


def read_band(src: DatasetReader, band: int | list[int], masked: bool = False, **options: object) -> np.ndarray:
    """One band (rasterio's read options: window, out_shape) as float64, or a list of bands stacked first; with
    `masked`, NaN where the file's own mask (`honoured_mask`) says no data: the values under it are fill (often 0),
    no data like a nodata value's, which `is_nodata` then finds."""
    data = src.read(band, **options).astype(np.float64)
    if masked:
        data[file_mask(src, band, **options) == 0] = np.nan
    return data


def file_mask(src: DatasetReader, band: int | list[int], **options: object) -> np.ndarray:
    """GDAL's mask of `band` (0 where no data; a list of bands: stacked first, as `read_band` reads them), or where
    GDAL finds none, the file's alpha band: GDAL takes an alpha band as the others' mask only in 2- and 4-band files,
    so a 4-band MS + alpha would otherwise mask nothing."""
    bands = [band] if isinstance(band, int) else band
    alpha = [i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha and i + 1 not in bands]
    if not alpha or any(list(src.mask_flag_enums[b - 1]) != [MaskFlags.all_valid] for b in bands):
        return src.read_masks(band, **options)
    if isinstance(band, int):
        return src.read(alpha[0], **options)
    shape = options.get("out_shape")  # (bands, rows, cols) for the stack: one band's for the alpha
    single = {**options, "out_shape": tuple(shape)[1:]} if isinstance(shape, tuple) else options
    mask = src.read(alpha[0], **single)
    return np.broadcast_to(mask, (len(bands), *mask.shape))


def read_decimated(src: DatasetReader, bands: list[int], shape: tuple[int, int], masked: bool = False,
                   dtype: np.dtype | type = np.float64) -> np.ndarray:
    """`read_band(src, bands, masked, out_shape=(len(bands), *shape))` as `dtype` (the file's own keeps a many-band
    raster's statistics small), the same pixels (GDAL's nearest neighbour:
    source index floor((i + 0.5) * size / n)), read block by block with every band in each read. GDAL's own
    decimated read of a pixel-interleaved raster (each tile holds every band) decodes each tile once per band when a
    tile of every band outgrows the block cache: minutes for 200 bands. One block of every band is held at once."""
    block_rows, block_cols = src.block_shapes[0]
    rows, cols = (np.floor((np.arange(n) + 0.5) * size / n).astype(np.int64)
                  for n, size in ((shape[0], src.height), (shape[1], src.width)))
    out = np.empty((len(bands), *shape), dtype=dtype)
    for r0 in range(0, src.height, block_rows):
        r_in = np.flatnonzero((rows >= r0) & (rows < r0 + block_rows))
        for c0 in range(0, src.width, block_cols) if r_in.size else ():
            c_in = np.flatnonzero((cols >= c0) & (cols < c0 + block_cols))
            if c_in.size:
                window = Window(c0, r0, min(block_cols, src.width - c0), min(block_rows, src.height - r0))
                block = read_band(src, bands, masked, window=window)
                out[:, r_in[0]:r_in[-1] + 1, c_in[0]:c_in[-1] + 1] = block[:, rows[r_in] - r0][:, :, cols[c_in] - c0]
    return out


def read_indexed(path: Path, band: int, rows: np.ndarray, cols: np.ndarray, masked: bool = False) -> np.ndarray:
    """file[band][rows][:, cols] as float64 for in-range index arrays, reading only their bounding window; with
    `masked`, NaN where the file's mask says no data."""
    return read_indexed_bands(path, [band], rows, cols, masked)[0]


def read_indexed_bands(path: Path, bands: list[int], rows: np.ndarray, cols: np.ndarray,
                       masked: bool = False) -> np.ndarray:
    """`read_indexed` of several bands of one file, stacked first, in one read: GDAL decodes a pixel-interleaved
    block (every band of a tile together, a multi-band GeoTIFF's default) once for all of them, where a read per
    band decoded it once per band: a 200-band cube's window took 10 s to read, 40 times its fusion."""
    r0, c0 = int(rows.min()), int(cols.min())
    window = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
    try:
        with open_raster(path) as src:
            data = read_band(src, bands, masked, window=window)
    except (RasterioIOError, OSError, TileListError) as exc:
        raise ValueError(f"{path}: unreadable or truncated raster ({read_error_reason(exc)})") from exc
    return data[:, rows - r0][:, :, cols - c0]


def nodata_json(nodata: float | None) -> float | str | None:
    """A nodata value as JSON can carry it: NaN as the string "nan" (STAC's convention; JSON has no NaN)."""
    return "nan" if nodata is not None and np.isnan(nodata) else nodata


# float32's extreme: GDAL's customary fill of float rasters, no measurement of any sensor
FLOAT_FILL = float(np.finfo(np.float32).max)


def is_nodata(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """The nodata value, and any NaN, +-inf or +-FLOAT_FILL (a float raster's missing samples, tagged or not: an
    untagged block at -3.4e38 made every band's scale 1e38 and the output -inf)."""
    missing = ~np.isfinite(data)
    if data.dtype.kind == "f":
        missing |= np.abs(data) >= FLOAT_FILL
    if nodata is None or np.isnan(nodata):
        return missing
    return missing | (data == nodata)


def nothing_valid(pan: Path, ms: Sequence[tuple[Path, int]], nodata: dict[tuple[Path, int], float | None],
                  masked: Collection[Path] = ()) -> str:
    """Why no pixel of a pair is valid in the PAN and every MS band, in ddrf-run's words (`Scene.preview`): the first
    band that is all nodata (a hyperspectral cube's bad band), else that the bands share no valid pixel. Read only
    once nothing was found valid, so a good pair pays nothing for it."""
    for path, band in [(pan, 1), *ms]:
        with open_raster(path) as src:
            data = read_band(src, band, path in masked)
        if is_nodata(data, nodata.get((path, band))).all():
            return f"{path}: band {band} has no valid pixels (all nodata)"
    return f"{ms[0][0]}: no pixel is valid in the PAN {pan.name} and every MS band"


def single_value(values: np.ndarray) -> float | None:
    """The one value of a non-empty array that holds only one, else None."""
    return float(values[0]) if values.size and bool((values == values[0]).all()) else None


ConstantBand = tuple[int, str | None, float]  # (1-based band, its name (None: a PAN), its one value)


def constant_files(pan: Path, pan_values: np.ndarray, ms: Sequence[tuple[Path, int]], names: Sequence[str],
                   ms_values: np.ndarray) -> list[tuple[Path, list[ConstantBand]]]:
    """The PAN and the MS files with a band of one value over the valid pixels (`pan_values` (N,), `ms_values`
    (M, B): those pixels only), each with such bands in order: a failed download, a fill-only file, a dead band (a
    Hyperion cube delivers tens at 0). The one rule of ddrf-run (`Scene.constant_bands`) and training."""
    found: dict[Path, list[ConstantBand]] = {}
    if (value := single_value(pan_values)) is not None:
        found[pan] = [(1, None, value)]
    for i, ((path, band), name) in enumerate(zip(ms, names)):
        if (value := single_value(ms_values[:, i])) is not None:
            found.setdefault(path, []).append((band, name, value))
    return list(found.items())


def band_list(bands: Sequence[int]) -> str:
    """`band 3`, or runs of consecutive bands: `bands 1-7, 58-76, 225`."""
    runs: list[list[int]] = []
    for band in bands:
        if runs and band == runs[-1][-1] + 1:
            runs[-1].append(band)
        else:
            runs.append([band])
    return f"band{'s' if len(bands) > 1 else ''} " + ", ".join(
        f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)


def constant_fact(path: Path, bands: Sequence[ConstantBand]) -> str:
    """One file's constant bands in one line: `PAN: constant (every valid pixel is 0)`, `MS: band 3 (red) constant
    (...)`, and several as runs of band numbers, by value: `MS: bands 1-7, 58-76 constant (every valid pixel is
    0)` (a line per band of a cube's tens of dead bands buried everything else said)."""
    if len(bands) == 1:
        band, name, value = bands[0]
        what = f"band {band} ({name}) " if name is not None else ""
        return f"{path}: {what}constant (every valid pixel is {value:g})"
    by_value: dict[float, list[int]] = {}
    for band, _, value in bands:
        by_value.setdefault(value, []).append(band)
    return f"{path}: " + " and ".join(f"{band_list(numbers)} constant (every valid pixel is {value:g})"
                                      for value, numbers in by_value.items())


def fill_nearest(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
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


@dataclass(frozen=True)
class PairGrid:
    """The output grid of a PAN/MS pair and how MS samples are taken onto it (see the module docstring)."""

    ratio: int
    rows: AxisAlignment
    cols: AxisAlignment
    ms_height: int
    ms_width: int
    transform: Affine  # of the output grid: the PAN's, shifted by the crop

    @classmethod
    def from_transforms(cls, pan_transform: Affine, pan_shape: tuple[int, int], ms_transform: Affine,
                        ms_shape: tuple[int, int]) -> "PairGrid":
        """ValueError when the pixel sizes are not an integer ratio; check `height`/`width` for an overlap."""
        ratio = integer_ratio(pan_transform, ms_transform)
        rows = align_axis((ms_transform.f - pan_transform.f) / pan_transform.e, ratio, pan_shape[0], ms_shape[0])
        cols = align_axis((ms_transform.c - pan_transform.c) / pan_transform.a, ratio, pan_shape[1], ms_shape[1])
        transform = pan_transform @ Affine.translation(cols.start, rows.start)
        return cls(ratio, rows, cols, ms_shape[0], ms_shape[1], transform)

    @property
    def height(self) -> int:
        return self.rows.length

    @property
    def width(self) -> int:
        return self.cols.length

    @property
    def ms_transform(self) -> Affine:
        """Geotransform of the MS samples as read: sample i centred on output pixel ratio*i + ratio//2."""
        offset = self.ratio // 2 + 0.5 - self.ratio / 2
        return self.transform @ Affine.translation(offset, offset) @ Affine.scale(self.ratio)

    def _ms_index(self, axis: AxisAlignment, start: int, n: int) -> np.ndarray:
        """Raw MS indices to read for n output MS samples from output MS sample `start` (cubic margin if needed)."""
        lo, hi = (-1, n + 2) if axis.frac else (0, n)
        return start + axis.base + np.arange(lo, hi)

    def _read_ms(self, ms: Sequence[tuple[Path, int]], nodata: dict[tuple[Path, int], float | None],
                 rows: np.ndarray, cols: np.ndarray, masked: Collection[Path] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Raw MS (len(rows), len(cols), B) at (possibly out-of-range, reflected) MS indices, and the nodata mask.

        Out-of-range indices are not marked: whether a PAN pixel is covered is the output grid's `inside` alone
        (PAN centre on the MS footprint). An in-grid pixel's MS sample always lies on (-1, ms_len) MS indices, so
        only the cubic kernel's support (or a window reaching past the grid) reads past the edge; marking those
        reads would drop the MS's last ratio PAN rows/columns that the reported fused window includes.
        """
        r, c = reflect(rows, self.ms_height), reflect(cols, self.ms_width)
        by_file: dict[Path, list[int]] = {}
        for path, band in ms:
            by_file.setdefault(path, []).append(band)
        read = {path: dict(zip(wanted, read_indexed_bands(path, wanted, r, c, path in masked)))
                for path, wanted in by_file.items()}  # one read per file, not per band
        bands, invalid = [], np.zeros((len(rows), len(cols)), dtype=bool)
        for path, band in ms:
            data = read[path][band]
            invalid |= is_nodata(data, nodata.get((path, band)))
            bands.append(data)
        return fill_nearest(np.stack(bands, axis=-1), invalid), invalid

    def read_window(self, pan: Path, ms: Sequence[tuple[Path, int]],
                    nodata: dict[tuple[Path, int], float | None], row0: int, col0: int, height: int,
                    width: int, masked: Collection[Path] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pan (height, width), ms (height/ratio, width/ratio, B), valid (height, width)) of an output window.

        Any window of the output grid, also reaching outside it; all four numbers multiples of the ratio. `nodata`:
        each (file, band)'s nodata value (GDAL keeps one per band). `masked`:
        the files whose own masks mark no data (`honoured_mask`), besides their nodata values.
        """
        r = self.ratio
        if any(v % r for v in (row0, col0, height, width)) or height <= 0 or width <= 0:
            raise ValueError(f"window ({row0}, {col0}, {height}, {width}) must be positive multiples of ratio {r}")
        rows, cols = np.arange(row0, row0 + height), np.arange(col0, col0 + width)
        pan_data = read_indexed(pan, 1, self.rows.start + reflect(rows, self.height),
                        self.cols.start + reflect(cols, self.width), pan in masked)
        pan_invalid = is_nodata(pan_data, nodata.get((pan, 1)))
        inside = ((rows >= 0) & (rows < self.height))[:, None] & ((cols >= 0) & (cols < self.width))[None, :]
        h, w = height // r, width // r
        ms_data, ms_invalid = self._read_ms(ms, nodata, self._ms_index(self.rows, row0 // r, h),
                                            self._ms_index(self.cols, col0 // r, w), masked)
        ms_data, ms_invalid = _resample_axis(ms_data, ms_invalid, self.rows.frac, 0, h)
        ms_data, ms_invalid = _resample_axis(ms_data, ms_invalid, self.cols.frac, 1, w)
        ms_invalid_pan = np.repeat(np.repeat(ms_invalid, r, axis=0), r, axis=1)  # MS sample i covers [ri, ri+r)
        valid = inside & ~pan_invalid & ~ms_invalid_pan
        return fill_nearest(pan_data, pan_invalid), ms_data, valid
