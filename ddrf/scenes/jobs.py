"""The job loop: one scene at a time (a CLI run or a Dask task), with resume, atomic publication and reports.

A scene whose main raster exists is finished (it is renamed last) and skipped unless --overwrite; a bad scene is a
"failed" entry with a one-line error, never an exception that stops the others. Never imports torch.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from ddrf.files import (Busy, clean_stale, exclusive, name_too_long, nearest_existing, publish_all,
                        same_file)
from ddrf.geometry import ConstantBand, constant_fact
from ddrf.rasters import read_files
from ddrf.saturation import RESTORED
from ddrf.scenes import report as reports
from ddrf.scenes.engines import Engine, EngineSpec, ModelEngine, check_fit, get_engine
from ddrf.scenes.errors import SceneError
from ddrf.scenes.streaming import (Outputs, RunSettings, Timings, for_band_count, fuse_into, open_sinks,
                                   output_nodata, plan_grid, resolved_window, seal, tile_advice, tile_bar)
from ddrf.scenes.tiling import TileGrid, least_tile, round_up
from ddrf.sensors import find_sensor, listed_bands

if TYPE_CHECKING:
    from ddrf.scenes.scene import Scene

def plan_scene(scene: "Scene", engine: Engine, outputs: Outputs, settings: RunSettings) -> dict[str, Any]:
    """What the scene will cost: windows, output size (uncompressed, the worst case) and the free disk space; and
    the settings it runs with (windows and column chunks of many-band scenes narrowed: `for_band_count`)."""
    bands = len(engine.bands) if engine.bands else len(scene.band_names)
    settings = for_band_count(settings, engine, bands)
    grid = plan_grid(scene, engine, settings)
    per_pixel = bands * np.dtype(scene.dtype).itemsize + (bands * 4 if outputs.spread else 0)
    tile = round_up(resolved_window(settings, engine)[0], grid.align)  # the side asked for, before any shrinking
    return {"grid": grid, "settings": settings, "tiles": grid.count, "tile": tile, "height": scene.pan_height,
            "width": scene.pan_width,
            "output_bytes": scene.pan_height * scene.pan_width * per_pixel,
            "free_bytes": shutil.disk_usage(nearest_existing(outputs.raster.parent)).free,  # a dry run makes nothing
            **scene_maps_plan(scene, engine)}


def scene_maps_plan(scene: "Scene", engine: Engine) -> dict[str, Any]:
    """A staged run's scene maps where they go to TMPDIR (ddrf.scenes.staged): their size, the folder and its free
    space; nothing where the engine runs no stages or the maps stay in memory."""
    if not getattr(engine, "staged", False):
        return {}
    from ddrf.scenes.staged import maps_on_disk

    size = maps_on_disk(scene, engine.fuser, len(engine.members))  # type: ignore[attr-defined]  # a ModelEngine
    folder = tempfile.gettempdir()
    return {"map_bytes": size, "map_folder": folder, "map_free_bytes": shutil.disk_usage(folder).free} if size else {}


def fits_on_disk(plan: dict[str, Any]) -> bool:
    """Whether the output and a staged run's maps each fit where they go."""
    return plan["output_bytes"] <= plan["free_bytes"] and plan.get("map_bytes", 0) <= plan.get("map_free_bytes", 0)


