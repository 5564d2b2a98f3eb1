"""The local run loop shared by `ddrf-run SCENE...`, `--watch` and STAC Item input: one scene after another, each
followed by its STAC Item (and catalogue entry), with progress and results through a Reporter and SIGTERM honoured
at window boundaries (the scene in progress is abandoned: its temporaries removed, nothing published)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ddrf.scenes.engines import EngineSpec
from ddrf.scenes.jobs import SceneJob, gdal_cache, run_job
from ddrf.scenes.streaming import Outputs, RunSettings
from ddrf.scenes.progress import GracefulStop, Reporter, StopRequested


def output_files(job: SceneJob, settings: RunSettings) -> list[str]:
    """The scene's published files, main raster first."""
    from ddrf.scenes.stac_out import item_path

    outputs = Outputs.for_raster(job.raster, settings.spread, settings.quicklook)
    paths = [outputs.raster, outputs.report, item_path(job.raster), outputs.spread, outputs.quicklook]
    return [str(p) for p in paths if p is not None and p.is_file()]


def describe_outputs(entry: dict[str, Any], job: SceneJob, settings: RunSettings, catalog: Path | None,
                     source: Any = None, reporter: Reporter | None = None) -> dict[str, Any]:
    """After a done (or already finished) scene: write its STAC Item (if missing), link it into the catalogue (and
    say through `reporter` which links to Items gone since it dropped)."""
    from ddrf.scenes.stac_out import item_path, write_item

    if entry["status"] not in ("done", "skipped"):
        return entry
    item = item_path(job.raster)
    try:
        with gdal_cache():  # the Item's band statistics read the whole raster (decimated) through GDAL's cache
            if entry["status"] == "done" or not item.is_file():
                write_item(job.raster, source)
    except Exception as exc:  # the raster is published; say what is missing, the next run writes it
        return {**entry, "status": "failed", "error": f"{job.raster}: STAC Item not written "
                                                      f"({' '.join(str(exc).split())})"}
    problem = link_item(catalog, item, reporter) if catalog is not None else None
    if problem:
        return {**entry, "status": "failed", "error": problem}
    return {**entry, "files": output_files(job, settings)}


def link_item(catalog: Path, item: Path, reporter: Reporter | None) -> str | None:
    """Link the Item into the catalogue; None, or the one-line reason it is not linked (the next run links it)."""
    from ddrf.scenes.stac_out import add_to_catalog

    where = catalog / "catalog.json"
    try:
        dropped = add_to_catalog(catalog, item)
    except Exception as exc:  # a full disk, a catalogue another process broke since the checks: not the others
        return f"{where}: {item.name} not linked ({getattr(exc, 'strerror', None) or ' '.join(str(exc).split())})"
    if dropped and reporter is not None:
        reporter.emit("catalog", f"{where}: dropped the link(s) to {', '.join(dropped)}: gone (moved or deleted "
                      f"since)", path=str(where), dropped=dropped)
    return None


def abandoned(job: SceneJob, signal_name: str = "SIGTERM") -> dict[str, Any]:
    return {"name": job.name, "source": job.source, "output": str(job.raster), "status": "abandoned",
            "error": f"stopped by {signal_name} before it finished; nothing of it was published"}


def run_scene(job: SceneJob, spec: EngineSpec, settings: RunSettings, reporter: Reporter,
              catalog: Path | None, source: Any = None) -> dict[str, Any]:
    """One scene, its Item and its report line. Raises StopRequested when SIGTERM arrived during it.

    `source`: the pystac Item the scene came from (STAC input), for the output Item's datetime and lineage."""
    def say(text: str, **fields: Any) -> None:  # plan, time estimate, assumed band order: through the log format
        reporter.emit("note", text, scene=job.name, message=text, **fields)

    entry = run_job(job, spec, settings, reporter.tile_hook(job.name), say)
    entry = describe_outputs(entry, job, settings, catalog, source, reporter)
    reporter.scene(entry)
    return entry


def run_batch(jobs: list[SceneJob], spec: EngineSpec, settings: RunSettings, reporter: Reporter,
              catalog: Path | None, sources: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every job in order; after SIGTERM or Ctrl-C the scene in progress and those not started are `abandoned` (SIGTERM
    at a window boundary, Ctrl-C at once: its KeyboardInterrupt has unwound the scene's temporaries and lock), so that
    the run summary is written for this run."""
    from tqdm import tqdm

    from ddrf.scenes.stac_in import tidy_after

    entries: list[dict[str, Any]] = []
    with GracefulStop() as stop, tqdm(jobs, desc="scenes", unit="scene", position=0, file=sys.stderr,
                                      disable=None if reporter.bars is None else not reporter.bars) as bar:
        reporter.stop = stop
        interrupted: str | None = None
        for job in bar:
            if stop.requested or interrupted:
                entries.append(abandoned(job, interrupted or "SIGTERM"))
            else:
                try:
                    entries.append(run_scene(job, spec, settings, reporter, catalog, (sources or {}).get(job.name)))
                except (StopRequested, KeyboardInterrupt) as exc:
                    interrupted = "SIGINT" if isinstance(exc, KeyboardInterrupt) else None
                    entries.append(abandoned(job, interrupted or "SIGTERM"))
                    reporter.emit("stopping", f"{interrupted or 'SIGTERM'}: abandoned {job.name}, stopping",
                                  scene=job.name)
            tidy_after(entries[-1], job, job.name in (sources or {}))
    return entries
