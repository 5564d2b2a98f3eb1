"""Streaming one scene's windows through the engine and the feathered blender into the raster sinks.

Memory is flat at any scene size: the output is made one column chunk (tiling.CHUNK_COLUMNS) at a time; in a chunk
windows are fused one row strip at a time, finished rows are blended and handed to the writer, which keeps at most
one 512-row block strip of the chunk. A reader thread reads and prepares the next batch, and a writer thread writes
the last released rows, while the engine runs (the model is then most of the wall time). Never imports torch.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from ddrf.scenes.engines import Engine
from ddrf.scenes.tiling import CHUNK_COLUMNS, DEFAULT_HALO, RowBlender, TileBox, TileGrid, window_alignment
from ddrf.scenes.writer import BLOCK, RasterSink, geotiff_profile, to_cog, write_quicklook

if TYPE_CHECKING:
    from ddrf.scenes.scene import Scene



@dataclass
class RunSettings:
    tile: int | None  # None: the engine's default (its backend's, widened for a large halo)
    batch: int
    halo: int | None = None  # None: the engine's (a model's card, else DEFAULT_HALO)
    cog: bool = False
    quicklook: bool = False
    overwrite: bool = False
    spread: bool = False  # write <name>_spread.tif (needs an engine with samples >= 2)
    progress: bool | None = None  # None: tqdm decides (a terminal)
    chunk: int = CHUNK_COLUMNS  # output columns made at a time (a multiple of the writer's BLOCK)


@dataclass
class Outputs:
    """Final paths of one scene's files."""

    raster: Path
    report: Path
    spread: Path | None = None
    quicklook: Path | None = None

    @classmethod
    def for_raster(cls, raster: Path, spread: bool, quicklook: bool) -> "Outputs":
        # only the .tif suffix goes: scenes x.v1 and x.v2 keep their own x.v1.json and x.v2.json
        stem = raster.name[:-len(raster.suffix)] if raster.suffix.lower() in (".tif", ".tiff") else raster.name
        return cls(raster, raster.with_name(stem + ".json"),
                   raster.with_name(stem + "_spread.tif") if spread else None,
                   raster.with_name(stem + "_quicklook.png") if quicklook else None)

    def all(self) -> list[Path]:
        return [p for p in (self.spread, self.quicklook, self.report, self.raster) if p is not None]


@dataclass
class Timings:
    read: float = 0.0
    fuse: float = 0.0
    blend: float = 0.0
    write: float = 0.0
    finish: float = 0.0  # COG copy, quicklook, renames
    extra: dict[str, float] = field(default_factory=dict)


def output_nodata(scene: "Scene") -> float:
    """The input's nodata (MS first, then, for integer outputs, PAN) where the output type holds it, else NaN for
    floating-point outputs (0.0 is a valid reflectance or radiance there: a PAN's nodata 0 would mask it), the type's
    minimum for signed integers (0 may be valid data there; int64: -2^53, the lowest that GDAL's tag keeps exactly),
    else 0."""
    dtype = np.dtype(scene.dtype)
    for value in (scene.ms_nodata, scene.pan_nodata if dtype.kind != "f" else None):
        if isinstance(value, (list, tuple)):
            value = next((v for v in value if v is not None), None)
        if value is not None and not (isinstance(value, float) and math.isnan(value)) and _holds(dtype, value):
            return float(value)
    if dtype.kind == "f":
        return math.nan
    return float(max(np.iinfo(dtype).min, -2**53)) if dtype.kind == "i" else 0.0