def size_text(count: int) -> str:
    """Bytes in the unit that shows them: '512 kB', '3.4 MB', '1.25 GB' (a tiny disk or output is not '0.00 GB')."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def describe_plan(name: str, plan: dict[str, Any]) -> str:
    grid = plan["grid"]
    windows = "1 window" if plan["tiles"] == 1 else f"{plan['tiles']} windows"
    return (f"{name}: {plan['height']} x {plan['width']} PAN px, {windows} of "
            f"{grid.tile_rows} x {grid.tile_cols} (halo {grid.halo}), output up to {size_text(plan['output_bytes'])} "
            f"uncompressed, {size_text(plan['free_bytes'])} free{maps_text(plan)}")


def maps_text(plan: dict[str, Any]) -> str:
    if not plan.get("map_bytes"):
        return ""
    return (f"; scene maps {size_text(plan['map_bytes'])} in {plan['map_folder']} (TMPDIR), "
            f"{size_text(plan['map_free_bytes'])} free")


HALO_COST_SAID = 2.0  # the engine's work with the tile asked, over its work with `least_tile`, worth a line


def halo_cost(name: str, plan: dict[str, Any], engine: Engine) -> list[str]:
    """One line when the tile asked is under `least_tile` and its windows make the model compute more than
    HALO_COST_SAID times what windows of that side would on this scene: how much, and the tile that avoids it. The
    run keeps the tile asked (a small one may be wanted for memory); without the line, 2048 windows of 200 px that keep
    8 x 8 px each took minutes where the default took seconds, with no word of why."""
    grid, chunk = plan["grid"], plan["settings"].chunk
    least = least_tile(grid.halo, grid.align)
    if plan["tile"] >= least or grid.count == 1:
        return []
    better = TileGrid.plan(grid.height, grid.width, least, grid.halo, grid.align)
    work, less, pixels = grid.work(chunk), better.work(chunk), grid.height * grid.width
    if work <= HALO_COST_SAID * less:
        return []
    who = "model" if getattr(engine, "card", None) is not None else "method"  # a baseline has no card
    return [f"{name}: windows of {grid.tile_rows} x {grid.tile_cols} px keep {grid.tile_rows - 2 * grid.halo} x "
            f"{grid.tile_cols - 2 * grid.halo} px each inside the halo of {grid.halo}: the {who} computes "
            f"{grid.count} windows, {work / pixels:.0f}x the scene's pixels; with {tile_advice(engine, least)}: "
            f"{better.count} windows, {less / pixels:.1f}x ({work / less:.0f}x less work)"]


def check_room(plan: dict[str, Any], outputs: Outputs) -> None:
    if plan["output_bytes"] > plan["free_bytes"]:
        raise ValueError(f"{outputs.raster}: the output needs up to {size_text(plan['output_bytes'])} but "
                         f"{outputs.raster.parent} has {size_text(plan['free_bytes'])} free; nothing written")


def estimate_after_first_batch(name: str, total: int, started: float, update: Callable[[int], None],
                               say: Callable[[str], None]) -> Callable[[int], None]:
    """Progress callback that also says, once, how long the scene should take: measured on its second batch, as the
    first also pays for the first read and the backend's warm-up (3.4 s against 0.8 s per window on a 42-window
    ratio-4 scene); a scene of one or two batches says nothing."""
    done, first_done = [0], [0.0]

    def tick(n: int) -> None:
        now = time.perf_counter()
        if done[0] == 0:
            first_done[0] = now
        elif first_done[0] and total > done[0] + n:
            elapsed, per_tile = now - started, (now - first_done[0]) / n
            say(f"{name}: first {done[0] + n} window(s) took {elapsed:.1f} s; about "
                f"{(elapsed + per_tile * (total - done[0] - n)) / 60:.1f} min for {total} windows")
            first_done[0] = 0.0
        done[0] += n
        update(n)

    return tick


def constant_inputs(scene: "Scene") -> list[tuple[str, dict[str, Any]]]:
    """One line per input file with bands constant over the scene's preview (`Scene.constant_bands`), with the JSON
    log's fields (every such band, the line naming their runs): a PAN (a failed download, a fill-only file) leaves
    the output the upsampled MS with no PAN detail, a dead MS band an output band with nothing of that band in it;
    both look plausible, so they are said. A preview with no valid pixel is left to the checks that refuse it."""
    constant_bands = getattr(scene, "constant_bands", None)
    if not callable(constant_bands):
        return []
    try:
        found = constant_bands()
    except SceneError:
        return []
    return [(f"{constant_fact(path, bands)}; {constant_loss(bands)}: check the file",
             {"constant_bands": [{"file": str(path), "band": band, "name": name, "value": value}
                                 for band, name, value in bands]})
            for path, bands in found]


def constant_loss(bands: list[ConstantBand]) -> str:
    """What the output of a file's constant bands lacks."""
    if len(bands) > 1:
        return f"those {len(bands)} bands of the output have no MS content"
    name = bands[0][1]
    return "the output has no PAN detail" if name is None else f"the output's {name} band has no MS content"


def partial_cover(scene: "Scene") -> list[str]:
    """One line when the MS covers only part of the PAN (more than one MS pixel short on some side): the output is
    the fused overlap with nodata around it on the PAN grid, which could pass for a fusion that failed there."""
    pan_height, files = getattr(scene, "pan_height", None), getattr(scene, "files", None)
    if pan_height is None or files is None:
        return []
    (row0, col0), pan_width = scene.offset, scene.pan_width
    short = max(row0, col0, pan_height - row0 - scene.height, pan_width - col0 - scene.width)
    if short <= scene.ratio:
        return []
    share = 100 * scene.height * scene.width / (pan_height * pan_width)
    return [f"{files.ms[0][0]}: the MS covers {share:.1f} % of the PAN {files.pan.name} (rows {row0}-"
            f"{row0 + scene.height - 1} of {pan_height}, columns {col0}-{col0 + scene.width - 1} of {pan_width}); "
            "the output is nodata elsewhere"]


def sensor_ratio(scene: "Scene") -> list[str]:
    """One line when the scene's sensor (--sensor, or its product's metadata) has another PAN/MS ratio than its files:
    the classical methods' MTF gains and the report's band edges are that sensor's, at its own sampling, so either
    the files were resampled or the sensor is another. Fused as asked, since a resampled product is legitimate; the
    generic sensor has no ratio of its own."""
    found, files = find_sensor(scene.sensor or ""), getattr(scene, "files", None)
    if found is None or found.name == "generic" or files is None or int(found.ratio) == int(scene.ratio):
        return []
    return [f"{files.ms[0][0]}: ratio {scene.ratio} to the PAN {files.pan.name}, but {found.name} is a "
            f"ratio-{found.ratio} sensor: its MTF gains and band edges are used as they are (files resampled, or "
            "another sensor? --sensor names it)"]


