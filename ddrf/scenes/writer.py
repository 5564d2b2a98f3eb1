"""GeoTIFF output on the PAN grid: temporary files renamed when complete, block-aligned row writes, COG, quicklook.

Nothing is ever written under a final name until it is whole: every file is first written as a temporary beside
it (ddrf.files); a killed run leaves only such files, and `clean_stale` removes them before the scene is redone.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from rasterio.windows import Window as RioWindow

from ddrf.files import temp_path

BLOCK = 512
SLAB = 128  # rows padded and quantised at a time


def value_range(dtype: np.dtype, bits: int | None) -> tuple[float, float] | None:
    """What an integer output can hold: 0..2^bits-1 for unsigned types (bits may say 12 of 16), the type's whole
    range for signed ones (their data may be negative, so a bit depth names no range); None for floats."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return None
    info = np.iinfo(dtype)
    if info.min < 0 or not bits:
        return float(info.min), float(info.max)
    return 0.0, float(min(2**bits - 1, info.max))


def quantise(values: np.ndarray, valid: np.ndarray, dtype: np.dtype, bits: int | None,
             nodata: float | None) -> np.ndarray:
    """Float DN -> output dtype: rounded and clipped to `value_range` for integers; nodata where not valid.

    A valid pixel that would equal the nodata value is moved one step inside the range, so it is not lost.
    """
    dtype = np.dtype(dtype)
    limits = value_range(dtype, bits)
    if limits is not None:
        low, high = limits
        out = np.clip(np.rint(values), low, high)
        if nodata is not None:
            out[(out == nodata) & valid[..., None]] = nodata + 1 if nodata < high else nodata - 1
    else:
        out = values.copy()
    if nodata is not None:
        out[~valid] = nodata
    return out.astype(dtype)


