"""One scene, end to end: windows of (PAN, MS) -> model or baseline -> feathered blend -> GeoTIFF(s) + report.

Memory is bounded by the scene width, never its size: windows are fused one band of rows at a time, finished rows
are blended and handed to the writer, which keeps at most one 512-row block band. Never imports torch.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ddrf.scenes import report as reports
from ddrf.scenes.tiling import RowBlender, TileGrid, Window
from ddrf.scenes.writer import (RasterSink, clean_stale, geotiff_profile, publish, to_cog, write_quicklook)

GPU_BACKENDS = ("ort-cuda", "ort-tensorrt", "tensorrt")
DEFAULT_HALO = 32  # PAN pixels; see ddrf/scenes/tiling.py and the report's "halo" entry


def default_tiling(backend: str, method: str | None = None) -> tuple[int, int]:
    """(tile, batch): the CPU is best fed one 256 window at a time; a GPU wants larger windows, batched.

    Classical baselines are cheap per pixel, so they take large windows (fewer halos to recompute).
    """
    if method:
        return 1024, 1
    return (512, 4) if backend in GPU_BACKENDS else (256, 1)


class Engine(Protocol):
    """Fuses same-sized windows; returns per window (samples, H, W, B) float DN."""

    label: str
    bands: list[str] | None  # bands it needs from the scene, in order (None: all the scene has)
    ratio: int | None
    multiple: int
    samples: int

    def start_scene(self, scene: Any) -> None:
        """Called once per scene before its windows (e.g. for scene-wide radiometric statistics)."""

    def fuse(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> list[np.ndarray]: ...

    def summary(self) -> dict[str, Any]: ...


class ModelEngine:
    """A runtime Fuser; `samples` seeds (seed, seed+1, ...) when the spread is wanted."""

    def __init__(self, fuser: Any, seed: int = 0, samples: int = 1) -> None:
        self.fuser, self.seed, self.samples = fuser, seed, samples
        self.card = fuser.card
        self.bands: list[str] | None = list(self.card.bands)
        self.ratio: int | None = int(self.card.ratio)
        self.multiple = int(fuser.multiple)
        self.label = f"model ({fuser.files.root})"
        self.radiometry: Any = None

    def start_scene(self, scene: Any) -> None:
        """One normalisation for the whole scene, so that tiles agree (per-scene statistics come from a preview)."""
        from ddrf.radiometry import scene_radiometry

        pan, pan_valid, ms, ms_valid = scene.preview()
        self.radiometry = scene_radiometry(self.card.normalisation, ms, pan[..., None], ms_valid, pan_valid)

    def fuse(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> list[np.ndarray]:
        runs = [self.fuser.fuse_batch(pairs, self.seed + k, origins, self.radiometry) for k in range(self.samples)]
        return [np.stack([run[i] for run in runs]) for i in range(len(pairs))]

    def summary(self) -> dict[str, Any]:
        return {"kind": "model", "model_dir": str(self.fuser.files.root), "card": reports.card_summary(self.card),
                "radiometry": self.radiometry.to_dict() if self.radiometry is not None else None,
                "backend": self.fuser.backend_kind, "precision": self.fuser.precision, "steps": self.fuser.steps,
                "unrolled": self.fuser.unrolled, "seed": self.seed, "samples": self.samples}


class BaselineEngine:
    """A classical method from ddrf.baselines (deterministic: one sample)."""

    def __init__(self, method: str, sensor: str = "generic") -> None:
        from ddrf.baselines import ALL_METHODS

        if method not in ALL_METHODS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(ALL_METHODS)}")
        self.method, self.sensor = method, sensor
        self.label, self.multiple, self.samples = f"baseline {method}", 1, 1
        self.bands: list[str] | None = None  # every MS band the scene has
        self.ratio: int | None = None  # any ratio

    def start_scene(self, scene: Any) -> None:
        """Classical methods need no scene-wide state."""

    def fuse(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> list[np.ndarray]:
        from ddrf.baselines import fuse

        return [fuse(self.method, pan, ms, ms_ratio(pan, ms), self.sensor)[None] for pan, ms in pairs]

    def summary(self) -> dict[str, Any]:
        return {"kind": "baseline", "method": self.method, "sensor": self.sensor}


def ms_ratio(pan: np.ndarray, ms: np.ndarray) -> int:
    return pan.shape[0] // ms.shape[0]


@dataclass
class RunSettings:
    tile: int
    batch: int
    halo: int = DEFAULT_HALO
    cog: bool = False
    quicklook: bool = False
    overwrite: bool = False
    spread: bool = False  # write <name>_spread.tif (needs an engine with samples >= 2)
    progress: bool | None = None  # None: tqdm decides (a terminal)


@dataclass
class Outputs:
    """Final paths of one scene's files."""

    raster: Path
    report: Path
    spread: Path | None = None
    quicklook: Path | None = None

    @classmethod
    def for_raster(cls, raster: Path, spread: bool, quicklook: bool) -> "Outputs":
        stem = raster.with_suffix("")
        return cls(raster, stem.with_suffix(".json"),
                   stem.with_name(stem.name + "_spread.tif") if spread else None,
                   stem.with_name(stem.name + "_quicklook.png") if quicklook else None)

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