SATURATED_SHARE_SAID = 0.1  # % of a file's valid pixels at its ceiling worth a line (training scenes: under 0.08 %)


def preview_files(scene: "Scene") -> list[tuple[str, np.ndarray]]:
    """(name, valid preview values) of the PAN file, then of each MS band (`ms.tif (red)`); none where the scene has
    no files or its preview has no valid pixel (left to the checks that refuse it)."""
    files = getattr(scene, "files", None)
    if files is None:
        return []
    try:
        pan, pan_valid, ms, ms_valid = scene.preview()
    except SceneError:
        return []
    return [(files.pan.name, pan[pan_valid])] + [(f"{Path(path).name} ({name})", ms[..., i][ms_valid])
                                                 for i, ((path, _), name) in enumerate(zip(files.ms, scene.band_names))]


def file_ceilings(scene: "Scene", count: int) -> list[float | None]:
    """The ceiling of each of `preview_files`' `count` entries: the PAN's, then the MS's for every band."""
    ms_ceiling, pan_ceiling = getattr(scene, "ceilings", None) or (None, None)
    return [pan_ceiling] + [ms_ceiling] * (count - 1)


def shares_said(files: list[tuple[str, np.ndarray]], flagged: Callable[[int, np.ndarray], np.ndarray],
                threshold: float, digits: str = ".1f") -> list[str]:
    """`NAME X %` for each preview file whose share of valid pixels `flagged(index, values)` is over `threshold` %."""
    shares = [(file, 100 * float(np.mean(flagged(i, values)))) for i, (file, values) in enumerate(files) if values.size]
    return [f"{file} {share:{digits}} %" for file, share in shares if share > threshold]


def saturated_inputs(scene: "Scene", files: list[tuple[str, np.ndarray]], model: bool, name: str) -> list[str]:
    """One line naming the files with more than SATURATED_SHARE_SAID % of their valid (preview) pixels at the
    file's ceiling (clouds, snow) and, for a model, what the output says there (ddrf.saturation); `name`: the
    scene's, as the run's other lines give it."""
    ceilings = file_ceilings(scene, len(files))
    said = shares_said(files, lambda i, values: values >= (np.inf if ceilings[i] is None else ceilings[i]),
                       SATURATED_SHARE_SAID)
    if not said:
        return []
    # the files by their names, so the scene's name says whose they are (scene folders each hold a pan.tif)
    line = f"{name}: saturated pixels (at the file's largest value: clouds or snow?): {', '.join(said)}"
    return [line + (f"; the output there is {RESTORED}" if model else "")]


def outlier_inputs(scene: "Scene", files: list[tuple[str, np.ndarray]], engine: Engine, name: str) -> list[str]:
    """One line naming the files with preview pixels past the engine's outlier bounds (ddrf.saturation): they are
    kept from the network or method, and the output there is the upsampled MS, so a bright island in a dark sea
    would lose its PAN detail: said, not silent. Saturated pixels have their own fill and line."""
    from ddrf.saturation import outlier_bounds

    outliers = getattr(engine, "outliers", lambda: None)()
    if outliers is None or not files:
        return []
    pan_bounds, ms_bounds = outlier_bounds(*outliers)
    bounds = [pan_bounds] + list(ms_bounds.T)
    ceilings = [np.inf if c is None else c for c in file_ceilings(scene, len(files))]
    said = shares_said(files, lambda i, values: ((values < bounds[i][0]) | (values > bounds[i][1]))
                       & (values < ceilings[i]), 0.0, ".2g")
    if not said:
        return []
    return [f"{name}: values far outside the scene's range (strays or an untagged fill?): {', '.join(said)} of the "
            f"preview; they are kept from the {'network' if isinstance(engine, ModelEngine) else 'method'} and "
            "the output there is the upsampled MS"]


NON_POSITIVE_SHARE_SAID = 0.1  # % of a file's valid (preview) pixels at or below 0 worth a line, for a dividing method


def non_positive_inputs(files: list[tuple[str, np.ndarray]], method: str | None) -> list[str]:
    """One line naming the files with more than NON_POSITIVE_SHARE_SAID % of their valid (preview) pixels at or below
    0 (over-corrected reflectance) when the method divides by the data (ddrf.baselines.DIVIDING): near them its
    output reached -60 to 90 for reflectance of -0.2 to 0.55, which the output would hold silently."""
    from ddrf.baselines import DIVIDING

    if method not in DIVIDING:
        return []
    said = shares_said(files, lambda _, values: values <= 0, NON_POSITIVE_SHARE_SAID)
    if not said:
        return []
    return [f"values at or below 0 (over-corrected reflectance?): {', '.join(said)}; {method} divides by the data, "
            "so its output can be far off near them: GSA, MTF-GLP-FS or MTF-GLP-HPM-robust do not"]


