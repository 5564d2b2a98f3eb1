"""`ddrf-profile`: cold start, per-stage latency percentiles, throughput and memory of a model or TensorRT engine.

    ddrf-profile MODEL_DIR [--backend ort-cpu,torch] [--tile 128,256] [--steps 1,2,4] [--json r.json] [--plot r.png]
    ddrf-profile ENGINE.plan --backend tensorrt          (one engine on its own, with its per-layer profile)

Every sweep point (backend x precision x tile x batch x sampler x steps) is timed in its own worker process. Outputs:
a table on stdout, --json (schema ddrf/profile/schema.json), --csv, --plot. --scene-size WxH projects a whole scene
from the measured latency with ddrf-run's tiling; --scene DIR times ddrf-run on a real scene.
MODEL_DIR may be a bundled model's name (landsat_ratio4), as for ddrf-run --model.
Exit codes: 0 something was measured, 1 bad model/engine path or nothing could run here, 2 usage error.
Never imports torch (only a torch worker does).
"""
from __future__ import annotations

import os

import shlex
from pathlib import Path
from typing import Any, Optional

import typer

from ddrf.model_dir import PRECISIONS
from ddrf.profile.spec import SAMPLERS, PointSpec, is_engine
from ddrf.runtime.backends import BACKENDS as RUNTIME_BACKENDS, PROFILE_BACKENDS

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"ddrf-profile: {message}", err=True)
    return typer.Exit(code)


def split_list(values: list[str] | str | None) -> list[str]:
    """Repeatable and/or comma-separated option values, in order, without duplicates."""
    items = [values] if isinstance(values, str) else list(values or [])
    out: list[str] = []
    for item in items:
        out += [v.strip() for v in item.split(",") if v.strip() and v.strip() not in out]
    return out


def int_list(name: str, text: str | None, minimum: int = 1) -> list[int]:
    values = split_list(text)
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        raise fail(f"{name} takes integers separated by commas, got {text!r}", 2)
    if not numbers or any(n < minimum for n in numbers):
        raise fail(f"{name} values must be >= {minimum}, got {text!r}", 2)
    return numbers


def choices(name: str, values: list[str], allowed: tuple[str, ...]) -> list[str]:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise fail(f"unknown {name} {bad[0]!r}; choose from {', '.join(allowed)}", 2)
    return values


def model_target(given: str) -> Path:
    """TARGET as given, or, where no such path exists, the bundled model of that name (`landsat_ratio4`), as
    ddrf-run --model, ddrf-eval and ddrf-export take it (ddrf.bundled.model_folder)."""
    target = Path(given)
    if target.exists() or is_engine(target):
        return target
    from ddrf.bundled import model_folder

    try:
        return model_folder(given)  # the text as typed: Path() drops the './' that marks a path
    except ValueError as exc:
        raise fail(" ".join(str(exc).split()), 1)


def open_target(target: Path) -> tuple[dict[str, Any], Any]:
    """(target entry for the report, the model card or None); exit 1 with one line when it is unusable."""
    if is_engine(target):
        from ddrf.engines.sidecar import read_sidecar, sidecar_path_for

        if not target.is_file():
            raise fail(f"{target}: engine file not found", 1)
        side = sidecar_path_for(target)
        card = None
        if side.is_file():
            try:
                card = read_sidecar(side).card
            except ValueError as exc:
                raise fail(" ".join(str(exc).split()), 1)
        return {"path": str(target), "kind": "engine", "checkpoint": None, "card": card}, card
    from ddrf.model_dir import ModelDir

    try:
        files = ModelDir.open(target)
    except ValueError as exc:
        raise fail(" ".join(str(exc).split()), 1)
    return {"path": str(target), "kind": "model", "checkpoint": None, "card": files.card.to_dict()}, files.card


def find_checkpoint(target: Path, given: Path | None) -> str | None:
    """The torch backend's weights: --checkpoint, else model.safetensors beside the graphs."""
    if given is not None:
        weights = given / "model.safetensors" if given.is_dir() else given
        if not weights.is_file():
            raise fail(f"{weights}: checkpoint weights not found", 1)
        return str(given)
    beside = target / "model.safetensors"
    return str(target) if beside.is_file() else None


