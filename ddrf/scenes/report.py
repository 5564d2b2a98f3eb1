"""The JSON run report written beside every fused GeoTIFF, and the run summary of a many-scene run."""
from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ddrf.card import ModelCard
from ddrf.files import temp_path
from ddrf.geometry import nodata_json

REPORT_VERSION = 1


def versions() -> dict[str, str]:
    """Versions of what produced the numbers (absent packages omitted)."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("ddrf-edge", "numpy", "scipy", "rasterio", "onnxruntime", "onnxruntime-gpu", "dask", "distributed"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "rasterio" in sys.modules:
        found["gdal"] = sys.modules["rasterio"].__gdal_version__
    return found


def card_summary(card: ModelCard) -> dict[str, Any]:
    return {"bands": list(card.bands), "band_wise": card.band_wise, "guide_bands": list(card.guide_bands),
            "ratio": card.ratio,
            "sensor": card.sensor, "normalisation": asdict(card.normalisation), "target": card.target,
            "residual": card.residual, "sampling_steps": card.sampling_steps, "lms_border": card.lms_border,
            "model": card.model, "hashes": dict(card.hashes),
            "training": {k: card.training[k] for k in sorted(card.training)[:20]}}


def scene_files(scene: Any) -> dict[str, Any]:
    """The files discovery chose (PAN, MS file and band per MS band, metadata)."""
    files = getattr(scene, "files", None)
    if files is None:
        return {}
    from ddrf.files import STAC_WORK_DIR
    from ddrf.rasters import read_files

    given = [files.pan, *dict.fromkeys(p for p, _ in files.ms), *([files.metadata] if files.metadata else [])]
    # every file read, through VRTs too, but not the band wrappers ddrf writes anew for a STAC Item each run
    read = [f for f in dict.fromkeys(f for p in given for f in read_files(Path(p)))
            if STAC_WORK_DIR not in f.parts]
    return {"pan_file": str(files.pan), "ms_files": [[str(p), b] for p, b in files.ms],
            "metadata": str(files.metadata) if files.metadata else None, "scheme": files.scheme,
            "file_stamps": {str(p): file_stamp(p) for p in read},  # a later run tells a changed input by these
            "band_names_assumed": files.names_assumed,
            "bands_missing": {band: str(path) for band, path in files.missing.items()},
            "band_identity": files.band_source or ("assumed from the band count" if files.names_assumed
                                                   else f"{files.scheme} naming and metadata")}


def file_stamp(path: Path) -> list[int] | None:
    """[size, modification time in ns] of a file, None where it cannot be read: what tells a changed input."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def engine_summary(engine: Any, spread: bool) -> dict[str, Any]:
    """The engine's summary, its spread factor and whether that was fitted kept only beside the spread map they
    describe (an --ensemble run without --uncertainty writes the views' mean alone)."""
    summary = engine.summary()
    if not spread and "spread_factor" in summary:
        summary.update(spread_factor=None, spread_fitted=None)
    return summary


def scene_report(scene: Any, engine: Any, grid: Any, settings: Any, outputs: Any, inputs: dict[str, Any],
                 timings: Any, seconds: float, band_names: list[str], nodata: float,
                 clipped: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "report_version": REPORT_VERSION,
        "status": "done",
        "finished": now(),
        "scene": {"name": scene.name, "sensor": scene.sensor, "ratio": scene.ratio, "bits": scene.bits,
                  "dtype": str(scene.dtype), "height": scene.pan_height, "width": scene.pan_width,
                  "crs": str(scene.crs), "transform": list(scene.pan_transform)[:6],
                  "fused_window": {"row": scene.offset[0], "col": scene.offset[1], "height": scene.height,
                                   "width": scene.width},  # where the MS reaches; nodata outside
                  "band_names": list(scene.band_names)},
        "inputs": {**inputs, **scene_files(scene)},
        "engine": engine_summary(engine, outputs.spread is not None),
        "outputs": {"raster": str(outputs.raster), "spread": str(outputs.spread) if outputs.spread else None,
                    "quicklook": str(outputs.quicklook) if outputs.quicklook else None, "cog": settings.cog,
                    "band_names": band_names, "nodata": nodata_json(nodata), "dtype": str(scene.dtype),
                    "value_range": output_range(scene),
                    # valid pixels whose fused value fell outside value_range, per band (written clipped to it),
                    # and the output's valid pixels (a float output: those alone)
                    "clipped": clipped or {}},
        "tiling": {"tile": [grid.tile_rows, grid.tile_cols], "halo": grid.halo, "overlap": 2 * grid.halo,
                   # the model's own: a smaller halo makes the output depend on the tile (None: a baseline)
                   "model_halo": engine.halo if getattr(engine, "card", None) is not None else None,
                   "unweighted_border": grid.unweighted_border,
                   "align": grid.align, "tiles": grid.count,
                   "windows_fused": grid.fused_count(settings.chunk),  # chunk-border windows once per chunk
                   # windows per engine call, at most one row strip's; --batch as given beside it
                   "batch": grid.batch_used(settings.batch, settings.chunk), "batch_asked": settings.batch,
                   "chunk_columns": settings.chunk,
                   "blend": "each window side: weight 0 over its outer 3/4 halo, then a raised cosine up to 1 at "
                            "5/4 halo (scene padded by halo); normalised weighted sum"},
        # seconds; "read" and "prepare" (interp23, noise) run in the reader thread and "write" (released rows
        # quantised and flushed) in the writer thread, beside "fuse"; "finish" = last flush, COG copy, quicklook
        "timings_s": {"read": timings.read, "fuse": timings.fuse, "blend": timings.blend, "write": timings.write,
                      "finish": timings.finish, **timings.extra, "total": seconds},
        "software": versions(),
    }