def beyond_range(values: np.ndarray, valid: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    """(2, bands) counts of valid pixels whose rounded value falls below / above an integer output's range (they
    are clipped); zeros for a float output."""
    counts = np.zeros((2, values.shape[-1]), np.int64)
    if limits is not None:
        inside = valid[..., None]
        counts[0] = np.count_nonzero((values < limits[0] - 0.5) & inside, axis=(0, 1))
        counts[1] = np.count_nonzero((values > limits[1] + 0.5) & inside, axis=(0, 1))
    return counts


def geotiff_profile(height: int, width: int, count: int, dtype: np.dtype, crs: Any, transform: Any,
                    nodata: float | None) -> dict[str, Any]:
    integer = np.issubdtype(np.dtype(dtype), np.integer)
    return dict(driver="GTiff", height=height, width=width, count=count, dtype=np.dtype(dtype).name, crs=crs,
                transform=transform, nodata=nodata, tiled=True, blockxsize=BLOCK, blockysize=BLOCK,
                compress="deflate", predictor=2 if integer else 3, zlevel=6, BIGTIFF="IF_SAFER",
                interleave="pixel", photometric="MINISBLACK")  # never RGB(A): 4 uint8 bands would make NIR alpha


@contextmanager
def naming_failures(final: Path) -> Iterator[None]:
    """A failed write (disk full, file-size limit) as one line naming the output, with GDAL's first reason."""
    try:
        yield
    except (rasterio.errors.RasterioError, OSError) as exc:
        causes = [exc]
        while causes[-1].__cause__ or causes[-1].__context__:
            causes.append(causes[-1].__cause__ or causes[-1].__context__)
        reason = " ".join(str(causes[-1]).split()) or type(causes[-1]).__name__
        raise OSError(f"{final}: cannot write the output ({reason}); is the disk full or a file-size limit set?") \
            from exc


class RasterSink:
    """Writes a (H, W, B) raster into a temporary GeoTIFF, one column chunk at a time, rows in order, BLOCK rows
    at a time.

    Buffering whole block rows means every compressed tile is written once (no read-modify-write of partial
    blocks, chunks being multiples of BLOCK wide), and memory stays at BLOCK rows of one chunk, already quantised.
    """

    def __init__(self, final: Path, profile: dict[str, Any], band_names: list[str], bits: int | None,
                 tags: dict[str, str] | None = None, offset: tuple[int, int] = (0, 0),
                 scaling: list[tuple[float, float]] | None = None,
                 band_tags: list[dict[str, str]] | None = None) -> None:
        self.final, self.profile, self.bits = final, profile, bits
        self.top, self.left = offset  # where the rows given to write_rows sit in the raster (nodata around them)
        self.path = temp_path(final)
        self.dataset = rasterio.open(self.path, "w", **profile)
        for i, name in enumerate(band_names, start=1):
            self.dataset.set_band_description(i, name)
            if band_tags and band_tags[i - 1]:  # per band metadata (a cube's wavelengths)
                self.dataset.update_tags(i, **band_tags[i - 1])
        if scaling and any(pair != (1.0, 0.0) for pair in scaling):  # per band (scale, offset) to physical units
            self.dataset.scales = tuple(scale for scale, _ in scaling)
            self.dataset.offsets = tuple(shift for _, shift in scaling)
        if tags:
            self.dataset.update_tags(**tags)
        self.rows: list[np.ndarray] = []
        self.limits = value_range(np.dtype(profile["dtype"]), bits)
        self.clipped = np.zeros((2, len(band_names)), np.int64)  # valid pixels clipped below / above, per band
        self.valid_pixels = 0
        self.buffered = 0
        self.written = 0
        self.columns = (0, profile["width"])  # raster columns of the current chunk
        self.chunk = (0, profile["width"] - self.left)  # its fused-grid columns
        self.columns_done = 0

    def start_chunk(self, first: int, end: int, fused_width: int) -> None:
        """The next rows written are fused-grid columns [first, end) of `fused_width`; the raster's nodata margins
        left and right of the fused grid go with the first and last chunk. The previous chunk is finished first."""
        self._finish_chunk()
        self.chunk, self.written = (first, end), 0
        self.columns = (0 if first == 0 else self.left + first,
                        self.profile["width"] if end == fused_width else self.left + end)

    def _finish_chunk(self) -> None:
        below = self.profile["height"] - self.written - self.buffered
        if below > 0 and self.rows:  # nodata rows under the fused grid
            self._buffer_nodata(below, self.rows[-1].shape[2])
        if self.buffered:
            self._flush(self.buffered)
        self.rows = []  # the next chunk may be narrower
        if self.written:
            if self.written != self.profile["height"]:
                raise RuntimeError(f"{self.final}: wrote {self.written} of {self.profile['height']} rows of "
                                   f"columns {self.columns}")
            self.columns_done += self.columns[1] - self.columns[0]
            self.written = 0

    def write_rows(self, values: np.ndarray, valid: np.ndarray) -> None:
        """The next rows of the current chunk of the fused grid, placed at `offset` in the raster."""
        first, end = self.chunk
        lo, hi = self.columns
        pad = ((0, 0), (self.left + first - lo, hi - self.left - end))
        if self.written + self.buffered == 0 and self.top:  # nodata rows above the fused grid
            self._buffer_nodata(self.top, values.shape[2])
        for start in range(0, len(values), SLAB):  # the float temporaries of padding and quantising stay small
            rows = slice(start, start + SLAB)
            self._buffer(np.pad(values[rows], (*pad, (0, 0))), np.pad(valid[rows], pad))

    def _buffer_nodata(self, count: int, bands: int) -> None:
        width = self.columns[1] - self.columns[0]
        for start in range(0, count, SLAB):
            rows = min(SLAB, count - start)
            self._buffer(np.zeros((rows, width, bands), np.float32), np.zeros((rows, width), bool))

    def _buffer(self, values: np.ndarray, valid: np.ndarray) -> None:
        self.clipped += beyond_range(values, valid, self.limits)
        self.valid_pixels += int(np.count_nonzero(valid))
        self.rows.append(quantise(values, valid, self.profile["dtype"], self.bits, self.profile["nodata"]))
        self.buffered += values.shape[0]
        if self.buffered >= BLOCK:
            self._flush(BLOCK * (self.buffered // BLOCK))

    def _flush(self, n: int) -> None:
        data = np.concatenate(self.rows)
        first, end = self.columns
        with naming_failures(self.final):
            self.dataset.write(np.moveaxis(data[:n], -1, 0), window=RioWindow(first, self.written, end - first, n))
        self.rows = [data[n:]]
        self.buffered -= n
        self.written += n

    def close(self) -> Path:
        """Flush, close and check the raster is complete; returns the temporary path."""
        self._finish_chunk()
        with naming_failures(self.final):
            self.dataset.close()
        if self.columns_done != self.profile["width"]:
            raise RuntimeError(f"{self.final}: wrote {self.columns_done} of {self.profile['width']} columns")
        return self.path

    def abort(self) -> None:
        if not self.dataset.closed:
            self.dataset.close()
        self.path.unlink(missing_ok=True)


def to_cog(path: Path, final: Path) -> Path:
    """Copy a finished GeoTIFF into a Cloud Optimized GeoTIFF (overviews by averaging); returns the new temp."""
    with rasterio.open(path) as src:
        integer = np.issubdtype(np.dtype(src.dtypes[0]), np.integer)
    cog = temp_path(final)
    rasterio.shutil.copy(path, cog, driver="COG", compress="DEFLATE", predictor="YES" if integer else "FLOATING_POINT",
                         blocksize=BLOCK, overview_resampling="average", bigtiff="IF_SAFER")
    path.unlink(missing_ok=True)
    return cog


def rgb_indices(band_names: list[str]) -> list[int]:
    """1-based red, green, blue bands by name, else the first three (or one band as grey)."""
    names = [n.lower() for n in band_names]
    if all(c in names for c in ("red", "green", "blue")):
        return [names.index(c) + 1 for c in ("red", "green", "blue")]
    return [1, 2, 3] if len(names) >= 3 else [1, 1, 1]


def write_quicklook(raster: Path, final: Path, band_names: list[str], max_side: int = 1024) -> Path:
    """An 8-bit RGB PNG, 2-98 % stretch per band over valid pixels; returns its temporary path."""
    with rasterio.open(raster) as src:
        scale = max(1, -(-max(src.height, src.width) // max_side))
        shape = (3, max(1, src.height // scale), max(1, src.width // scale))
        data = src.read(rgb_indices(band_names), out_shape=shape, masked=True,
                        resampling=rasterio.enums.Resampling.average)
    rgb = np.zeros(shape, dtype=np.uint8)
    mask = ~np.ma.getmaskarray(data).any(axis=0)
    for i, band in enumerate(data.astype(np.float64).filled(0)):
        if mask.any():
            low, high = np.percentile(band[mask], (2, 98))
            rgb[i] = np.clip((band - low) / max(high - low, 1e-9) * 255, 0, 255).astype(np.uint8)
    rgb[:, ~mask] = 0
    png = temp_path(final)
    with warnings.catch_warnings():  # a PNG has no georeferencing, on purpose
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        # no .aux.xml sidecar: nothing to keep in one, and its name would be 8 bytes longer than the temporary's
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(png, "w", driver="PNG", height=shape[1],
                                                                width=shape[2], count=3, dtype="uint8") as dst:
            dst.write(rgb)
    return png