def projections(results: list[dict[str, Any]], card: Any, sizes: list[tuple[int, int]], halo: int,
                notes: list[str]) -> list[dict[str, Any]]:
    from ddrf.profile.projection import project

    if not sizes:
        return []
    if card is None:
        notes.append("no scene projection: the engine's sidecar carries no model card (ratio unknown)")
        return []
    from ddrf.card import ModelCard

    card = ModelCard.from_dict(card) if isinstance(card, dict) else card  # a sidecar carries the card as a dict
    ratio, multiple = int(card.ratio), card.size_multiple
    out = []
    for (height, width), r in ((size, r) for size in sizes for r in results if r["status"] == "ok"):
        try:
            out.append(project(r, height, width, halo, ratio, multiple))
        except ValueError as exc:  # e.g. a tile too small for the halo: ddrf-run would refuse it too
            notes.append(f"no projection of {width}x{height} for tile {r['tile']}: {exc}")
    return out


def serving_halo(card: Any) -> int:
    """The halo ddrf-run takes by default: the card's (a TensorRT sidecar carries the card as a dict, or none)."""
    from ddrf.scenes.tiling import DEFAULT_HALO

    if card is None:
        return DEFAULT_HALO
    return int(card["halo"] if isinstance(card, dict) else card.halo)


def check_tiles(target: Path, tiles: list[int], halo: int, card: Any) -> None:
    """Refuse, before any worker starts, a tile that ddrf-run refuses with this halo (ddrf.scenes.preflight.check_tile):
    timed anyway, its windows crashed inside the graph, whose output margin left them no pixels."""
    from ddrf.scenes.tiling import leaves_no_room, least_tile, round_up, window_alignment

    if card is None:  # an engine without a sidecar: no ratio to align to; the engine's own profile decides
        return
    from ddrf.card import ModelCard

    card = ModelCard.from_dict(card) if isinstance(card, dict) else card  # a sidecar carries the card as a dict
    align = window_alignment(int(card.ratio), card.size_multiple)
    rounded_halo = round_up(halo, align)
    for tile in tiles:
        if leaves_no_room(tile, halo, align):
            run_as = f" (run as {round_up(tile, align)})" if round_up(tile, align) != tile else ""
            # a staged model's small tiles run staged in ddrf-run (ddrf.scenes.staged); these points time the sampler
            how = (f"ddrf-run runs it staged (stage 3's halo {card.staged['decoder_halo']}), which these points do "
                   "not time" if card.staged else "as ddrf-run would refuse it")
            raise fail(f"{target}: --tile {tile}{run_as} leaves no room inside the halo of {rounded_halo} on each "
                       f"side, {how}: use a tile of {least_tile(rounded_halo, align)} or more, or a smaller --halo",
                       2)


def check_tiles_from(tiles_from: Path | None, card: Any) -> None:
    """Refuse a --tiles-from folder whose windows the model cannot read (no scene there, another ratio) before the
    sweep: every point would time synthetic tiles instead, said only in the JSON report's input notes."""
    from ddrf.card import ModelCard
    from ddrf.profile.tiles import open_scene

    if tiles_from is None or not isinstance(card, ModelCard):  # an engine's sidecar card: the worker decides
        return
    why = open_scene(tiles_from, card)[1]
    if why is not None:
        named = why if why.startswith(str(tiles_from)) else f"{tiles_from}: {why}"  # Scene's reasons name the folder
        raise fail(f"{named} (--tiles-from: the model reads no windows there)", 1)


def serving_sampler(card: Any) -> str:
    """The sampler timed unless --sampler names others: a model with scene statistics runs through its unrolled
    sampler only (ddrf.runtime.Fuser), any other through the cached one (a sidecar's card is a dict, or none)."""
    fields = card if isinstance(card, dict) else vars(card) if card is not None else {}
    return "unrolled" if fields.get("scene_statistics") else "cached"


def scene_runs(scene: Path | None, target: Path, results: list[dict[str, Any]], halo: int, timeout: float,
               notes: list[str], sampler: str) -> list[dict[str, Any]]:
    """ddrf-run on the scene once per distinct (backend, tile, batch, steps) that ran what ddrf-run runs: the
    `sampler` (the model's serving one) at the precision the backend loads (FP16 engines for tensorrt)."""
    from ddrf.profile.sweep import run_scene
    from ddrf.runtime.backends import backend_info

    if scene is None:
        return []
    if is_engine(target):
        notes.append("--scene needs a model directory (ddrf-run loads encoder and denoiser); not run for an engine")
        return []
    seen, runs = set(), []
    for r in results:
        key = (r["backend"], r["tile"], r["batch"], r["steps"], r.get("threads"))
        if r["status"] != "ok" or r["backend"] not in RUNTIME_BACKENDS or key in seen \
                or r["precision"] != backend_info(r["backend"]).precision or r["sampler"] != sampler:
            continue
        seen.add(key)
        args = ["--model", str(target), "--backend", r["backend"], "--tile", str(r["tile"]), "--batch",
                str(r["batch"]), "--steps", str(r["steps"]), "--halo", str(halo)]
        if r.get("threads"):
            args += ["--threads", str(r["threads"])]
        run = run_scene(scene, args, timeout)
        run.update({k: r[k] for k in ("backend", "tile", "batch", "steps")})
        runs.append(run)
    if not runs:
        notes.append(f"--scene: no {sampler}-sampler point of a ddrf-run backend ran at the precision ddrf-run "
                     "loads (fp16 for tensorrt, else fp32), so ddrf-run was not timed")
    return runs