def output_nodata(scene: Any) -> float:
    """The input's nodata (MS first, then PAN), else 0."""
    for value in (scene.ms_nodata, scene.pan_nodata):
        if isinstance(value, (list, tuple)):
            value = next((v for v in value if v is not None), None)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
    return 0.0


def batched(items: Sequence[Window], size: int) -> Iterator[list[Window]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def plan_grid(scene: Any, engine: Engine, settings: RunSettings) -> TileGrid:
    align = math.lcm(int(scene.ratio), int(engine.multiple))
    return TileGrid.plan(scene.height, scene.width, settings.tile, settings.halo, align)


def check_fit(scene: Any, engine: Engine, path: str) -> None:
    if engine.ratio is not None and int(scene.ratio) != int(engine.ratio):
        raise ValueError(f"{path}: scene ratio {scene.ratio} but the model fuses ratio {engine.ratio}")
    if engine.bands is not None and len(scene.band_names) != len(engine.bands):
        raise ValueError(f"{path}: scene has {len(scene.band_names)} MS bands, the model needs {len(engine.bands)} "
                         f"({', '.join(engine.bands)})")


def window_outputs(engine: Engine, scene: Any, windows: list[Window], spread: bool,
                   timings: Timings) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read and fuse a batch of windows: (channels (H, W, B or 2B), valid) per window."""
    start = time.perf_counter()
    reads = [scene.read_pair(w.row, w.col, w.height, w.width) for w in windows]
    timings.read += time.perf_counter() - start
    start = time.perf_counter()
    fused = engine.fuse([(pan, ms) for pan, ms, _ in reads], [(w.row, w.col) for w in windows])
    timings.fuse += time.perf_counter() - start
    out = []
    for samples, (_, _, valid) in zip(fused, reads):
        channels = [samples[0]]
        if spread:
            channels.append(samples.std(axis=0, ddof=1))
        out.append((np.concatenate(channels, axis=-1), valid))
    return out


def fuse_into(scene: Any, engine: Engine, grid: TileGrid, settings: RunSettings, sinks: list[RasterSink],
              timings: Timings, tick: Callable[[int], None]) -> None:
    """Stream the scene through the engine into the sinks (main raster, then spread)."""
    bands = len(scene.band_names)
    blender = RowBlender(grid, bands * len(sinks))
    for final, windows in grid.bands():
        for chunk in batched(windows, settings.batch):
            results = window_outputs(engine, scene, chunk, settings.spread, timings)
            start = time.perf_counter()
            for window, (values, valid) in zip(chunk, results):
                blender.add(window, values, valid)
            timings.blend += time.perf_counter() - start
            tick(len(chunk))
        start = time.perf_counter()
        _, values, valid = blender.release(final)
        timings.blend += time.perf_counter() - start
        start = time.perf_counter()
        for k, sink in enumerate(sinks):
            if len(values):
                sink.write_rows(values[..., k * bands:(k + 1) * bands], valid)
        timings.write += time.perf_counter() - start


def open_sinks(scene: Any, outputs: Outputs, band_names: list[str], nodata: float) -> list[RasterSink]:
    profile = geotiff_profile(scene.height, scene.width, len(band_names), np.dtype(scene.dtype), scene.crs,
                              scene.transform, nodata)
    sinks = [RasterSink(outputs.raster, profile, band_names, scene.bits, {"DDRF_BITS": str(scene.bits)})]
    if outputs.spread is not None:
        spread = dict(profile, dtype="float32", nodata=float("nan"), predictor=3)
        sinks.append(RasterSink(outputs.spread, spread, [f"{n} spread" for n in band_names], None))
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


def publish_all(pending: list[tuple[Path, Path]], outputs: Outputs) -> None:
    """Rename everything into place; the main raster goes last, so its presence means the scene is complete."""
    try:
        for temp, final in sorted(pending, key=lambda p: p[1] == outputs.raster):
            publish(temp, final)
    finally:
        for temp, _ in pending:
            temp.unlink(missing_ok=True)


def tile_bar(total: int, name: str, settings: RunSettings) -> Any:
    from tqdm import tqdm

    disable = None if settings.progress is None else not settings.progress
    return tqdm(total=total, desc=f"{name} tiles", unit="tile", leave=False, disable=disable, position=1)


def process_scene(scene: Any, engine: Engine, outputs: Outputs, settings: RunSettings,
                  inputs: dict[str, Any]) -> dict[str, Any]:
    """Fuse one opened scene into `outputs`; returns its report. Nothing under a final name on failure."""
    check_fit(scene, engine, inputs.get("pan", scene.name))
    started, timings = time.perf_counter(), Timings()
    grid = plan_grid(scene, engine, settings)
    engine.start_scene(scene)
    band_names = list(engine.bands) if engine.bands else list(scene.band_names)
    for final in outputs.all():
        clean_stale(final)
    sinks = open_sinks(scene, outputs, band_names, output_nodata(scene))
    pending: list[tuple[Path, Path]] = []
    try:
        with tile_bar(grid.count, scene.name, settings) as bar:
            fuse_into(scene, engine, grid, settings, sinks, timings, bar.update)
        start = time.perf_counter()
        pending = seal(sinks, outputs, settings, band_names)
        timings.finish = time.perf_counter() - start
        report = reports.scene_report(scene, engine, grid, settings, outputs, inputs, timings,
                                      time.perf_counter() - started, band_names, output_nodata(scene))
        pending.insert(0, (reports.write_temp(report, outputs.report), outputs.report))
    except BaseException:
        for sink in sinks:
            sink.abort()
        for temp, _ in pending:
            temp.unlink(missing_ok=True)
        raise
    publish_all(pending, outputs)
    return report


def is_finished(outputs: Outputs) -> bool:
    """The main raster is renamed last, so its presence means the scene is complete."""
    return outputs.raster.is_file()


# --- jobs: what a CLI run or a Dask worker executes, one scene at a time ------------------------------------------


@dataclass(frozen=True)
class EngineSpec:
    """How to build the engine; hashable, so a process (a Dask worker) builds each one once."""

    model: str | None = None
    backend: str = "ort-cpu"
    steps: int | None = None
    seed: int = 0
    samples: int = 1
    method: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class SceneJob:
    """One scene: a directory (discovered) or explicit PAN and MS files, and where its outputs go."""

    name: str
    raster: Path
    directory: Path | None = None
    pan: Path | None = None
    ms: tuple[Path, ...] = ()

    @property
    def source(self) -> str:
        return str(self.directory or self.pan)

    def inputs(self) -> dict[str, Any]:
        if self.directory is not None:
            return {"directory": str(self.directory)}
        return {"pan": str(self.pan), "ms": [str(p) for p in self.ms]}


_FUSERS: dict[EngineSpec, Any] = {}  # per process: a worker loads each model once


def get_engine(spec: EngineSpec, sensor: str = "generic") -> Engine:
    if spec.method:
        return BaselineEngine(spec.method, sensor)
    key = EngineSpec(spec.model, spec.backend, spec.steps, 0, 1, None, spec.threads)
    if key not in _FUSERS:
        from ddrf.runtime.fuser import Fuser

        if spec.model is None:
            raise ValueError("no model given")
        _FUSERS[key] = Fuser(spec.model, spec.backend, spec.steps, threads=spec.threads)
    return ModelEngine(_FUSERS[key], spec.seed, spec.samples)


def open_scene(job: SceneJob, bands: list[str] | None) -> Any:
    from ddrf.scenes.discover import discover_scene, pair_from_paths, select_bands
    from ddrf.scenes.scene import Scene

    if job.directory is not None:
        files = discover_scene(job.directory)
    elif job.pan is not None:
        files = pair_from_paths(job.pan, list(job.ms))
    else:
        raise ValueError(f"{job.name}: neither a scene directory nor a PAN file")
    if bands is not None:
        files = select_bands(files, bands)
    return Scene(files)


def one_line(exc: BaseException, job: SceneJob) -> str:
    """The error as one line naming the file (prefixing the scene source when the message does not)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (ValueError, OSError)) or (job.source not in text and "/" not in text):
        text = f"{job.source}: {text if isinstance(exc, (ValueError, OSError)) else type(exc).__name__ + ': ' + text}"
    return text


def run_job(job: SceneJob, spec: EngineSpec, settings: RunSettings) -> dict[str, Any]:
    """Process one scene; never raises for a bad scene: returns {name, status, output, error?, seconds}."""
    outputs = Outputs.for_raster(job.raster, settings.spread, settings.quicklook)
    entry: dict[str, Any] = {"name": job.name, "source": job.source, "output": str(job.raster)}
    if is_finished(outputs) and not settings.overwrite:
        for final in outputs.all():
            clean_stale(final)
        return {**entry, "status": "skipped", "reason": "finished output exists (use --overwrite)"}
    started = time.perf_counter()
    try:
        engine = get_engine(spec)
        scene = open_scene(job, engine.bands)
        if spec.method:
            engine = get_engine(spec, getattr(scene, "sensor", "generic") or "generic")
        try:
            report = process_scene(scene, engine, outputs, settings, job.inputs())
        finally:
            close = getattr(scene, "close", None)
            if callable(close):
                close()
    except Exception as exc:  # a bad scene must not stop the others
        return {**entry, "status": "failed", "error": one_line(exc, job), "seconds": time.perf_counter() - started}
    return {**entry, "status": "done", "seconds": time.perf_counter() - started, "tiles": report["tiling"]["tiles"]}
