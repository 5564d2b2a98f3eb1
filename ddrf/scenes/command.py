"""`ddrf-run`: fuse PAN + MS scenes into pansharpened GeoTIFFs on the PAN grid.

\b
Examples:
  ddrf-run SCENE_DIR... -o OUT_DIR              every scene into OUT_DIR/<dir name>.tif (+ .json report, .item.json)
  ddrf-run --pan PAN.tif --ms MS.tif -o OUT.tif one explicit pair
  ddrf-run ITEM.json -o OUT_DIR                 the PAN and MS assets a STAC Item names (also an http(s) URL)
  ddrf-run --watch INBOX -o OUT_DIR             fuse each scene directory that lands in INBOX, once; stop: SIGTERM
  ddrf-run SCENE -o OUT --stac-catalog CAT      also link the STAC Item into the static catalogue CAT/catalog.json
  ddrf-run SCENE -o OUT --log-format json       one JSON object per line on stderr (for log collectors)

\b
Exit codes: 0 every scene done or already finished; 1 some scene failed or was abandoned at SIGTERM
  (the others still ran); 2 usage error. A watch stopped by SIGTERM or SIGINT: 1 if a scene failed while it ran.
Never imports torch.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ddrf.runtime.backends import BACKENDS
from ddrf.runtime.noise import MAX_SEED
from ddrf.scenes.preflight import (SUMMARY_NAME, band_list, check_catalog, check_tile, check_writable, dry_run,
                                   item_jobs, known_sensor, log_usage_as, make_jobs, note, refuse_outputs_in_inbox,
                                   refuse_outputs_on_catalog, refuse_unexpanded_home, split_arguments, usage,
                                   wrappers_removed_on_exit)

if TYPE_CHECKING:
    from ddrf.scenes.engines import EngineSpec, ModelEngine
    from ddrf.scenes.jobs import SceneJob
    from ddrf.scenes.streaming import RunSettings

EPILOG = "\b\n" + __doc__.split("\b\n", 1)[1].replace("Never imports torch.\n", "")  # \b: click keeps line breaks
app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})

def bundled_models() -> list[Any]:
    """The bundled models a scene may get (ddrf.bundled); none, or a bad card, is a usage error."""
    from ddrf.bundled import bundled_folder, bundled_models as found

    try:
        models = found()
    except ValueError as exc:
        raise usage(" ".join(str(exc).split()))
    if not models:
        raise usage(f"{bundled_folder()}: no bundled model there; pass --model DIR or --method NAME")
    return models


def make_spec(model: str | None, backend: str, steps: int | None, seed: int, uncertainty: int,
              method: str | None, threads: int | None, ensemble: int = 0,
              statistics_from: Path | None = None, bands: tuple[str, ...] = (),
              sensor: str | None = None, tile: int | None = None) -> "EngineSpec":
    """The engine description, checked here so that a bad model is a usage error before any scene runs.

    Without --model (and --method) the spec names no model: each scene gets the bundled one that fits it.
    `bands`, `sensor`: the run's --bands and --sensor, which name the --statistics-from scene's bands too."""
    from ddrf.scenes.engines import EngineSpec, StatisticsScene

    if uncertainty == 1 or uncertainty < 0:
        raise usage(f"--uncertainty needs at least 2 samples, got {uncertainty}")
    if ensemble == 1 or ensemble < 0:
        raise usage(f"--ensemble needs at least 2 views, got {ensemble}")
    from ddrf.runtime.views import check_view_count

    try:
        check_view_count(ensemble, "--ensemble")
    except ValueError as exc:
        raise usage(str(exc))
    if ensemble and uncertainty and ensemble != uncertainty:
        raise usage(f"--ensemble {ensemble} --uncertainty {uncertainty}: the spread is that of the views fused, "
                    f"so give both the same N (--ensemble {ensemble} --uncertainty {ensemble})")
    if method:
        from ddrf.baselines import ALL_METHODS

        if method not in ALL_METHODS:
            raise usage(f"unknown --method {method!r}; known: {', '.join(ALL_METHODS)}")
        model_only = {"--uncertainty": bool(uncertainty), "--ensemble": bool(ensemble),
                      "--statistics-from": statistics_from is not None, "--model": model is not None,
                      "--steps": steps is not None, "--backend": backend != "ort-cpu"}
        option = next((name for name, given in model_only.items() if given), None)
        if option:  # silently ignored before: the output was the method's, the summary naming what was not done
            raise usage(f"{option} applies to the diffusion model, not to --method")
        return EngineSpec(method=method, seed=seed)
    # checked against each model it must fit when the models load (preload, check_reference_on_cards)
    reference = (StatisticsScene(str(statistics_from.absolute()), sensor, bands) if statistics_from is not None
                 else None)
    from ddrf.model_dir import ModelDir

    if backend not in BACKENDS:
        raise usage(f"unknown --backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if model is None:
        bundled_models()
    else:
        from ddrf.bundled import model_folder

        try:  # a string: Typer's Path would drop the './' that makes it a path
            model = str(model_folder(model))
            ModelDir.open(model)
        except ValueError as exc:
            raise usage(" ".join(str(exc).split()))
    return EngineSpec(model=model, backend=backend, steps=steps, seed=seed,
                      samples=max(uncertainty, ensemble, 1), threads=threads, views=bool(ensemble),
                      statistics_from=reference, tile=tile)


# scenes whose bundled model is picked before the run (about 10 ms each, reading headers); a longer batch, or
# --watch, loads every bundled model instead (about 1 s in all)
PICKED_BEFORE_THE_RUN = 16


def preload(spec: "EngineSpec", jobs: "list[SceneJob] | None" = None) -> list[Any]:
    """Load the model once before the first scene, so a broken graph or backend is one usage error. Without
    --model: the bundled models these `jobs` will get, or (no jobs, or many) every one a scene may get."""
    from dataclasses import replace

    from ddrf.scenes.engines import ModelEngine, get_engine
    from ddrf.scenes.jobs import bundled_models_needed

    picked = bool(spec.model or spec.method) or (jobs is not None and len(jobs) <= PICKED_BEFORE_THE_RUN)
    if spec.model or spec.method:
        specs = [spec]
    else:
        models = bundled_models()
        if picked:
            models = bundled_models_needed(jobs or [], models)
        specs = [replace(spec, model=str(m.path)) for m in models]
    try:
        engines = [get_engine(s) for s in specs]
        check_reference([e for e in engines if isinstance(e, ModelEngine) and e.statistics_from], picked)
        return engines
    except (ValueError, RuntimeError) as exc:
        raise usage(" ".join(str(exc).split()))


def check_reference(engines: "list[ModelEngine]", picked: bool) -> None:
    """--statistics-from: its scene must fit every model the scenes were picked to get, or, where the scenes are not
    known yet (--watch, a long batch: every bundled model is loaded), at least one of them; a scene that gets a model
    the reference does not fit then fails on its own line. Raises the first misfit."""
    misfits = []
    for engine in engines:
        try:
            engine.reference_statistics()
        except ValueError as exc:
            misfits.append(exc)
    if misfits and (picked or len(misfits) == len(engines)):
        raise misfits[0]


def check_reference_on_cards(spec: "EngineSpec", jobs: "list[SceneJob]") -> None:
    """--statistics-from with --scheduler: the workers load the models, so the client checks the reference scene
    against the cards of the models the scenes will get (ratio, bands): one usage line, as without a cluster."""
    from ddrf.model_dir import ModelDir
    from ddrf.scenes.engines import CardFit, reference_scene
    from ddrf.scenes.jobs import bundled_models_needed

    assert spec.statistics_from is not None
    cards = ([ModelDir.open(spec.model).card] if spec.model else
             [m.card for m in bundled_models_needed(jobs, bundled_models())])
    try:
        for card in cards:
            reference_scene(spec.statistics_from, CardFit.of(card))
    except (ValueError, OSError) as exc:
        raise usage(" ".join(str(exc).split()))


def ready(spec: "EngineSpec", settings: "RunSettings", jobs: "list[SceneJob] | None" = None) -> None:
    """Preload the models (`preload`) and check the tile and halo against each, before any scene runs."""
    from ddrf.scenes.streaming import resolved_window

    engines = preload(spec, jobs)
    bundled = not (spec.model or spec.method)  # the notes name the bundled model they are for
    for engine in engines or [None]:
        model = engine.fuser.files.root.name if bundled and hasattr(engine, "fuser") else None
        check_tile(*resolved_window(settings, engine), engine, settings.batch, model,
                   (settings.tile is not None, settings.halo is not None))


def make_reporter(log_format: str, progress: Optional[bool], every: float, every_pct: float) -> Any:
    from ddrf.scenes.progress import Reporter

    # first thing in every invocation: its usage errors in its own format (an unknown one, refused here, is text)
    log_usage_as("json" if log_format == "json" else "text")
    if log_format not in ("text", "json"):
        raise usage(f"unknown --log-format {log_format!r}; choose text or json")
    return Reporter(log_format, progress, every, every_pct)


def finish_cluster_entries(entries: list[dict[str, Any]], jobs: list[Any], settings: Any, catalog: Optional[Path],
                           reporter: Any, sources: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """Scenes run on a Dask cluster: their STAC Items and catalogue links are written here, once all are back; as in
    run_batch, an Item scene (named in `sources`) gets its source's datetime and derived_from link, and one that
    failed or was abandoned leaves no band wrappers."""
    from ddrf.scenes.runner import describe_outputs
    from ddrf.scenes.stac_in import tidy_after

    finished = [describe_outputs(entry, job, settings, catalog, (sources or {}).get(job.name), reporter)
                for entry, job in zip(entries, jobs)]  # an Item scene's output Item links back to its source
    for entry, job in zip(finished, jobs):
        tidy_after(entry, job, job.name in (sources or {}))
        reporter.scene(entry)
    return finished


def run_watch(inbox: Path, output: Path, spec: Any, settings: Any, reporter: Any, catalog: Optional[Path],
              settle: float, ready_file: Optional[str], poll: bool, poll_interval: float,
              wait_listed: float = 600.0, bands: tuple[str, ...] = (), sensor: Optional[str] = None) -> int:
    from ddrf.scenes.watch import Watcher, WatchLock, WatchOptions

    if not inbox.is_dir():
        raise usage(f"{inbox}: --watch needs an existing inbox directory")
    if output.suffix.lower() in (".tif", ".tiff"):
        raise usage(f"{output}: with --watch, -o names an output directory")
    preload(spec)
    try:
        watcher = Watcher(inbox, output, spec, settings, reporter,
                          WatchOptions(settle, ready_file, poll, poll_interval, wait_listed_s=wait_listed,
                                       bands=bands, sensor=sensor), catalog)
        lock = WatchLock(watcher.status.path).__enter__()
    except ValueError as exc:
        raise usage(" ".join(str(exc).split()))
    try:
        return watcher.run()
    finally:
        lock.__exit__()


def watch_plan(inbox: Path, output: Path, spec: Any, settings: Any, bands: tuple[str, ...] = (),
               sensor: Optional[str] = None) -> int:
    """--watch --dry-run: the plan of each scene directory in the inbox now that the status file does not record as
    done or failed (what the watcher would fuse first, once settled); nothing written, nothing watched."""
    from ddrf.scenes.watch import STATUS_NAME, StatusFile, scene_dirs, watched_job

    if not inbox.is_dir():
        raise usage(f"{inbox}: --watch needs an existing inbox directory")
    if output.suffix.lower() in (".tif", ".tiff"):
        raise usage(f"{output}: with --watch, -o names an output directory")
    try:
        status = StatusFile(output / STATUS_NAME, inbox)
    except ValueError as exc:
        raise usage(" ".join(str(exc).split()))
    ours = {output.resolve(), inbox.resolve()}
    scenes = [d for d in scene_dirs(inbox)
              if status.status(d.name) not in ("done", "failed") and d.resolve() not in ours]
    note(f"--watch {inbox}: {len(scenes)} scene director{'y' if len(scenes) == 1 else 'ies'} to fuse there now; "
         "dry run, nothing watched or written", "plan", True, inbox=str(inbox), scenes=len(scenes))
    if not scenes:
        return 0
    jobs = [watched_job(d, output, bands, sensor) for d in scenes]
    ready(spec, settings, jobs)
    return dry_run(jobs, spec, settings)


def scheduler_client(ctx: typer.Context, address: str) -> Any:
    """The one client of the Dask scheduler at `address` for the whole run, closed when the command ends, however it
    ends; an address where none answers is a usage error before any output."""
    from ddrf.scenes.distributed import SchedulerUnreachable, connect

    try:
        return ctx.with_resource(connect(address))
    except SchedulerUnreachable as exc:
        raise usage(str(exc))


@app.command(epilog=EPILOG)
def main(
    ctx: typer.Context,
    scenes: list[str] = typer.Argument(None, help="Scene directories (Landsat C2, Maxar, Pleiades, GF2 ...) or STAC "
                                       "Items (ITEM.json or an http(s) URL).", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Output directory (scenes) or GeoTIFF (--pan/--ms)."),
    pan: Optional[Path] = typer.Option(None, "--pan", help="PAN GeoTIFF."),
    ms: list[Path] = typer.Option([], "--ms", help="MS GeoTIFF (multi-band, or repeat once per band)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model directory, or a bundled model's name (default: "
                                         "per scene, the bundled model of the scene's ratio and bands; none fits: an "
                                         "error naming what would)."),
    method: Optional[str] = typer.Option(
        None, "--method", help="Run a classical baseline instead: EXP, Brovey, BT-H, GSA, BDSD-PC, MTF-GLP-FS, "
        "MTF-GLP-HPM (as the toolbox computes them; HPM can blow up on dark pixels) or a named departure: "
        "MTF-GLP-HPM-robust (5 % denominator floor, the one to use on real scenes), GSA-gauss, BDSD-PC-unitdc, "
        "MTF-GLP-FS-unitdc (docs/EVALUATION.md)."),
    backend: str = typer.Option("ort-cpu", "--backend", help=f"{', '.join(BACKENDS)}."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampler steps (default: the card's)."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Noise seed (the noise is keyed to each "
                             "pixel's place on the CRS grid, so overlapping scenes draw the same)."),
    uncertainty: int = typer.Option(0, "--uncertainty", min=0, help="N >= 2 seeds: the output is their mean; "
                                    "also write <name>_spread.tif (per-pixel std x the card's spread_calibration, "
                                    "adjusted for N). With --ensemble N (the same N): the spread of the N views, "
                                    "times the card's spread_calibration_views fitted at that N."),
    ensemble: int = typer.Option(0, "--ensemble", min=0, help="N >= 2 views (the window turned and flipped, up to "
                                 "8, each with its own seed): the output is their mean. Better than one view, at N "
                                 "times the time: with the bundled models 8 views took held-out SAM 2.0-2.5 % "
                                 "and ERGAS 2.2-3.6 % lower (docs/EVALUATION.md)."),
    tile: Optional[int] = typer.Option(None, "--tile", min=8, help="Largest window side in PAN pixels (default by "
                                      "backend); each axis takes the fewest windows of at most this side, shrunk "
                                      "to cover it evenly. Larger windows recompute less halo: faster, more memory "
                                      "(docs/BENCHMARKS.md); under four halos a window keeps less than a quarter of "
                                      "its pixels, and the run says what that costs."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Windows per inference call, at most one row "
                                        "of windows (default by backend). On the CPU more than one is no faster and "
                                        "holds each window's memory at once: --batch 8 took 3x the peak memory in "
                                        "the same time."),
    halo: Optional[int] = typer.Option(None, "--halo", min=0, help="Context margin in PAN pixels (default: the "
                                       "model card's, what its tiles need to agree; 32 for --method)."),
    statistics_from: Optional[Path] = typer.Option(
        None, "--statistics-from", help="A scene directory whose normalisation and model statistics every scene "
        "of the run takes instead of its own, so that overlapping scenes (neighbouring rows of one pass, an area cut "
        "from a scene) give the same pixels where they overlap; by default each scene's own extent sets them "
        "(docs/EVALUATION.md, \"Scene extent\"). --bands and --sensor name its bands as the scenes'."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="ONNX Runtime intra-op threads per session (default: one per physical core). "
        "Idle pools sleep (no spinning), so the model and the reader and writer threads share the cores; on a machine "
        "shared with other work, set it to the cores you may use."),
    cog: bool = typer.Option(False, "--cog", help="Write Cloud Optimized GeoTIFFs (with overviews)."),
    quicklook: bool = typer.Option(False, "--quicklook", help="Also write <name>_quicklook.png (RGB stretch)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo scenes whose output exists."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address: one task per scene "
                                            "(trusted clusters only: Dask moves work by pickle)."),
    stac_catalog: Optional[Path] = typer.Option(None, "--stac-catalog", help="Also link every output's STAC Item "
                                                "into the static catalogue DIR/catalog.json (made if absent)."),
    watch: Optional[Path] = typer.Option(None, "--watch", help="Watch INBOX: fuse each scene directory that lands "
                                         "in it, once (status file OUT/ddrf-watch-status.json); stop with SIGTERM."),
    settle: float = typer.Option(30.0, "--settle", min=0, help="--watch: a scene is complete when no file changed "
                                 "for this many seconds ..."),
    ready_file: Optional[str] = typer.Option(None, "--ready-file", help="--watch: ... or as soon as a file matching "
                                             "this glob is in it (e.g. '*_MTL.txt', written last by the downlink)."),
    wait_listed: float = typer.Option(600.0, "--wait-listed", min=0, help="--watch without --ready-file: a settled "
                                      "scene whose metadata (Landsat MTL, DIMAP) names files not in it waits for "
                                      "them; after this many seconds without a change it is fused with the bands "
                                      "present."),
    poll: bool = typer.Option(False, "--poll", help="--watch: poll the inbox (network file systems without "
                                                   "change notifications) instead of native events."),
    poll_interval: float = typer.Option(5.0, "--poll-interval", min=0.1, help="--watch --poll: seconds per poll."),
    log_format: str = typer.Option("text", "--log-format", help="text, or json: one JSON object per line."),
    progress_every: float = typer.Option(30.0, "--progress-every", min=0, help="Without a terminal (or with json "
                                         "logs): a progress line at most every N seconds ..."),
    progress_percent: float = typer.Option(10.0, "--progress-percent", min=0, help="... or every N percent of a "
                                           "scene's windows."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bars (default: tty)."),
    bands: Optional[str] = typer.Option(None, "--bands", help="Names of the MS bands in file order, comma list "
                                        "(e.g. red,green,blue,nir) where nothing else names them; where metadata, file "
                                        "names or band descriptions do, they must agree (a scene they contradict "
                                        "fails)."),
    sensor: Optional[str] = typer.Option(None, "--sensor", help="The sensor (e.g. WorldView-3, Pleiades, "
                                         "Landsat8): its MTF for the classical methods, and its band names by "
                                         "count where no metadata or band descriptions name the bands."),
    dry_run_only: bool = typer.Option(False, "--dry-run", help="Print each scene's plan (windows, output size, free "
                                      "disk) and exit without writing; with --watch, of the scenes in the inbox now "
                                      "that are not done or failed."),
) -> None:
    """Fuse PAN + MS scenes into pansharpened GeoTIFFs on the PAN grid, with a JSON report and a STAC Item beside
    each; every run ends by naming each output file."""
    from ddrf.scenes.engines import default_tiling
    from ddrf.scenes.report import now
    from ddrf.scenes.streaming import RunSettings

    started = now()  # the run summary keeps the record of a run into -o that finished after this one started
    reporter = make_reporter(log_format, progress, progress_every, progress_percent)
    refuse_unexpanded_home({"-o": output, "--stac-catalog": stac_catalog})
    output = output.absolute()
    directories, references = split_arguments(scenes or [])
    catalog = stac_catalog.absolute() if stac_catalog else None
    check_catalog(catalog)
    band_names, sensor_name = band_list(bands), known_sensor(sensor)
    spec = make_spec(model, backend, steps, seed, uncertainty, method, threads, ensemble, statistics_from,
                     band_names, sensor_name, tile)
    batch_default = default_tiling(backend, method)[1]
    settings = RunSettings(tile=tile, batch=batch or batch_default,
                           halo=halo, cog=cog, quicklook=quicklook,
                           overwrite=overwrite, spread=bool(uncertainty), progress=reporter.bars)
    client = scheduler_client(ctx, scheduler) if scheduler and not dry_run_only and watch is None else None
    if watch is not None:
        if scenes or pan or ms or scheduler:
            raise usage("--watch takes no scene arguments, --pan/--ms or --scheduler")
        from ddrf.scenes.watch import check_ready_file

        try:
            check_ready_file(ready_file)  # the dry run too: it plans what the watcher would do
        except ValueError as exc:
            raise usage(str(exc))
        refuse_outputs_in_inbox(watch.absolute(), output, catalog)
        if dry_run_only:
            raise typer.Exit(watch_plan(watch.absolute(), output, spec, settings, band_names, sensor_name))
        ready(spec, settings)  # the scenes are yet to come: every model one may get
        raise typer.Exit(run_watch(watch.absolute(), output, spec, settings, reporter, catalog, settle, ready_file,
                                   poll, poll_interval, wait_listed, band_names, sensor_name))
    sources: dict[str, Any] = {}
    with wrappers_removed_on_exit(output) as written:  # a stop before the scenes run leaves no Item band wrappers
        if references:
            if directories or pan or ms:
                raise usage("give either STAC Items or scene directories / --pan --ms, not both")
            if band_names or sensor:
                raise usage("--bands and --sensor are for scene directories and --pan/--ms; a STAC Item names its "
                            "bands")
            if dry_run_only:  # the band wrappers in a temporary folder: a dry run writes nothing under -o
                with tempfile.TemporaryDirectory(prefix="ddrf-dry-run-") as wrappers:
                    dry_jobs = item_jobs(references, output, Path(wrappers))[0]
                    ready(spec, settings, dry_jobs)
                    raise typer.Exit(dry_run(dry_jobs, spec, settings))
            jobs, sources = item_jobs(references, output, written=written)
        else:
            jobs = make_jobs(directories, pan and pan.absolute(), [m.absolute() for m in ms], output, band_names,
                             sensor_name)
        refuse_outputs_on_catalog(jobs, catalog)
        if not scheduler or dry_run_only:  # a cluster's workers load their own models
            ready(spec, settings, jobs)
        elif spec.statistics_from:
            check_reference_on_cards(spec, jobs)
        if dry_run_only:
            raise typer.Exit(dry_run(jobs, spec, settings))
        check_writable(output if jobs[0].directory is not None or references else output.parent)
    if client is not None:  # --scheduler (a dry run and --watch ended above)
        from ddrf.scenes.distributed import run_on_cluster

        entries = run_on_cluster(client, jobs, spec, settings)
        entries = finish_cluster_entries(entries, jobs, settings, catalog, reporter, sources)
    else:
        from ddrf.scenes.runner import run_batch

        entries = run_batch(jobs, spec, settings, reporter, catalog, sources)
    problem = None
    if jobs[0].directory is not None or references:
        problem = summary_problem(output / SUMMARY_NAME, entries, {**asdict(spec), **asdict(settings)},
                                  started)
    code = reporter.summary(entries)
    if problem:  # last, after the list of what the run did publish
        reporter.emit("error", problem, path=str(output / SUMMARY_NAME), error=problem)
    raise typer.Exit(1 if problem else code)


def summary_problem(path: Path, entries: list[dict[str, Any]], settings: dict[str, Any],
                    started: str | None = None) -> str | None:
    """Write the run summary; None, or why it could not be written (a full disk after the scenes: one line, not a
    traceback, and the closing list of the outputs still said)."""
    from ddrf.scenes.report import write_summary

    try:
        write_summary(path, entries, settings, started)
    except OSError as exc:
        return f"{path}: cannot write the run summary ({exc.strerror or exc}); the outputs listed are published"
    return None


if __name__ == "__main__":
    app()
