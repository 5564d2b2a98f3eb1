"""The job loop: one scene at a time (a CLI run or a Dask task), with resume, atomic publication and reports.

A scene whose main raster exists is finished (it is renamed last) and skipped unless --overwrite; a bad scene is a
"failed" entry with a one-line error, never an exception that stops the others. Never imports torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddrf.files import clean_stale, publish_all
from ddrf.scenes import report as reports
from ddrf.scenes.engines import Engine, EngineSpec, get_engine
from ddrf.scenes.streaming import (Outputs, RunSettings, Timings, check_fit, fuse_into, open_sinks, output_nodata,
                                   plan_grid, seal, tile_bar)

if TYPE_CHECKING:
    from ddrf.scenes.scene import Scene


def process_scene(scene: "Scene", engine: Engine, outputs: Outputs, settings: RunSettings,
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
        with tile_bar(grid.fused_count(settings.chunk), scene.name, settings) as bar:
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
    # the main raster goes last, so its presence means the scene is complete
    publish_all(sorted(pending, key=lambda p: p[1] == outputs.raster))
    return report


def is_finished(outputs: Outputs) -> bool:
    """The main raster is renamed last, so its presence means the scene is complete."""
    return outputs.raster.is_file()


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


def open_scene(job: SceneJob, bands: list[str] | None) -> "Scene":
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
