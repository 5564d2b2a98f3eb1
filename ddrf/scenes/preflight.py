"""`ddrf-run`'s checks of the command line before any scene starts: the jobs it names, outputs that must not be
inputs, a writable output folder, the tile against the halo and an engine's profile, the dry-run plan. Each refusal
is one usage line (exit 2). Never imports torch.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import typer

from ddrf.files import first_repeated

if TYPE_CHECKING:
    from ddrf.scenes.engines import EngineSpec
    from ddrf.scenes.jobs import SceneJob
    from ddrf.scenes.streaming import RunSettings

SUMMARY_NAME = "ddrf-run-summary.json"
_usage_log_format = "text"  # the running invocation's --log-format, for usage(); see log_usage_as


def log_usage_as(log_format: str) -> None:
    """Usage lines from here on are `log_format` ("text" or "json"). ddrf-run sets it first thing in every
    invocation, so that one invocation's format never carries over into the next one in the same process."""
    global _usage_log_format
    _usage_log_format = log_format


def usage(message: str) -> "typer.Exit":
    """Print the one line of a refusal (exit 2): `ddrf-run: message`, or with --log-format json one JSON object like
    the run's other log lines, so that a log collector parses it too."""
    note(message, "usage", level="error", exit_code=2)
    return typer.Exit(2)


def note(text: str, event: str = "note", stdout: bool = False, **fields: Any) -> None:
    """One line of ddrf-run's own before the scenes run (a note, a dry run's plan): on stderr `ddrf-run: text`, or
    on stdout `text`; with --log-format json one JSON object (`event`, `message`: the text, `fields`) on the same
    stream, so that a json run prints nothing else."""
    if _usage_log_format == "json":
        from ddrf.scenes.progress import json_line

        typer.echo(json_line(event, message=text, **fields), err=not stdout)
    else:
        from ddrf.scenes.progress import one_text_line

        typer.echo(one_text_line(text) if stdout else f"ddrf-run: {one_text_line(text)}", err=not stdout)


def known_sensor(name: str | None) -> str | None:
    """--sensor by name or alias, as the sensor table spells it; an unknown name is a usage error."""
    from ddrf.sensors import get_sensor

    if name is None:
        return None
    try:
        return get_sensor(name).name
    except ValueError as exc:
        raise usage(f"--sensor: {exc}") from None


def make_jobs(scenes: list[Path], pan: Path | None, ms: list[Path], output: Path,
              bands: tuple[str, ...] = (), sensor: str | None = None) -> "list[SceneJob]":
    from ddrf.scenes.jobs import SceneJob

    if pan is not None or ms:
        if scenes:
            raise usage("give either SCENE_DIR... or --pan with --ms, not both")
        if pan is None or not ms:
            raise usage("--pan and --ms go together: " + ("--ms MS.tif is missing" if pan else "--pan PAN.tif is missing"))
        if output.suffix.lower() not in (".tif", ".tiff"):
            raise usage(f"{output}: with --pan/--ms, -o names the output GeoTIFF (.tif)")
        if output.is_dir():
            raise usage(f"{output}: is a directory; with --pan/--ms, -o names the output GeoTIFF file")
        refuse_files_twice(pan, ms)
        refuse_inputs_as_outputs(output, [pan, *ms])
        return [SceneJob(output.stem, output, pan=pan, ms=tuple(ms), bands=bands, sensor=sensor)]
    if not scenes:
        raise usage("no scenes: give SCENE_DIR... or --pan PAN.tif --ms MS.tif")
    if output.suffix.lower() in (".tif", ".tiff"):
        raise usage(f"{output}: with scene directories, -o names an output directory")
    # named as given (X/.. by its parent's name; a link by its own, as the watcher names it, so that a scene fused by
    # both has one output), read where it lies
    names = [Path(os.path.abspath(s)).name for s in scenes]
    scenes = [s.resolve() for s in scenes]
    check_scene_directories(scenes, output.resolve(), names)
    jobs = [SceneJob(name, output / f"{name}.tif", directory=s, bands=bands, sensor=sensor)
            for name, s in zip(names, scenes)]
    refuse_colliding_outputs([(str(s), job.raster) for s, job in zip(scenes, jobs)])
    return jobs


