"""`ddrf-eval DATASET [--methods ...] [--mode ...] [--bands ...] [--tile N | --whole-image] [--simulate-ratio 4]
[--csv F] [--json F] [--figure F.png] [--overwrite]`.

DATASET is pancollection:FILE.h5, fusebox:DIR or pairs:DIR. Classical runs never import torch. DDRF fuses through
ddrf-run's tiled path unless --whole-image.
"""
from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from ddrf.runtime.noise import MAX_SEED

app = typer.Typer(add_completion=False, help="Evaluate pansharpening methods with toolbox-exact metrics.")


@app.command()
def main(
    dataset: str = typer.Argument(..., help="pancollection:FILE.h5 | fusebox:DIR | pairs:DIR"),
    methods: str = typer.Option("classical", "--methods", help="comma list: EXP,Brovey,BT-H,GSA,BDSD-PC,"
                                "MTF-GLP-FS,MTF-GLP-HPM (toolbox-exact), classical (all of them), named departures "
                                "GSA-gauss,BDSD-PC-unitdc,MTF-GLP-FS-unitdc,MTF-GLP-HPM-robust or variants (all of "
                                "them), ddrf:MODEL_DIR, ckpt:PATH"),
    mode: str = typer.Option("auto", "--mode", help="reduced | full | both | auto (reduced when a reference exists)"),
    border: int = typer.Option(0, "--border", help="pixels cropped on every side before scoring (fused grid)"),
    acquisitions: str = typer.Option("P034R032", "--acquisitions", help="fusebox: 'all' or comma list"),
    sensor: Optional[str] = typer.Option(None, "--sensor", help="MTF table entry (default: from the data)"),
    divisor: Optional[float] = typer.Option(None, "--divisor", help="pancollection DN divisor (default: name)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="DDRF sampling steps (default: the card's)"),
    samples: int = typer.Option(1, "--samples", min=1, help="DDRF: mean of this many seeds"),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="DDRF: first seed"),
    backend: str = typer.Option("ort-cpu", "--backend", help="DDRF ONNX backend"),
    tile: Optional[int] = typer.Option(None, "--tile", help="DDRF window side in PAN px (default: ddrf-run's for "
                                       "the backend; checkpoints: its CPU default)"),
    whole_image: bool = typer.Option(False, "--whole-image", help="DDRF fuses each image at once, not tiled"),
    views: bool = typer.Option(False, "--views", help="DDRF: the --samples are views of each window (turned and "
                               "flipped, each with its own seed), as ddrf-run --ensemble N fuses them"),
    simulate_ratio: Optional[int] = typer.Option(None, "--simulate-ratio", help="fusebox/pairs: simulate this "
                                                 "ratio (4) from ratio-2 pairs by Wald's protocol (reduced only)"),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="per-image CSV"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="settings + summary + per-image JSON"),
    figure: Optional[Path] = typer.Option(None, "--figure", help="quicklook PNG of one image"),
    figure_image: Optional[str] = typer.Option(None, "--figure-image", help="image name or 0-based index"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
    bands: Optional[str] = typer.Option(None, "--bands", help="fusebox/pairs: the MS bands to score, comma list "
                                        "(fusebox: from red,green,blue,nir,swir1,swir2; default blue,green,red,nir. "
                                        "pairs: by the pair's band names; default all)"),
    fit_spread: bool = typer.Option(False, "--fit-spread", help="instead of scoring: fit the spread calibration of "
                                    "the one ddrf:MODEL on these images (reduced protocol, --samples N >= 2 seeds, "
                                    "or views with --views) and write it into MODEL/card.json, which ddrf-run "
                                    "--uncertainty N (with --ensemble N for views) applies"),
) -> None:
    try:
        tiling = parse_tiling(tile, whole_image, views)
        chosen_bands = named_bands(bands) if bands is not None else None
        if fit_spread:
            refuse_with_fit_spread({"--csv": csv_path, "--json": json_path, "--figure": figure,
                                    "--figure-image": figure_image, "--border": border,
                                    "--mode": mode if mode not in ("auto", "reduced") else None})
            fit_spread_calibration(dataset, methods, acquisitions, sensor, divisor, steps, samples, seed, backend,
                                   tiling, simulate_ratio, chosen_bands)
            return
        evaluate(dataset, methods, mode, border, acquisitions, sensor, divisor, steps, samples, seed, backend,
                 csv_path, json_path, figure, figure_image, overwrite, tiling, simulate_ratio, chosen_bands)
    except ValueError as exc:
        typer.echo(f"ddrf-eval: error: {exc}", err=True)
        raise typer.Exit(2)


def evaluate(dataset: str, methods: str, mode: str, border: int, acquisitions: str, sensor: str | None,
             divisor: float | None, steps: int | None, samples: int, seed: int, backend: str,
             csv_path: Path | None, json_path: Path | None, figure: Path | None, figure_image: str | None,
             overwrite: bool, tiling: Any = None, simulate_ratio: int | None = None,
             bands: tuple[str, ...] | None = None) -> None:
    from ddrf.evaluate import report
    from ddrf.evaluate.datasets import open_dataset
    from ddrf.files import check_outputs
    from ddrf.evaluate.methods import Tiling, parse_methods
    from ddrf.evaluate.runner import run, summarise

    check_outputs({"--csv": csv_path, "--json": json_path, "--figure": figure}, overwrite,
                  input_paths(dataset, methods))
    if figure is not None and figure.suffix.lower() != ".png":
        raise ValueError(f"{figure}: --figure must name a .png file")
    data = open_dataset(dataset, acquisitions, sensor, divisor, simulate_ratio, bands)
    protocols = data.protocols(mode)
    chosen = parse_methods(methods, steps, samples, seed, backend, tiling or Tiling())
    keep = _figure_picker(figure_image, protocols[0]) if figure is not None else (lambda s: False)
    settings = _settings(data, protocols, chosen, border, mode)  # loads DDRF models: fail before any fusion
    mark_in_sample(settings)
    results = run(data.samples(mode), chosen, border, keep)
    if figure is not None and results.kept.sample is None:  # before any output is written: all of them or none
        raise ValueError(f"--figure-image {figure_image!r}: no such image (give a name from the table or an index); "
                         f"nothing written")
    summary = summarise(results.records)
    typer.echo(report.format_table(summary, settings, results.records))
    if csv_path is not None:
        report.write(csv_path, report.csv_text(results.records))
    if json_path is not None:
        report.write(json_path, report.json_text(settings, summary, results.records))
    if figure is not None:
        _write_figure(results.kept, figure)


def named_bands(bands: str) -> tuple[str, ...]:
    """--bands as names: no empty name and none twice (ddrf-run's rule)."""
    from ddrf.scenes.preflight import band_names

    try:
        return band_names(bands)
    except ValueError as exc:
        raise ValueError(f"--bands {exc}") from None


def input_paths(dataset: str, methods: str) -> list[Path]:
    """The files and folders a run reads: the dataset's, and each ddrf: model's (a bundled one's folder where it is
    named) or ckpt: checkpoint's."""
    from ddrf.bundled import model_folder

    def path(entry: str) -> Path:
        kind, _, rest = entry.partition(":")
        try:
            return model_folder(rest) if kind == "ddrf" else Path(rest)
        except ValueError:  # no such model: the methods' parsing says so
            return Path(rest)

    named = [dataset, *(m.strip() for m in methods.split(",") if m.strip().startswith(("ddrf:", "ckpt:")))]
    return [path(entry) for entry in named if ":" in entry]


def refuse_with_fit_spread(given: dict[str, Any]) -> None:
    """--fit-spread writes only MODEL/card.json, on the reduced protocol's whole images: an option of a scoring run
    given with it would be ignored without a word."""
    if named := [f"{k} {v}" for k, v in given.items() if v]:
        raise ValueError(f"{', '.join(named)}: not with --fit-spread, which fits on the reduced protocol's whole "
                         f"images and writes only MODEL/card.json; run the scoring separately")


def fit_spread_calibration(dataset: str, methods: str, acquisitions: str, sensor: str | None,
                           divisor: float | None, steps: int | None, samples: int, seed: int, backend: str,
                           tiling: Any, simulate_ratio: int | None, bands: tuple[str, ...] | None) -> None:
    """c for one exported model from the user's reference images, pooled over all of them, written to its card with
    the N it was fitted at; the coverage c gives per image is printed (in-sample), and with two or more images also
    the coverage on the others of a c fitted on the first alone (out of sample)."""
    from ddrf.evaluate.datasets import REDUCED, open_dataset
    from ddrf.evaluate.methods import OnnxDDRF, Tiling, parse_methods
    from ddrf.evaluate.spread import calibrate, pooled_factor, spread_figures, store_factor
    from ddrf.model_dir import CARD_NAME

    if samples < 2:
        raise ValueError(f"--fit-spread needs --samples N >= 2 (8 is what the bundled cards were fitted with), "
                         f"got {samples}")
    chosen = parse_methods(methods, steps, samples, seed, backend, tiling or Tiling())
    method = chosen[0] if len(chosen) == 1 else None
    if not isinstance(method, OnnxDDRF):
        raise ValueError("--fit-spread takes exactly one exported model: --methods ddrf:MODEL_DIR")
    refuse_bundled(method.model_dir)
    data = open_dataset(dataset, acquisitions, sensor, divisor, simulate_ratio, bands)
    mark_in_sample({"data": data.settings, "methods": {method.name: method.settings()}})
    images = list(data.samples(REDUCED))
    if not images:
        raise ValueError(f"{dataset}: no image with a reference (the reduced protocol) to fit the spread on")
    zs = []
    for sample in images:
        assert sample.ref is not None, "reduced-resolution samples carry their reference"
        zs.append(spread_figures(method.fuse_samples(sample), sample.ref)["z"])
    c = round(pooled_factor(zs), 3)
    for sample, z in zip(images, zs):
        typer.echo(f"{sample.name}: +-2 sigma x {c} covers {100 * float((z <= c).mean()):.1f} %")
    if len(zs) > 1:
        check = calibrate(zs)
        typer.echo(f"fitted on {images[0].name} alone (c = {check['c']:.3f}), the others: "
                   f"{100 * check['coverage_held_out']:.1f} % covered")
    steps, views = method.fuser().steps, method.tiling.views
    store_factor(method.model_dir, c, samples, steps, views)
    typer.echo(f"{method.model_dir / CARD_NAME}: spread_calibration{'_views' if views else ''} = {c} at N = "
               f"{samples} {'views' if views else 'seeds'}, K = {steps} (from {len(images)} image(s) of {dataset})")



def refuse_bundled(folder: Path) -> None:
    """--fit-spread rewrites the model's card; a bundled model's serves every run of the install, so a copy is fitted
    (benchmarks/steps_samples.py --write-calibration is how the bundled cards are fitted)."""
    from ddrf.bundled import is_bundled

    if is_bundled(folder):
        raise ValueError(f"{folder}: a bundled model, whose card every run of this install uses; --fit-spread "
                         f"would rewrite it, so fit a copy: cp -r {shlex.quote(str(folder))} ./{folder.name}, then "
                         f"--methods ddrf:./{folder.name} --fit-spread")

def parse_tiling(tile: int | None, whole_image: bool, views: bool = False) -> Any:
    from ddrf.evaluate.methods import Tiling

    return Tiling(whole_image=whole_image, tile=tile, views=views)


def mark_in_sample(settings: dict[str, Any]) -> None:
    """A model scored (or its spread fitted) on FuseBox acquisitions its card says it was trained on: said once and
    recorded, since results there are not held out (the default acquisition is held out of every bundled model)."""
    chosen = set(settings["data"].get("scored_acquisitions") or [])
    for name, method in settings["methods"].items():
        if seen := sorted(chosen & set(method.pop("trained_on", None) or [])):
            method["in_sample_acquisitions"] = seen
            typer.echo(f"ddrf-eval: {name} was trained on acquisition(s) {', '.join(seen)} of these images (its "
                       f"card's training.acquisitions_used): results on them are in-sample, not held out", err=True)


def _figure_picker(choice: str | None, protocol: str) -> Any:
    """Predicate on streamed samples: the first image, the one named, or the N-th (0-based) of `protocol`."""
    seen: list[str] = []

    def keep(sample: Any) -> bool:
        if sample.protocol != protocol:
            return False
        seen.append(sample.name)
        if choice is None:
            return True
        return sample.name == choice or (choice.isdigit() and len(seen) - 1 == int(choice))

    return keep


def _write_figure(kept: Any, path: Path) -> None:
    from ddrf.evaluate.figure import make_figure

    width, height = make_figure(kept.sample, kept.fused, path)
    typer.echo(f"figure {path} ({width}x{height} px, image {kept.sample.name})")


def _packages(methods: list[Any]) -> tuple[str, ...]:
    """Installed versions worth recording: onnxruntime only for ONNX methods, torch only for checkpoints."""
    from ddrf.evaluate.report import PACKAGES

    kinds = {type(m).__name__ for m in methods}
    skip = {"onnxruntime"} - ({"onnxruntime"} if "OnnxDDRF" in kinds else set())
    skip |= {"torch"} - ({"torch"} if "CheckpointDDRF" in kinds else set())
    return tuple(p for p in PACKAGES if p not in skip)


def _settings(data: Any, protocols: list[str], methods: list[Any], border: int, mode: str) -> dict[str, Any]:
    from ddrf.evaluate.report import versions
    from ddrf.evaluate.runner import BLOCK

    return {
        "command": shlex.join(["ddrf-eval", *sys.argv[1:]]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": data.spec, "kind": data.kind, "mode": mode, "protocols": protocols,
        "border": border, "q2n_block": BLOCK, "q2n_cast": "uint16 DN (toolbox)",
        "ratio": data.settings.get("ratio"), "sensor": data.settings.get("sensor"),
        "lms": "interp23 (23-tap, circular border)", "std": "population (ddof 0)",
        "full_resolution_crop": f"after the border, centred ratio-aligned crop to a multiple of {BLOCK} px",
        "psnr_data_range": "maximum of the (cropped) reference, per image",
        "data": data.settings,
        "methods": {m.name: m.settings() for m in methods},
        "software": versions(_packages(methods)),
    }


if __name__ == "__main__":
    app()