def canonical_command(target: Path, backends: list[str], precisions: list[str] | None, tiles: list[int],
                      batches: list[int], steps: str | None, samplers: list[str], runs: int, warmup: int,
                      threads: int | None, checkpoint: Path | None, tiles_from: Path | None, scene_size: list[str],
                      scene: Path | None, halo: int) -> str:
    """The command line that reproduces this profile, every measured setting spelled out (no --precision where
    each backend took its own, which no one list says)."""
    args = [str(target), "--backend", ",".join(backends), "--tile", ",".join(map(str, tiles)),
            "--batch", ",".join(map(str, batches)), "--sampler", ",".join(samplers), "--runs", str(runs),
            "--warmup", str(warmup), "--halo", str(halo)]
    optional = {"--precision": ",".join(precisions) if precisions else None, "--steps": steps, "--threads": threads,
                "--checkpoint": checkpoint, "--tiles-from": tiles_from, "--scene": scene}
    for flag, value in optional.items():
        if value is not None:
            args += [flag, str(value)]
    for size in scene_size:
        args += ["--scene-size", size]
    return "ddrf-profile " + shlex.join(args)


def measure_all(specs: list[PointSpec], timeout: float, quiet: bool) -> list[dict[str, Any]]:
    from ddrf.profile.sweep import run_point

    results = []
    for i, spec in enumerate(specs, 1):
        if not quiet:
            typer.echo(f"[{i}/{len(specs)}] {spec.backend} {spec.precision} tile {spec.tile} batch {spec.batch} "
                       f"{spec.sampler} steps {spec.steps or 'card'} ...", err=True)
        results.append(run_point(spec, timeout))
        if results[-1]["status"] != "ok" and not quiet:
            typer.echo(f"  {results[-1]['status']}: {results[-1]['reason']}", err=True)
    return results