def refuse_colliding_outputs(named: list[tuple[str, Path]]) -> None:
    """(what names the scene, its raster) per scene of one run: no two scenes may write one file (scene A's STAC Item
    A.item.json is scene A.item's report), and no scene the run summary. Every side file counts, spread and
    quicklook too, whether or not this run writes them, so that a rerun with them cannot collide."""
    from ddrf.files import folds_case
    from ddrf.scenes.jobs import published
    from ddrf.scenes.streaming import Outputs

    # on a file system that does not tell case (a USB disk), `A.tif` and `a.tif` are one file
    folding = {folder: folds_case(folder) for folder in {raster.parent for _, raster in named}}
    owner: dict[Path, tuple[str, Path, Path]] = {}  # key -> (source, raster, the path it writes)
    for source, raster in named:
        for path in published(Outputs.for_raster(raster, True, True)):
            key, summary = path.absolute(), SUMMARY_NAME
            if folding[raster.parent]:
                key, summary = key.with_name(key.name.casefold()), summary.casefold()
            if key.name == summary:
                raise usage(f"{source}: its output {path.name} would overwrite the run summary; rename it")
            if key in owner and owner[key][0] != source:
                case = " (its file system does not tell upper from lower case)" if folding[raster.parent] else ""
                raise usage(f"{source}: its output {path.name} would also be written by {owner[key][0]} "
                            f"(as its {_role(owner[key][1], owner[key][2])}){case}; rename one of them")
            owner.setdefault(key, (source, raster, path.absolute()))


def refuse_outputs_on_catalog(jobs: list[Any], catalog: Path | None) -> None:
    """--stac-catalog DIR: no scene's output may be DIR/catalog.json (a scene named `catalog` writing its report into
    the catalogue's folder would replace the catalogue), and DIR may not be in a scene directory (an input)."""
    from ddrf.scenes.jobs import published
    from ddrf.scenes.streaming import Outputs

    if catalog is None:
        return
    target = (catalog / "catalog.json").absolute()
    for job in jobs:
        inside = job.directory and output_in_scene(catalog.resolve(), job.directory.resolve(), "--stac-catalog")
        if inside:
            raise usage(inside)
        if any(path.absolute() == target for path in published(Outputs.for_raster(job.raster, True, True))):
            raise usage(f"{job.name}: its output {target.name} would overwrite the STAC catalogue {target}; "
                        "rename the scene or choose another --stac-catalog folder")


def _role(raster: Path, path: Path) -> str:
    """What `path` is among the outputs of the scene whose raster is `raster`."""
    from ddrf.scenes.stac_out import item_path
    from ddrf.scenes.streaming import Outputs

    outputs = Outputs.for_raster(raster.absolute(), True, True)
    roles = {outputs.raster: "raster", outputs.report: "report", outputs.spread: "spread map",
             outputs.quicklook: "quicklook", item_path(outputs.raster): "STAC Item"}
    return roles.get(path, "output")


def refuse_files_twice(pan: Path, ms: list[Path]) -> None:
    """One file named twice would be fused as two bands (or as PAN and MS)."""
    given = [pan, *ms]
    twice = first_repeated(given)
    if twice is not None:
        how = "as both --pan and --ms" if given[twice].resolve() == pan.resolve() else "twice as --ms"
        raise usage(f"{given[twice]}: given {how}; name each input file once")


def band_names(bands: str | Sequence[str]) -> tuple[str, ...]:
    """MS band names in file order, from a comma list or a sequence; empty or repeated names are refused (each MS
    band has one name): ValueError, its message to follow the option's name."""
    names = tuple(b.strip() for b in (bands.split(",") if isinstance(bands, str) else bands))
    if not all(names):
        what = "has an empty name" if any(names) else "names no band"
        raise ValueError(f"{bands!r} {what}; give one name per MS band in file order, e.g. red,green,blue,nir")
    lowered = [n.lower() for n in names]
    repeated = next((n for n in lowered if lowered.count(n) > 1), None)
    if repeated is not None:
        raise ValueError(f"{bands!r} names {repeated} more than once; each MS band needs its own name")
    return names


def band_list(bands: str | None) -> tuple[str, ...]:
    """--bands as names in file order (`band_names`); a bad list is a usage error."""
    try:
        return band_names(bands) if bands is not None else ()
    except ValueError as exc:
        raise usage(f"--bands {exc}") from None


def refuse_inputs_as_outputs(output: Path, inputs: list[Path]) -> None:
    from ddrf.scenes.jobs import output_that_is_input
    from ddrf.scenes.streaming import Outputs

    clash = output_that_is_input(Outputs.for_raster(output, True, True), inputs)
    if clash is not None:
        raise usage(f"{clash}: is an input; choose another output path (inputs are never overwritten)")