def write_temp(report: dict[str, Any], final: Path) -> Path:
    """The report as a temporary file beside `final` (renamed with the rest of the scene's files)."""
    path = temp_path(final)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def naming_report(outputs: Any, where: bool = True) -> dict[str, Any] | None:
    """The report beside the raster when it is a ddrf report naming this raster (of any report version), else
    None: a raster without one is no ddrf-run output. `where=False`: by file name only (a finished output folder
    may have been moved since; its reports hold the paths they were written at)."""
    try:
        with open(outputs.report, encoding="utf-8") as f:
            report = json.loads(f.read(1 << 20))  # a report is a few kB; a larger file is no report
        named = Path(report["outputs"]["raster"])
        if named.absolute() == outputs.raster.absolute() or not where and named.name == outputs.raster.name:
            return report
    except (OSError, ValueError, LookupError, TypeError):  # absent, unreadable, not JSON, or JSON of another shape
        pass
    return None


def interrupted(outputs: Any, every: Any) -> list[Path]:
    """What a run killed between its renames left: its report (renamed first) and the spread map and quicklook it
    names, with no raster (renamed last, so never published) and no STAC Item (written after the raster). Empty
    unless the report is ddrf's own for this very raster, of this version and done: any other file there is the
    user's, replaced only with --overwrite. `every`: the raster's Outputs with every side file, the only ones that
    may go."""
    from ddrf.scenes.stac_out import item_path

    if outputs.raster.exists() or item_path(outputs.raster).exists():
        return []
    report = naming_report(outputs)
    if report is None or report.get("report_version") != REPORT_VERSION or report.get("status") != "done":
        return []
    return [outputs.report, *(side for side in named_sides(report, every).values() if side.is_file())]


def named_sides(report: dict[str, Any], every: Any) -> dict[str, Path]:
    """The side files ("spread", "quicklook" -> path) a report names that are the raster's own (`every`: its Outputs
    with every side file): what may go with the output the report describes."""
    named: dict[str, Any] = report["outputs"] if isinstance(report.get("outputs"), dict) else {}
    return {key: side for key, side in (("spread", every.spread), ("quicklook", every.quicklook))
            if side is not None and isinstance(named.get(key), str) and Path(named[key]).absolute() == side.absolute()}


def write_summary(path: Path, entries: list[dict[str, Any]], settings: dict[str, Any],
                  started: str | None = None) -> None:
    """The run summary (one entry per scene: done / skipped / failed with its error), this run's at the top level.

    Two runs into one folder at once (two cron jobs) must not lose either record: under a lock, the summary of a run
    that finished after this one `started` is kept in `concurrent_runs`; one finished before it is replaced."""
    from ddrf.files import NoLocks, exclusive, write_text_atomic

    counts = {s: sum(e["status"] == s for e in entries) for s in ("done", "skipped", "failed", "abandoned")}
    started = started or now()
    body = {"report_version": REPORT_VERSION, "started": started, "finished": now(), "counts": counts,
            "settings": settings, "scenes": entries, "software": versions(), "concurrent_runs": []}
    try:
        with exclusive(path, wait=True):  # the read and the replace as one step against the other run
            body["concurrent_runs"] = concurrent_runs(path, started)
            write_text_atomic(path, json.dumps(body, indent=2, default=str) + "\n")
    except NoLocks:  # a file system without locks (each scene said so): the summary still records the run, alone
        write_text_atomic(path, json.dumps(body, indent=2, default=str) + "\n")


def concurrent_runs(path: Path, started: str) -> list[dict[str, Any]]:
    """The summaries in the run summary at `path` (its own run and the concurrent runs it keeps) that finished at or
    after `started` (ISO UTC, to the second, so a tie is kept); none where it is missing or not a summary."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(earlier, dict):
        return []
    kept = earlier.pop("concurrent_runs", [])
    runs = [earlier, *(kept if isinstance(kept, list) else [])]
    return [r for r in runs if isinstance(r, dict) and str(r.get("finished", "")) >= started]


def output_range(scene: Any) -> list[int] | None:
    """What the output's integer type holds (the writer clips to it); None for floats."""
    from ddrf.scenes.writer import value_range

    bounds = value_range(scene.dtype, scene.bits)
    return [int(v) for v in bounds] if bounds else None