def write_outputs(doc: dict[str, Any], json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> None:
    import json

    from ddrf.files import write_text_atomic
    from ddrf.profile import report

    try:
        if json_path:
            write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
        if csv_path:
            write_text_atomic(csv_path, report.to_csv(doc))
        if plot_path:
            report.plot(doc, plot_path)
    except OSError as exc:
        raise fail(f"{exc.filename}: cannot write ({exc.strerror})", 1)
    except ValueError as exc:
        raise fail(str(exc), 1)


@app.command()
def main(
    given: str = typer.Argument(..., metavar="TARGET", help="Model directory (card.json + ONNX graphs), a bundled "
                                "model's name (landsat_ratio4) or a TensorRT .plan."),
    backend: list[str] = typer.Option(["ort-cpu"], "--backend", "-b",
                                      help=f"Repeatable or comma list: {', '.join(PROFILE_BACKENDS)}."),
    precision: Optional[str] = typer.Option(None, "--precision",
                                            help="Comma list: fp32, fp16. Default: what each backend loads, as "
                                                 "ddrf-run does (fp16 for tensorrt, fp32 for the others)."),
    tile: str = typer.Option("256", "--tile", help="Comma list of tile sides in PAN pixels."),
    batch: str = typer.Option("1", "--batch", help="Comma list of windows per inference call."),
    steps: Optional[str] = typer.Option(None, "--steps", help="Comma list of sampler steps (default: the card's)."),
    sampler: Optional[str] = typer.Option(None, "--sampler",
                                          help="Comma list: cached (encode once + K steps), uncached (condition every "
                                               "step), unrolled (one-graph sampler). Default: unrolled for a model "
                                               "with scene statistics (its only sampler), else cached."),
    runs: int = typer.Option(10, "--runs", min=1, help="Timed warm runs per point."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed runs after the first (cold) one."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (ONNX Runtime, torch)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint",
                                              help="Run directory or model.safetensors for the torch backend."),
    tiles_from: Optional[Path] = typer.Option(None, "--tiles-from",
                                              help="Scene directory to read tiles from (default: bundled sample)."),
    scene_size: list[str] = typer.Option([], "--scene-size", help="WIDTHxHEIGHT (PAN px) to project; repeatable."),
    scene: Optional[Path] = typer.Option(None, "--scene", help="Scene directory: time ddrf-run on it."),
    halo: Optional[int] = typer.Option(None, "--halo", min=0, help="ddrf-run's --halo for the timed windows, "
                                       "projections and --scene (default: the model card's, as ddrf-run takes it)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write one CSV row per point here."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of latency vs steps and tile."),
    timeout: float = typer.Option(600.0, "--timeout", min=1.0, help="Seconds allowed per point."),
    layer_profile: bool = typer.Option(True, "--layer-profile/--no-layer-profile",
                                       help="TensorRT: per-layer times (trtexec --exportProfile layout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --json, --csv and --plot files."),
) -> None:
    """Profile a DDRF model or engine: cold start, warm per-stage latency, throughput, memory."""
    from ddrf.files import check_outputs
    from ddrf.profile import report
    from ddrf.profile.environment import profile_environment
    from ddrf.profile.projection import parse_size
    from ddrf.profile.sweep import expand

    backends = choices("backend", split_list(backend), PROFILE_BACKENDS)
    precisions = choices("precision", split_list(precision), PRECISIONS) if precision else None
    samplers = choices("sampler", split_list(sampler), SAMPLERS)  # none given: the model's, once it is open
    tiles, batches = int_list("--tile", tile, 8), int_list("--batch", batch)
    step_counts: list[int | None] = list(int_list("--steps", steps)) if steps else [None]
    try:
        sizes = [parse_size(s) for s in scene_size]
    except ValueError as exc:
        raise fail(str(exc), 2)
    target = model_target(given)
    outputs = {"--json": json_path, "--csv": csv_path, "--plot": plot_path}
    try:  # before, not after, the sweep
        check_outputs(outputs, overwrite, [p for p in (target, tiles_from, scene) if p is not None])
        if plot_path is not None:
            report.check_plot_format(plot_path)
    except ValueError as exc:
        raise fail(str(exc), 2)
    for what, path in outputs.items():
        if path is not None and not os.access(path.absolute().parent, os.W_OK):
            raise fail(f"{path}: {what} cannot be written (folder {path.absolute().parent} missing or read-only)", 2)
    for path, what in ((scene, "--scene"), (tiles_from, "--tiles-from")):
        if path is not None and not path.is_dir():
            raise fail(f"{path}: {what} is not a directory", 1)
    entry, card = open_target(target)
    halo = serving_halo(card) if halo is None else halo
    check_tiles(target, tiles, halo, card)
    check_tiles_from(tiles_from, card)
    samplers = samplers or [serving_sampler(card)]
    entry["checkpoint"] = find_checkpoint(target, checkpoint) if not is_engine(target) else None
    notes: list[str] = []
    if "torch" in backends and entry["checkpoint"] is None:
        notes.append("torch skipped: only ONNX graphs were given; pass --checkpoint to time PyTorch eager")
    specs = expand(str(target.absolute()), backends, precisions, tiles, batches, step_counts, samplers,
                   runs=runs, warmup=warmup, threads=threads, checkpoint=entry["checkpoint"],
                   scene=str(tiles_from) if tiles_from else None, layer_profile=layer_profile, halo=halo)
    results = measure_all(specs, timeout, quiet)
    command = canonical_command(target, backends, precisions, tiles, batches, steps, samplers, runs, warmup,
                                threads, checkpoint, tiles_from, scene_size, scene, halo)
    doc = report.document(
        command, entry,
        {"runs": runs, "warmup": warmup, "threads": threads, "halo": halo,
         "isolation": "one worker process per point (python -m ddrf.profile.worker)"},
        profile_environment(), results, projections(results, card, sizes, halo, notes),
        scene_runs(scene, target.absolute(), results, halo, timeout, notes, serving_sampler(card)), notes)
    report.validate(doc)
    write_outputs(doc, json_path, csv_path, plot_path)
    typer.echo(report.table(doc))
    if not any(r["status"] == "ok" for r in results):
        raise fail("nothing could be measured here (see the reasons above)", 1)


if __name__ == "__main__":
    app()