def _holds(dtype: np.dtype, value: float) -> bool:
    """Whether an output of `dtype` can store `value` exactly (a PAN's nodata may not fit the MS type)."""
    if dtype.kind not in "iu":
        return True
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def batched(items: Sequence[TileBox], size: int) -> Iterator[list[TileBox]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def plan_grid(scene: "Scene", engine: Engine, settings: RunSettings) -> TileGrid:
    align = window_alignment(scene.ratio, engine.multiple)
    return TileGrid.plan(scene.height, scene.width, *resolved_window(settings, engine), align)


def resolved_window(settings: RunSettings, engine: Engine | None) -> tuple[int, int]:
    """(tile, halo): those asked for, else the engine's own (the halo its model needs for tiles to agree). A default
    tile is brought inside the windows a fixed engine profile takes (TensorRT); an asked-for one is checked as is."""
    halo = settings.halo if settings.halo is not None else int(getattr(engine, "halo", DEFAULT_HALO))
    if settings.tile is not None:
        return settings.tile, halo
    tile = int(getattr(engine, "default_tile", 256))
    limits = getattr(engine, "window_limits", lambda: None)()
    if limits is not None:
        tile = min(max(tile, limits[0]), limits[1])
    return tile, halo


def tile_advice(engine: Engine | None, least: int) -> str:
    """How to run windows of at least `least` px (`ddrf.scenes.tiling.least_tile`): --tile, or, where a fixed engine
    profile (TensorRT) takes no window that large, an engine built for them, since that --tile would be refused."""
    limits = getattr(engine, "window_limits", lambda: None)()
    if limits is None or least <= limits[1]:
        return f"--tile {least} or more"
    return f"an engine built with ddrf-export engine MODEL --max-tile {least} (this one takes at most {limits[1]} px)"


DEFAULTS_BANDS = 8  # the default window and column chunk are sized for up to this many bands (WorldView's eight)


def for_band_count(settings: RunSettings, engine: Engine, bands: int) -> RunSettings:
    """The run's settings for a scene of `bands` bands: beyond DEFAULTS_BANDS (a hyperspectral cube) narrower column
    chunks and, for a classical method without --tile, smaller windows (its float64 intermediates grow with the
    bands), so that memory stays near what eight bands take; a 200-band cube took 3.9 GB on a 600 x 600 PAN."""
    if bands <= DEFAULTS_BANDS:
        return settings
    shrink = DEFAULTS_BANDS / bands
    chunk = max(BLOCK, int(settings.chunk * shrink) // BLOCK * BLOCK)
    tile = settings.tile
    if tile is None and getattr(engine, "card", None) is None:  # a model's window is its card's and backend's
        default, halo = resolved_window(settings, engine)
        tile = max(4 * halo, int(default * math.sqrt(shrink)) // 64 * 64)
    return replace(settings, chunk=chunk, tile=tile)


@dataclass
class Batch:
    """A batch of windows read and prepared (in the reader thread), ready for the engine."""

    windows: list[TileBox]
    prepared: Any
    valid: list[np.ndarray]
    final: int | None  # rows final once this batch is blended (the last batch of a row strip), else None


def read_batches(scene: "Scene", engine: Engine, grid: TileGrid, columns: tuple[int, int], batch: int,
                 timings: Timings) -> Iterator[Batch]:
    """Read and prepare the chunk's windows, row strip by row strip (the reader thread's work)."""
    for final, windows in grid.row_strips(columns):
        chunks = list(batched(windows, batch))
        for k, chunk in enumerate(chunks):
            start = time.perf_counter()
            reads = [scene.read_pair(w.row, w.col, w.height, w.width) for w in chunk]
            timings.read += time.perf_counter() - start
            start = time.perf_counter()
            prepared = engine.prepare([(pan, ms) for pan, ms, _ in reads], [(w.row, w.col) for w in chunk])
            timings.extra["prepare"] = timings.extra.get("prepare", 0.0) + time.perf_counter() - start
            yield Batch(chunk, prepared, [valid for _, _, valid in reads], final if k == len(chunks) - 1 else None)


def prefetched(items: Iterator[Batch]) -> Iterator[Batch]:
    """`items`, each produced in a reader thread while the caller works on the previous one.

    ONNX Runtime and rasterio release the GIL, so reading, interp23 and noise overlap with the model.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ddrf-reader") as reader:
        pending = reader.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = reader.submit(next, items, None)
            yield item


def window_channels(samples: np.ndarray, spread: bool, calibration: float = 1.0) -> np.ndarray:
    """(H, W, B) mean of the samples, then (H, W, B) of their calibrated spread (std x `calibration`) when wanted.

    Where the output is known without the model (saturated pixels, `ddrf.saturation.restore_saturated`) the samples
    after the first are NaN: the mean is the first sample and the spread NaN, the spread raster's nodata (unknown,
    not zero)."""
    if len(samples) == 1:
        return samples[0]
    mean = samples.mean(axis=0)
    known = np.isnan(mean)
    mean[known] = samples[0][known]
    channels = [mean]
    if spread:
        channels.append(samples.std(axis=0, ddof=1) * calibration)
    return np.concatenate(channels, axis=-1)


class StripWriter:
    """Writes released row strips into the sinks in a thread of its own (sink k takes channels k*bands.. of each),
    one strip in flight: call `wait` before the blender's next release, so that release allocates only once the
    previous strip is written and the memory bound holds."""

    def __init__(self, sinks: list[RasterSink], bands: int, timings: Timings) -> None:
        self.sinks, self.bands, self.timings = sinks, bands, timings
        self.pending: Future[None] | None = None

    def __enter__(self) -> "StripWriter":
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ddrf-writer")
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)

    def wait(self) -> None:
        """Until the strip in flight is written; raises what its write raised."""
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def write(self, values: np.ndarray, valid: np.ndarray) -> None:
        self.wait()
        self.pending = self.pool.submit(self._write, values, valid)

    def _write(self, values: np.ndarray, valid: np.ndarray) -> None:
        start = time.perf_counter()
        for k, sink in enumerate(self.sinks):
            if len(values):
                sink.write_rows(values[..., k * self.bands:(k + 1) * self.bands], valid)
        self.timings.write += time.perf_counter() - start


def fuse_chunk(scene: "Scene", engine: Engine, grid: TileGrid, columns: tuple[int, int], settings: RunSettings,
               sinks: list[RasterSink], timings: Timings, tick: Callable[[int], None]) -> None:
    """Stream the windows of output columns [first, end) through the engine and blender into the sinks; each released
    row strip is written (`StripWriter`) while the next strip's windows are fused."""
    bands = len(scene.band_names)
    blender = RowBlender(grid, bands * len(sinks), columns)
    for sink in sinks:
        sink.start_chunk(*columns, grid.width)
    with StripWriter(sinks, bands, timings) as writer:
        for batch in prefetched(read_batches(scene, engine, grid, columns, settings.batch, timings)):
            start = time.perf_counter()
            fused = engine.run(batch.prepared)
            timings.fuse += time.perf_counter() - start
            start = time.perf_counter()
            for window, samples, valid in zip(batch.windows, fused, batch.valid):
                blender.add(window, window_channels(samples, settings.spread, engine.spread_calibration), valid)
            timings.blend += time.perf_counter() - start
            tick(len(batch.windows))
            if batch.final is None:
                continue
            writer.wait()
            start = time.perf_counter()
            _, values, valid = blender.release(batch.final)
            timings.blend += time.perf_counter() - start
            writer.write(values, valid)
        writer.wait()


def fuse_into(scene: "Scene", engine: Engine, grid: TileGrid, settings: RunSettings, sinks: list[RasterSink],
              timings: Timings, tick: Callable[[int], None]) -> None:
    """Stream the scene through the engine into the sinks (main raster, then spread), one column chunk at a time."""
    for columns in grid.column_chunks(settings.chunk):
        fuse_chunk(scene, engine, grid, columns, settings, sinks, timings, tick)


def open_sinks(scene: "Scene", outputs: Outputs, band_names: list[str], nodata: float) -> list[RasterSink]:
    """Sinks on the whole PAN grid (the fused grid placed at scene.offset, nodata where the MS does not reach)."""
    profile = geotiff_profile(scene.pan_height, scene.pan_width, len(band_names), np.dtype(scene.dtype), scene.crs,
                              scene.pan_transform, nodata)
    by_band = getattr(scene, "band_scaling", {})  # in-memory scenes (ddrf.fuse) have none
    scaling = [by_band.get(name, (1.0, 0.0)) for name in band_names]
    bits_tag = {"DDRF_BITS": str(scene.bits)} if scene.bits is not None else {}  # a float output has no bit depth
    by_name = getattr(scene, "band_tags", {})  # what each MS band is (its wavelength), for its fused band
    band_tags = [by_name.get(name, {}) for name in band_names]
    sinks = [RasterSink(outputs.raster, profile, band_names, scene.bits, bits_tag, scene.offset, scaling, band_tags)]
    if outputs.spread is not None:
        spread = dict(profile, dtype="float32", nodata=float("nan"), predictor=3)
        spread_scaling = [(scale, 0.0) for scale, _ in scaling]  # a spread of DN: scaled, no offset
        sinks.append(RasterSink(outputs.spread, spread, [f"{n} spread" for n in band_names], None, None, scene.offset,
                                spread_scaling, band_tags))
    return sinks


def seal(sinks: list[RasterSink], outputs: Outputs, settings: RunSettings,
         band_names: list[str]) -> list[tuple[Path, Path]]:
    """Close the temporaries and make the COG copies and quicklook: (temporary, final) pairs, main raster last."""
    temps = [sink.close() for sink in sinks]
    if settings.cog:
        temps = [to_cog(temp, sink.final) for temp, sink in zip(temps, sinks)]
        for sink, temp in zip(sinks, temps):
            sink.path = temp  # so abort() removes the COG temporary
    pending = [(temp, sink.final) for temp, sink in zip(temps, sinks)]
    if outputs.quicklook is not None:
        pending.append((write_quicklook(temps[0], outputs.quicklook, band_names), outputs.quicklook))
    return pending


def tile_bar(total: int, name: str, settings: RunSettings) -> Any:
    from tqdm import tqdm

    disable = None if settings.progress is None else not settings.progress
    return tqdm(total=total, desc=f"{name} tiles", unit="tile", leave=False, disable=disable, position=1)