CLIPPED_SHARE_SAID = 0.1  # % of a band's valid output pixels clipped to the output type's range worth a line


def clipped_outputs(sink: Any, band_names: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The report's count of valid output pixels clipped to the raster's value range, per band, and a line naming
    the bands where more than CLIPPED_SHARE_SAID % were (a fused value the file cannot hold is not silently lost).
    A float output clips nothing, but its count of valid pixels is still the report's."""
    if sink.limits is None:
        return {"valid_pixels": sink.valid_pixels}, []
    below, above = (dict(zip(band_names, map(int, counts))) for counts in sink.clipped)
    share = 100 * sink.clipped / max(sink.valid_pixels, 1)
    said = [f"{name} {share[side, i]:.2f} % {word}" for side, word in enumerate(("below", "above"))
            for i, name in enumerate(band_names) if share[side, i] > CLIPPED_SHARE_SAID]
    low, high = (f"{v:g}" for v in sink.limits)
    lines = [f"fused values outside the output's range {low}..{high} were clipped: {', '.join(said)}"] if said else []
    return {"below": below, "above": above, "valid_pixels": sink.valid_pixels, "warnings": lines}, lines


class Say(Protocol):
    """A line for the operator; `fields`: what a JSON log record holds beside it (the text may abridge them)."""

    def __call__(self, text: str, **fields: Any) -> None: ...


TileHook = Callable[[int, int], None]  # (windows just fused, windows in the scene); may raise to abandon the scene


def process_scene(scene: "Scene", engine: Engine, outputs: Outputs, settings: RunSettings,
                  inputs: dict[str, Any], on_tiles: TileHook | None = None,
                  say: Say = lambda text, **fields: None, name: str | None = None) -> dict[str, Any]:
    """Fuse one opened scene into `outputs`; returns its report. Nothing under a final name on failure. `name`: how
    the lines name the scene, as the run's other lines do (its folder; default the scene's own name, which for a
    Landsat scene is the MTL's product id)."""
    name = name or scene.name
    check_fit(scene, engine, inputs.get("pan") or inputs.get("directory") or name)  # as the job's other errors
    files = scene.files
    check_not_inputs([p for p in [files.pan, *(path for path, _ in files.ms), files.metadata] if p is not None],
                     outputs, name)
    started, timings = time.perf_counter(), Timings()
    plan = plan_scene(scene, engine, outputs, settings)
    settings = plan["settings"]
    say(describe_plan(name, plan))
    for line in halo_cost(name, plan, engine):
        say(line)
    check_room(plan, outputs)
    grid = plan["grid"]
    start = time.perf_counter()
    engine.start_scene(scene, grid.unweighted_border)
    # the scene's statistics, and a staged model's stages 1 and 2 over the whole scene (ddrf.scenes.staged)
    timings.extra["scene_pass"] = time.perf_counter() - start
    # after start_scene: its refusals (no valid pixel) come first, as before
    previewed = preview_files(scene)  # each file's valid preview values, for the checks of their shares
    constant = constant_inputs(scene)
    warnings = (sensor_ratio(scene) + partial_cover(scene) + [line for line, _ in constant]
                + saturated_inputs(scene, previewed, isinstance(engine, ModelEngine), name)
                + non_positive_inputs(previewed, getattr(engine, "method", None))
                + outlier_inputs(scene, previewed, engine, name))
    fields = dict(constant)
    for line in warnings:
        say(line, **fields.get(line, {}))
    inputs = {**inputs, "warnings": warnings}
    band_names = list(engine.bands) if engine.bands else list(scene.band_names)
    for final in outputs.all():
        clean_stale(final)
    sinks = open_sinks(scene, outputs, band_names, output_nodata(scene))
    pending: list[tuple[Path, Path]] = []
    try:
        total = grid.fused_count(settings.chunk)
        with tile_bar(total, name, settings) as bar:
            progress = estimate_after_first_batch(name, total, time.perf_counter(), bar.update, say)

            def tick(done: int) -> None:
                progress(done)
                if on_tiles is not None:
                    on_tiles(done, total)

            fuse_into(scene, engine, grid, settings, sinks, timings, tick)
        start = time.perf_counter()
        pending = seal(sinks, outputs, settings, band_names)
        timings.finish = time.perf_counter() - start
        clipped, lines = clipped_outputs(sinks[0], band_names)
        for line in lines:
            say(f"{name}: {line}")
        report = reports.scene_report(scene, engine, grid, settings, outputs, inputs, timings,
                                      time.perf_counter() - started, band_names, output_nodata(scene), clipped)
        pending.insert(0, (reports.write_temp(report, outputs.report), outputs.report))
    except BaseException:
        for sink in sinks:
            sink.abort()
        for temp, _ in pending:
            temp.unlink(missing_ok=True)
        raise
    if settings.overwrite:
        retire_finished(outputs)
    # the main raster goes last, so its presence means the scene is complete
    publish_all(sorted(pending, key=lambda p: p[1] == outputs.raster))
    return report


def retire_finished(outputs: Outputs) -> None:
    """Before an --overwrite run's first rename: remove the raster (renamed last) and STAC Item (written after it)
    of the output it replaces, so that a kill between the renames leaves an interrupted run, redone by the next run
    without --overwrite, never a new report beside the old raster (which would look finished). The spread map and
    quicklook the old report names go too when this run writes none: beside the new raster they would pass for its
    own."""
    from ddrf.scenes.stac_out import item_path

    sides = reports.named_sides(reports.naming_report(outputs) or {}, Outputs.for_raster(outputs.raster, True, True))
    stale = [side for key, side in sides.items() if getattr(outputs, key) is None]  # this run writes none of its own
    for old in (outputs.raster, item_path(outputs.raster), *stale):
        old.unlink(missing_ok=True)


def published(outputs: Outputs) -> list[Path]:
    """Every file a scene publishes: its raster and side files, and the STAC Item written after them."""
    from ddrf.scenes.stac_out import item_path

    return [*outputs.all(), item_path(outputs.raster)]


def unnamable(outputs: Outputs) -> str | None:
    """Why the longest name of the files the scene publishes cannot be written (`name_too_long`), or None: said
    before any work, rather than after the fusion by GDAL naming a temporary (or a STAC Item failing beside a
    published raster)."""
    return name_too_long(max(published(outputs), key=lambda path: len(os.fsencode(path.name))))


def output_that_is_input(outputs: Outputs, inputs: list[Path]) -> Path | None:
    """The first output that is one of `inputs` (the same path, a link to it, or a hard link: the same file):
    writing it would destroy an input."""
    return next((final for final in published(outputs) if any(same_file(final, p) for p in inputs)), None)


def check_not_inputs(given: list[Path], outputs: Outputs, name: str) -> None:
    """No output may be an input file or a file GDAL reads through one (a VRT's source, an .aux.xml)."""
    clash = output_that_is_input(outputs, [f for p in dict.fromkeys(given) for f in read_files(p)])
    if clash is not None:
        raise ValueError(f"{clash}: is an input of scene {name}; choose another output path")


def finished_differences(report: dict[str, Any], job: SceneJob, spec: EngineSpec, outputs: Outputs) -> list[str]:
    """What a finished output's report says was done otherwise than this run asks (inputs and their contents,
    method or model, seed, samples, steps, views, --statistics-from, side files): skipped as finished, it would hold
    other pixels than those asked for."""
    from ddrf.bundled import model_folder

    engine, changed = report.get("engine", {}), []
    if _input_paths(report.get("inputs", {})) != _input_paths(job.inputs()):
        changed.append("inputs")
    stamps = report.get("inputs", {}).get("file_stamps") or {}
    modified = [Path(f).name for f, stamp in stamps.items() if reports.file_stamp(Path(f)) != stamp]
    if modified:  # the same paths, other contents: a delivery replaced since
        more = " ..." if len(modified) > 3 else ""
        changed.append(f"input contents ({', '.join(modified[:3])}{more} changed since)")
    changed += _naming_changed(report, job)
    if (spec.method or "a model") != (engine.get("method") or "a model"):
        changed.append(f"method ({engine.get('method') or 'a model'}, asked {spec.method or 'a model'})")
    elif not spec.method:
        done = {**engine, "views": engine.get("views") is not None}
        default_steps = engine.get("card", {}).get("sampling_steps")  # no --steps: the (same) card's default
        asked = {"seed": spec.seed, "samples": spec.samples, "steps": spec.steps or default_steps, "views": spec.views}
        changed += [f"{key} ({done.get(key)}, asked {value})" for key, value in asked.items()
                    if value is not None and done.get(key) != value]
        path = engine.get("model", {}).get("path")
        if spec.model is not None and (path is None or Path(path).resolve() != model_folder(spec.model).resolve()):
            changed.append(f"model ({path}, asked {spec.model})")
        elif spec.model is not None:
            changed += _card_changed(engine.get("card_sha256"), spec.model)
        done_from = _statistics_source(engine.get("statistics_from"), job)
        asked_from = _statistics_source(spec.statistics_from.directory if spec.statistics_from else None, job)
        if done_from != asked_from:  # another scene's normalisation: other pixels (row seams in a mosaic)
            changed.append(f"statistics (from {done_from or 'its own scene'}, asked {asked_from or 'its own scene'})")
    return changed + _missing_sides(report, outputs)


def _naming_changed(report: dict[str, Any], job: SceneJob) -> list[str]:
    """The names this run gives the scene's MS bands (--bands, --sensor, descriptions) and its sensor, against those
    the output was made with: another band order feeds the model other bands, a method other MTF gains. Files the
    report does not name (a dry run's temporary band wrappers) are not compared."""
    scene = report.get("scene", {})
    done = {(str(p), b): n for (p, b), n in zip(report.get("inputs", {}).get("ms_files", []),
                                                scene.get("band_names", []))}
    try:
        files = scene_files(job)
    except Exception:  # noqa: BLE001  (the run itself says what is wrong with the scene)
        return []
    asked = {(str(p), b): n for (p, b), n in zip(files.ms, files.band_names)}
    renamed = [f"{Path(key[0]).name} band {key[1]}: {name}, asked {asked[key]}" for key, name in done.items()
               if asked.get(key, name) != name]
    more = " ..." if len(renamed) > 2 else ""
    changed = [f"band names ({'; '.join(renamed[:2])}{more})"] if renamed else []
    if scene.get("sensor") is not None and scene["sensor"] != files.sensor:
        changed.append(f"sensor ({scene['sensor']}, asked {files.sensor})")
    return changed


def _card_changed(done: str | None, model: str) -> list[str]:
    """The model folder's card.json (which records every graph's sha256) rewritten since the output was made (a
    re-export, a fine-tune or a refitted spread into the same folder): other pixels or another spread. Reports
    without the card's sha256 are not judged."""
    from ddrf.runtime.fuser import model_identity

    now = model_identity(model)[1]
    return [f"model card (card.json changed since: sha256 {done[:12]}, now {now[:12]})"] if done and done != now else []


def _statistics_source(directory: str | None, job: SceneJob) -> Path | None:
    """The --statistics-from scene as a resolved path; None for the scene's own statistics (also when it names the
    scene itself, which gives the plain run's pixels)."""
    source = Path(directory).resolve() if directory else None
    return None if source is not None and job.directory is not None and source == job.directory.resolve() else source


def _input_paths(inputs: dict[str, Any]) -> list[Path]:
    return [Path(p).resolve() for p in (inputs.get("directory"), inputs.get("pan"), *inputs.get("ms", [])) if p]


def _missing_sides(report: dict[str, Any], outputs: Outputs) -> list[str]:
    named = report.get("outputs", {})
    return [f"side files (no {key} map written, asked for one)" for key, wanted in
            (("spread", outputs.spread), ("quicklook", outputs.quicklook)) if wanted is not None and not named.get(key)]


def is_finished(outputs: Outputs) -> bool:
    """The main raster is renamed last, so its presence means the scene is complete."""
    return outputs.raster.is_file()


def check_outputs_free(outputs: Outputs, overwrite: bool) -> None:
    """For a scene not finished: no output path may be a directory, and a side file beside a missing raster is
    no finished run's output but the user's, replaced only with --overwrite."""
    for path in published(outputs):
        if path.is_dir():
            raise ValueError(f"{path}: is a directory, where this scene would write a file; choose another output")
        if path.exists() and not overwrite and path != outputs.raster:
            raise ValueError(f"{path}: exists, but {outputs.raster.name} does not, so it is no finished output; "
                             "use --overwrite to replace it")


CORE_BANDS = {"blue", "green", "red", "nir"}  # a scene missing one of these is said to be incomplete


@dataclass(frozen=True)
class SceneJob:
    """One scene: a directory (discovered) or explicit PAN and MS files, and where its outputs go."""

    name: str
    raster: Path
    directory: Path | None = None
    pan: Path | None = None
    ms: tuple[Path, ...] = ()
    bands: tuple[str, ...] = ()  # --bands: the MS band names in file order (where nothing else names them)
    sensor: str | None = None  # --sensor: the sensor, and band names by count where nothing else names them
    wraps: tuple[tuple[Path, str], ...] = ()  # STAC Item input: (band wrapper VRT, the asset file it wraps)
    item: str | None = None  # STAC Item input: the Item as given (a path or URL)
    problem: str | None = None  # STAC Item input: why the scene cannot open (an asset unreadable); it fails alone

    @property
    def source(self) -> str:
        """What the user gave: the scene directory, the Item (not its band wrappers, which a failure removes) or
        the PAN file."""
        return str(self.directory or self.item or self.pan)

    def inputs(self) -> dict[str, Any]:
        if self.directory is not None:
            return {"directory": str(self.directory)}
        return {"pan": str(self.pan), "ms": [str(p) for p in self.ms]}


def scene_files(job: SceneJob) -> Any:
    """The job's discovered (or given) files, with --sensor and --bands where given."""
    from ddrf.scenes.discover import discover_scene, name_scene, pair_from_paths

    if job.problem is not None:
        raise ValueError(job.problem)
    if job.directory is not None:
        files = discover_scene(job.directory)
    elif job.pan is not None:
        files = pair_from_paths(job.pan, list(job.ms))
        if job.item is not None:  # named by its Item, not by its PAN band wrapper (pan.vrt)
            files = replace(files, name=job.name)
    else:
        raise ValueError(f"{job.name}: neither a scene directory nor a PAN file")
    return name_scene(files, job.sensor, job.bands)


def open_scene(job: SceneJob, bands: list[str] | None, files: Any = None) -> "Scene":
    from ddrf.scenes.discover import select_bands
    from ddrf.scenes.scene import Scene

    files = files or scene_files(job)
    return Scene(select_bands(files, bands) if bands is not None else files)


def open_with_engine(job: SceneJob, spec: EngineSpec) -> tuple["Scene", Engine]:
    """The scene and its engine: the model or method given, or else the bundled model that fits the scene."""
    if spec.model is None and not spec.method:
        return open_with_bundled_model(job, spec)
    engine = get_engine(spec)
    scene = open_scene(job, engine.bands)
    if spec.method:
        engine = get_engine(spec, getattr(scene, "sensor", "generic") or "generic")
    return scene, engine


def bundled_model_for(job: SceneJob, files: Any = None, models: list[Any] | None = None) -> Any:
    """The bundled model that fits the scene, by its ratio (from the PAN and its first MS band, so bands no model
    uses are never read) and its band names; `models`: the bundled ones to choose from (default: all)."""
    from ddrf.bundled import choose_model

    files = files or scene_files(job)
    probe = open_scene(job, files.band_names[:1], files) if files.band_names else open_scene(job, None, files)
    return choose_model(job.source, probe.ratio, files.band_names, len(files.band_names), files.sensor, models)


def bundled_models_needed(jobs: list[SceneJob], models: list[Any]) -> list[Any]:
    """The bundled models (of `models`) these scenes will get, each once: what ddrf-run loads before they run. A
    scene whose choice fails here (unreadable, or no model fits) is left out: it fails on its own line when it runs."""
    needed: dict[str, Any] = {}
    for job in jobs:
        try:
            chosen = bundled_model_for(job, models=models)
        except Exception:  # noqa: BLE001  (the scene's own run reports it)
            continue
        needed.setdefault(chosen.name, chosen)
    return list(needed.values())


def open_with_bundled_model(job: SceneJob, spec: EngineSpec) -> tuple["Scene", Engine]:
    """The scene with the bundled model that fits it (`bundled_model_for`), which the report names."""
    files = scene_files(job)
    chosen = bundled_model_for(job, files)
    reason = (f"bundled: fits ratio {chosen.card.ratio}; band-wise, so it fuses every band of the scene"
              if chosen.card.band_wise else
              f"bundled: fits ratio {chosen.card.ratio} and bands {', '.join(chosen.card.bands)}")
    engine = get_engine(replace(spec, model=str(chosen.path)), chosen_by=reason)
    return open_scene(job, engine.bands, files), engine


def one_line(exc: BaseException, job: SceneJob) -> str:
    """The error as one line naming the file (prefixing the scene source when the message does not)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for wrapper, href in job.wraps:  # the asset, not the wrapper (which a failed scene removes)
        text = text.replace(str(wrapper), href).replace(wrapper.name, Path(href).name)
    if not isinstance(exc, (ValueError, OSError)) or (job.source not in text and "/" not in text):
        text = f"{job.source}: {text if isinstance(exc, (ValueError, OSError)) else type(exc).__name__ + ': ' + text}"
    return text


def say_stderr(text: str, **fields: Any) -> None:  # the fields are the JSON log's
    from ddrf.scenes.progress import one_text_line

    print(f"ddrf-run: {one_text_line(text)}", file=sys.stderr, flush=True)


GDAL_CACHE_MB = 64  # GDAL's block cache otherwise defaults to 5 % of RAM and fills with the scene's blocks


def gdal_cache() -> Any:
    """A bounded GDAL block cache for one scene (peak memory must not grow with the scene's height); a
    GDAL_CACHEMAX the user set in the environment wins."""
    import contextlib
    import os

    import rasterio

    if "GDAL_CACHEMAX" in os.environ:
        return contextlib.nullcontext()
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20)  # bytes


def run_job(job: SceneJob, spec: EngineSpec, settings: RunSettings, on_tiles: TileHook | None = None,
            say: Say = say_stderr) -> dict[str, Any]:
    """Process one scene; never raises for a bad scene: returns {name, status, output, error?, seconds}.

    The output's lock is held throughout, so a second run on the same output neither cleans nor replaces it.
    `on_tiles` sees the progress; an exception it raises that is not an Exception (a stop request) propagates,
    after the scene's temporaries are removed.
    """
    entry: dict[str, Any] = {"name": job.name, "source": job.source, "output": str(job.raster)}
    too_long = unnamable(Outputs.for_raster(job.raster, settings.spread, settings.quicklook))
    if too_long:  # before the lock, whose name would be too long as well
        return {**entry, "status": "failed", "error": too_long, "seconds": 0.0}
    try:
        with exclusive(job.raster), gdal_cache():
            return run_locked(job, spec, settings, entry, on_tiles, say)
    except Busy as exc:
        return {**entry, "status": "failed", "error": str(exc), "seconds": 0.0}
    except OSError as exc:  # the lock itself: an unwritable or vanished output folder
        return {**entry, "status": "failed", "seconds": 0.0,
                "error": f"{exc.filename or job.raster.parent}: cannot write here ({exc.strerror})"}


def before_fusing(job: SceneJob, spec: EngineSpec, outputs: Outputs, overwrite: bool) -> tuple[str, str] | None:
    """("skipped", why) for a finished output this run would make again, ("failed", error) for an output path it may
    not write, None to fuse: what ddrf-run and its dry run decide before opening the scene."""
    if job.pan is not None:  # before "exists, but is no ddrf-run output ... pass --overwrite": it is an input
        try:
            check_not_inputs([job.pan, *job.ms], outputs, job.name)
        except ValueError as exc:
            return "failed", str(exc)
    if not is_finished(outputs) or overwrite:
        return None
    report = reports.naming_report(outputs, where=False)
    if report is None:
        return "failed", (f"{outputs.raster}: exists, but is no ddrf-run output (no report {outputs.report.name} "
                          "beside it names it); move it away, or pass --overwrite to replace it")
    changed = finished_differences(report, job, spec, outputs)
    if changed:
        return "failed", (f"{outputs.raster}: a finished output of other {'; '.join(changed)}; pass --overwrite "
                          "to replace it, or choose another output path")
    return "skipped", "finished output exists (use --overwrite)"


def run_locked(job: SceneJob, spec: EngineSpec, settings: RunSettings, entry: dict[str, Any],
               on_tiles: TileHook | None, say: Say) -> dict[str, Any]:
    outputs = Outputs.for_raster(job.raster, settings.spread, settings.quicklook)
    verdict = before_fusing(job, spec, outputs, settings.overwrite)
    if verdict is not None:
        status, why = verdict
        if status == "skipped":
            for final in outputs.all():
                clean_stale(final)
            return {**entry, "status": "skipped", "reason": why}
        return {**entry, "status": "failed", "seconds": 0.0, "error": why}
    started = time.perf_counter()
    try:
        # ddrf's own unpublished files (only this raster's own side files, whatever the report names): redone
        # without --overwrite
        left = reports.interrupted(outputs, Outputs.for_raster(outputs.raster, True, True))
        for path in left:
            path.unlink()
        if left:
            say(f"{outputs.report}: left by an interrupted run ({outputs.raster.name}, renamed last, is absent); "
                f"removed {', '.join(p.name for p in left)} and fusing the scene again")
        check_outputs_free(outputs, settings.overwrite)
        scene, engine = open_with_engine(job, spec)
        if spec.model is None and not spec.method:
            model = engine.summary()["model"]
            say(f"{job.source}: model {model['name']} ({model['path']}), {model['chosen_by']}")
        if settings.spread and engine.spread_problem:
            views = " --views" if getattr(engine, "first_view", None) is not None else ""
            say(f"{job.source}: {engine.label} {engine.spread_problem}, so the spread map is not calibrated; fit a "
                f"factor on reference images with ddrf-eval DATA --methods ddrf:MODEL --steps K --samples N{views} "
                "--fit-spread")
        elif settings.spread and engine.spread_note:
            say(f"{job.source}: {engine.spread_note}")
        missing = scene.files.missing  # all of them go in the report; said when a core band is absent (a partial
        # copy more likely than a download of some bands: coastal and SWIR are often left out on purpose)
        if CORE_BANDS & set(missing):
            say(f"{job.source}: band file(s) missing: {', '.join(f'{p.name} ({b})' for b, p in missing.items())}; "
                f"fusing the bands present: {', '.join(scene.band_names)}")
        if scene.files.names_assumed:
            why = scene.files.band_source or "no metadata or band descriptions name them"
            where = job.ms[0] if job.pan is not None and job.item is None else job.source  # a pair: its MS file
            say(f"{where}: band order assumed {listed_bands(scene.band_names)} ({why}); pass --bands to state it")
        try:
            report = process_scene(scene, engine, outputs, settings, job.inputs(), on_tiles, say, job.name)
        finally:
            close = getattr(scene, "close", None)
            if callable(close):
                close()
    except Exception as exc:  # a bad scene must not stop the others
        return {**entry, "status": "failed", "error": one_line(exc, job), "seconds": time.perf_counter() - started}
    model = {k: report["engine"]["model"][k] for k in ("name", "path")} if "model" in report["engine"] else None
    return {**entry, "status": "done", "seconds": time.perf_counter() - started, "tiles": report["tiling"]["tiles"],
            **({"model": model} if model else {})}