def check_scene_directories(scenes: list[Path], output: Path, names: list[str] | None = None) -> None:
    """Output names come from directory names (`names`, the scenes' own by default), so they must be unique, and no
    scene may hold another or the output."""
    twice = first_repeated(scenes)
    if twice is not None:
        raise usage(f"{scenes[twice]}: the same scene directory is given twice; name each scene once")
    names = names or [s.name for s in scenes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise usage(f"two scene directories share the name {duplicates[0]!r}; their outputs would collide")
    reserved = Path(SUMMARY_NAME).stem
    for scene, name in zip(scenes, names):
        if name == reserved:
            raise usage(f"{scene}: a scene named {reserved!r} would overwrite the run summary; rename the directory")
        inside = output_in_scene(output, scene)
        if inside:
            raise usage(inside)
        inner = next((o for o in scenes if o != scene and scene in o.parents), None)
        if inner is not None:
            raise usage(f"{scene}: holds another scene {inner}; give each scene directory once, not a parent")


def output_in_scene(output: Path, scene: Path, what: str = "the output directory") -> str | None:
    """The refusal of an output folder (`what`) that is a scene directory or lies in it (ddrf-run, ddrf.fuse_scene)."""
    if output == scene or scene in output.parents:
        return f"{output}: {what} is inside scene {scene}; choose one outside it"
    return None


def refuse_outputs_in_inbox(inbox: Path, output: Path, catalog: Path | None) -> None:
    """--watch: every folder in the inbox is taken for a scene (but hidden ones), so a catalogue or output folder
    there would be one skipped without a word: a scene never fused (a delivery already there, or one landing later
    under its name), its folder written into. Only a hidden folder of the inbox may hold them."""
    from ddrf.scenes.discover import delivered

    inbox = inbox.resolve()

    def scene_holding(path: Path) -> Path | None:  # the inbox folder `path` lies in or is, if one taken for a scene
        resolved = path.resolve()
        top = inbox / resolved.relative_to(inbox).parts[0] if inbox in resolved.parents else None
        return top if top is not None and delivered(top.name) else None

    if catalog is not None and scene_holding(catalog):
        raise usage(f"{catalog}: --stac-catalog is inside the watched inbox {inbox}, where every folder is taken "
                    "for a scene; choose one outside it")
    scene = scene_holding(output)
    if scene is not None and output.resolve() != scene:
        raise usage(f"{output}: the output directory is inside scene {scene} of the watched inbox; choose one "
                    "outside it")
    if scene is not None or output.resolve() == inbox:  # before: taken, and folder `scene` skipped as a scene
        raise usage(f"{output}: the output directory is in the watched inbox {inbox}, where every folder is taken "
                    "for a scene (a delivery of that name would never be fused); choose one outside it")


def refuse_unexpanded_home(paths: dict[str, Path | None]) -> None:
    """Output paths (option -> path) written `~/...` that reached ddrf unexpanded: one usage line rather than a folder
    named `~` made in the current one (`ddrf.files.unexpanded_home`)."""
    from ddrf.files import unexpanded_home

    for option, path in paths.items():
        why = unexpanded_home(path) if path is not None else None
        if why:
            raise usage(f"{option} {path}: {why}")


def check_writable(folder: Path) -> None:
    """One line now rather than a failure per scene: the output folder must exist (made here) and take files."""
    from ddrf.files import cannot_write

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise usage(f"{folder}: cannot write the output here ({exc.strerror})")
    reason = cannot_write(folder)
    if reason:
        raise usage(f"{folder}: cannot write the output here ({reason})")


def check_catalog(catalog: Path | None) -> None:
    """--stac-catalog DIR, once before any scene: an existing DIR/catalog.json loads as a STAC catalogue and DIR takes
    files (or can be made); else one usage line naming catalog.json or DIR."""
    if catalog is None:
        return
    from ddrf.scenes.stac_out import check_catalog as check

    try:
        check(catalog)
    except ValueError as exc:
        raise usage(str(exc))


def check_tile(tile: int, halo: int, engine: Any, batch: int = 1, model: str | None = None,
               given: tuple[bool, bool] = (True, True)) -> None:
    """Say once what the tile and halo round to (whole MS pixels and network strides), and refuse a tile that
    leaves no room inside its halo, before any scene starts; `model` names whose rounding it is, where several
    models may run; `given`: whether --tile and --halo were (the lines name a default as one, not as an option)."""
    from ddrf.scenes.streaming import tile_advice
    from ddrf.scenes.tiling import leaves_no_room, least_tile, round_up, window_alignment

    if engine is None or engine.ratio is None:  # a baseline: alignment is the scene's ratio
        align, why = 1, ""
    else:
        align = window_alignment(engine.ratio, engine.multiple)
        why = f"multiples of {align}: whole MS pixels at ratio {engine.ratio}, network size multiple {engine.multiple}"
    rounded_tile, rounded_halo = round_up(tile, align), round_up(halo, align)
    tile_is = f"--tile {tile}" if given[0] else f"the default tile {tile}"  # `--halo 500` alone: no --tile asked
    if (rounded_tile, rounded_halo) != (tile, halo):
        whose = f" with {model}" if model else ""
        options = " ".join(f"--{name} {value}" for name, value, asked in (("tile", tile, given[0]),
                                                                          ("halo", halo, given[1])) if asked)
        note(f"{options or f'tile {tile}, halo {halo}'} run as tile {rounded_tile}, halo {rounded_halo}{whose} ({why})")
    if leaves_no_room(tile, halo, align):
        run_as = f" (run as {rounded_tile})" if rounded_tile != tile else ""
        # a classical method's halo is ddrf-run's default, no model's, and its output depends on no card's halo
        whose = (" (the model's: a smaller one makes the output depend on the tile)"
                 if getattr(engine, "card", None) is not None and halo == engine.halo else "")
        # not the smallest tile that runs (2 halos + one step), whose windows keep one step each of their side
        fits, least = 2 * rounded_halo + max(align, 1), least_tile(rounded_halo, align)
        raise usage(f"{tile_is}{run_as} leaves no room inside a halo of {rounded_halo} on each side{whose}: use "
                    f"{tile_advice(engine, least)} (windows that keep at least half their side; {fits} would keep "
                    f"{max(align, 1)} px of it, at {(fits / max(align, 1)) ** 2:.0f}x the work), or a smaller --halo")
    limits = getattr(engine, "window_limits", lambda: None)()
    if limits is not None:
        low, high, most = limits
        if not low <= rounded_tile <= high:
            raise usage(f"--tile {tile} (run as {rounded_tile}) is outside the engine's optimisation profile "
                        f"({low}..{high} px): pick a tile in that range or rebuild the engine with ddrf-export engine")
        side = getattr(engine, "window_side", lambda tile, halo: tile)(rounded_tile, rounded_halo)
        if side > high:
            raise usage(f"--halo {halo} below the model's {engine.halo} widens each {rounded_tile} px window to "
                        f"{side} px (the graph leaves its output margin uncomputed), past the engine's optimisation "
                        f"profile ({low}..{high} px): use --halo {engine.halo}, a tile of at most "
                        f"{high - (side - rounded_tile)}, or rebuild the engine with ddrf-export engine")
        if batch > most:
            raise usage(f"--batch {batch} exceeds the engine's optimisation profile (at most {most})")
    model_halo = engine.halo if getattr(engine, "card", None) is not None else None  # a baseline needs none
    whose = f" ({model})" if model else ""
    if model_halo is not None and rounded_halo < model_halo:  # said once the run is sure to go ahead
        note(f"--halo {halo} is below the model's {model_halo}{whose}: the output will depend on the tile size")
    elif model_halo is not None and rounded_halo > round_up(model_halo, align):
        # silent before: a wider halo reads as more accurate, but on the sample scene --halo 192 changed no band by
        # more than 0.3 % of its standard deviation (within the tile invariance), at more windows or larger ones
        note(f"--halo {halo} is above the model's {model_halo}{whose}: its tiles already agree at its own halo, so "
             "the wider one only adds work")


def dry_run(jobs: "list[SceneJob]", spec: "EngineSpec", settings: "RunSettings") -> int:
    """Print each scene's plan (model, windows, output size, free space) and run nothing; 1 when a scene cannot
    run."""
    from ddrf.scenes.jobs import before_fusing, halo_cost, one_line, open_with_engine, plan_scene, unnamable
    from ddrf.scenes.engines import check_fit
    from ddrf.scenes.streaming import Outputs

    failed = 0
    for job in jobs:
        outputs = Outputs.for_raster(job.raster, settings.spread, settings.quicklook)
        too_long = unnamable(outputs)
        verdict = ("failed", too_long) if too_long else before_fusing(job, spec, outputs, settings.overwrite)
        if verdict is not None:  # as the real run would: skip a finished output, refuse a path it may not write
            failed += verdict[0] == "failed"
            if verdict[0] == "skipped":
                note(f"{job.name}: {verdict[1]}", "scene", True, name=job.name, status="skipped", reason=verdict[1])
            else:
                note(verdict[1], "scene", name=job.name, status="failed", error=verdict[1])
            continue
        try:
            scene, engine = open_with_engine(job, spec)
            check_fit(scene, engine, job.source)
            plan = plan_scene(scene, engine, outputs, settings)
        except Exception as exc:
            failed += 1
            note(one_line(exc, job), "scene", name=job.name, status="failed", error=one_line(exc, job))
            continue
        say_plan(job.name, plan, engine.summary().get("model"))
        for line in halo_cost(job.name, plan, engine):
            note(line, scene=job.name)
    return 1 if failed else 0


def say_plan(name: str, plan: dict[str, Any], model: dict[str, Any] | None) -> None:
    """A dry run's plan of one scene: a line of text, or its numbers as fields of a json record."""
    from ddrf.scenes.jobs import describe_plan, fits_on_disk

    fits = fits_on_disk(plan)
    named = f", model {model['name']} ({model['path']})" if model else ""
    grid = plan["grid"]
    note(f"{describe_plan(name, plan)}{named}{'' if fits else ' -- DOES NOT FIT on the disk'}", "plan", True,
         scene=name, height=plan["height"], width=plan["width"], windows=plan["tiles"],
         window=[grid.tile_rows, grid.tile_cols], halo=grid.halo, output_bytes=plan["output_bytes"],
         free_bytes=plan["free_bytes"], map_bytes=plan.get("map_bytes", 0), map_free_bytes=plan.get("map_free_bytes"),
         fits=fits,
         model={k: model[k] for k in ("name", "path")} if model else None)


@contextmanager
def wrappers_removed_on_exit(output: Path) -> Iterator[list[Any]]:
    """Around what ddrf-run does between writing the STAC Items' band wrappers (item_jobs fills the list this yields)
    and running their scenes: should it stop there (a usage error such as a later bad Item, clashing outputs or an
    output folder that takes no files; Ctrl-C), the wrappers this invocation wrote go (remove_wrappers), and OUT
    itself where this invocation made it and they leave it empty. An earlier run's folders, a published scene's
    wrappers and whatever else was there before stay."""
    made_output = not output.exists()
    written: list[Any] = []
    try:
        yield written
    except BaseException:
        if written:
            from ddrf.scenes.stac_in import remove_wrappers

            for job in written:
                remove_wrappers(job)
            if made_output:
                try:
                    output.rmdir()
                except OSError:  # not empty: something else is in it now
                    pass
        raise


def split_arguments(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """(scene directories, STAC Item references: .json files and URLs)."""
    from ddrf.scenes.stac_in import is_item_reference

    items = [a for a in arguments if is_item_reference(a)]
    return [Path(a).absolute() for a in arguments if a not in items], items


def item_jobs(references: list[str], output: Path, wrappers: Path | None = None,
              written: list[Any] | None = None) -> tuple[list[Any], dict[str, Any]]:
    """One job per STAC Item; a bad Item is a usage error naming it (before any scene runs), but an asset that cannot
    be opened fails only its own scene when it runs (job_from_item). `wrappers`: where the
    band VRTs go instead of OUT/.ddrf-stac (a dry run's temporary folder). `written` (see wrappers_removed_on_exit):
    gets each job whose wrapper folder this call makes, as soon as it starts writing there, so that a usage error
    raised here or later removes them."""
    from ddrf.scenes.stac_in import job_from_item

    if output.suffix.lower() in (".tif", ".tiff"):
        raise usage(f"{output}: with STAC Items, -o names an output directory")
    given = [r if r.lower().startswith(("http://", "https://")) else str(Path(r).resolve()) for r in references]
    twice = next((r for i, r in enumerate(references) if given[i] in given[:i]), None)
    if twice is not None:
        raise usage(f"{twice}: the same STAC Item is given twice; name each Item once")
    jobs, sources = [], {}
    for reference in references:
        try:
            job, item = job_from_item(reference, output, wrappers, written)
        except ValueError as exc:
            raise usage(" ".join(str(exc).split()))
        except OSError as exc:  # the band wrappers' folder under OUT
            raise usage(f"{exc.filename or output}: cannot write the output here ({exc.strerror})")
        if job.name in sources:
            raise usage(f"two STAC Items share the id {job.name!r}; their outputs would collide")
        jobs.append(job)
        sources[job.name] = item
    refuse_colliding_outputs([(reference, job.raster) for reference, job in zip(references, jobs)])
    return jobs, sources
