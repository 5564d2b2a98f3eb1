"""`ddrf-finetune SCENE_DIR... --out RUN`: fine-tune a bundled model (or any model with weights) on your own scenes.

The scene directories are the ones `ddrf-run` reads, found and aligned by the same discovery. Training pairs come
from Wald's protocol (the scene's MS is the reference; PAN and MS are degraded by the sensor's MTFs); a ratio-4
model fine-tuned on ratio-2 scenes gets ratio 4 simulated the same way. Training starts from the model's EMA
weights with a constant learning rate after a short warm-up, so a time budget (`--minutes`) may end it at any step.
The run directory is a normal `ddrf-train` run (`--resume` continues it); its exported model directory, `RUN/model`,
is what `ddrf-run --model` takes.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import typer

from ddrf.files import first_repeated

app = typer.Typer(add_completion=False, help="Fine-tune a DDRF model on your own scene directories.")
EXPORTED = "model"  # RUN/model: the exported model directory
BASE_MEAN = "mean"  # RUN/mean: the mean of the fine-tuned and the base weights (--base-mean); RUN/mean/model exported


@app.command()
def main(
    scenes: list[Path] = typer.Argument(..., help="scene directories to train on (what ddrf-run reads)"),
    out: Path = typer.Option(..., "--out", help="run directory; the exported model goes to OUT/model"),
    model: Optional[str] = typer.Option(None, "--model", help="bundled model name, model directory with "
                                        "model.safetensors, or training run (default: the bundled model that "
                                        "fits the first scene)"),
    minutes: Optional[float] = typer.Option(None, "--minutes", min=0.01, help="time budget of this invocation"),
    steps: int = typer.Option(5000, "--steps", min=1, help="most optimiser steps (the budget may end sooner)"),
    lr: float = typer.Option(1e-4, "--lr", help="learning rate after the warm-up"),
    batch: int = typer.Option(8, "--batch", min=1),
    patch: int = typer.Option(64, "--patch", min=8, help="training patch side on the training pairs' PAN grid, "
                              "which Wald's protocol makes the scene's MS grid"),
    hold_out: list[str] = typer.Option([], "--hold-out", help="scene directory name kept out of training"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads"),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run in --out"),
    base_mean: bool = typer.Option(False, "--base-mean", help="also export OUT/mean/model, the mean of the "
                                   "fine-tuned and the base weights: most of the gain on your scenes, less forgotten "
                                   "of the base's (docs/EVALUATION.md)"),
) -> None:
    from ddrf.train.config import TrainConfig
    from ddrf.train.loop import train

    try:
        twice = first_repeated(scenes)
        if twice is not None:
            raise ValueError(f"{scenes[twice]}: the same scene directory is given twice; name each scene once")
        first, ratio = _first_scene(scenes[0])
        weights, card = _base_model(model, scenes, first, ratio)
        cfg = TrainConfig.from_dict(finetune_config(card, weights, scenes, ratio, minutes, steps, lr, batch, patch,
                                                    hold_out, threads, seed))
        command = shlex.join(["ddrf-finetune", *sys.argv[1:]])
        _check_outputs(out, base_mean)  # before the training time is spent
        result = train(cfg, out, resume=resume, overwrite=overwrite, command=command, inputs=[*scenes, weights])
        if _finished_before(result, out, base_mean):
            typer.echo(f"nothing to train: the run in {out} is at step {result.end_step} of --steps {steps}; its model "
                       f"{out / EXPORTED} is kept")
            return
        exported = export_run(out)
        if base_mean:
            mean_exported = _export_base_mean(out, weights, card, command, exported)
    except (ValueError, FileExistsError, FloatingPointError) as exc:  # FloatingPointError: the loss diverged
        typer.echo(f"ddrf-finetune: error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # disk full or a file-size limit while checkpointing, as ddrf-train says it
        typer.echo(f"ddrf-finetune: error: {exc.filename or out}: cannot write ({exc.strerror})", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"trained steps {result.start_step}->{result.end_step} in {result.seconds / 60:.1f} min from "
               f"{weights}; model: {exported} (ddrf-run SCENE -o OUT --model {exported})")
    if base_mean:
        typer.echo(f"mean with the base: {mean_exported}")


def _finished_before(result: Any, out: Path, base_mean: bool) -> bool:
    """A resumed run that trained nothing and whose models were exported at its last step: exporting again would only
    replace what was fitted into them since (ddrf-eval --fit-spread)."""
    from ddrf.card import read_card
    from ddrf.model_dir import CARD_NAME

    def exported_at_end(folder: Path) -> bool:
        try:
            return read_card(folder / EXPORTED / CARD_NAME).training.get("iterations") == result.end_step
        except (OSError, ValueError):  # none, or unreadable: export it
            return False

    folders = [out] + ([out / BASE_MEAN] if base_mean else [])
    return result.end_step == result.start_step and all(exported_at_end(f) for f in folders)


def _check_outputs(out: Path, base_mean: bool) -> None:
    """The folders the command exports into must be folders (or not exist yet)."""
    for folder in [out / EXPORTED] + ([out / BASE_MEAN] if base_mean else []):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder}: exists and is not a directory (ddrf-finetune exports a model there)")


def _export_base_mean(out: Path, weights: Path, card: Any, command: str, exported: Path) -> Path:
    """OUT/mean: the mean of the fine-tuned and the base weights, exported; a failure says that the fine-tuned
    model itself was written."""
    from ddrf.train.checkpoint import average_weights

    try:
        average_weights([out, weights], out / BASE_MEAN, command, overwrite=True)
        return export_run(out / BASE_MEAN, calibrated_by=card)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{out / BASE_MEAN}: the mean with the base was not written ({exc}); the fine-tuned model "
                         f"is in {exported}") from None


def _first_scene(directory: Path) -> tuple[Any, int]:
    """What discovery finds in the first scene directory, and its PAN/MS ratio (ddrf.geometry's, as ddrf-run's)."""
    from ddrf.geometry import integer_ratio
    from ddrf.scenes.discover import discover_scene, open_raster

    found = discover_scene(directory)
    with open_raster(found.pan) as pan, open_raster(found.ms[0][0]) as ms:
        return found, integer_ratio(pan.transform, ms.transform)


def _base_model(model: Optional[str], scenes: list[Path], first: Any, ratio: int) -> tuple[Path, Any]:
    """The weights to start from and their card: a path, a bundled model's name, or the bundled model that fits."""
    from ddrf.bundled import choose_model, model_folder
    from ddrf.train.checkpoint import WEIGHTS, read_weights

    if model is not None:
        path = model_folder(model)
    else:
        # ddrf-run's advice (a classical --method, or a fine-tuned model) means nothing here: nothing to start from
        source = ",".join(map(str, scenes))
        instead = (f"a model trained from scratch on these scenes: ddrf-train CONFIG data.source=scenes:{source} "
                   "--out RUN (configs/hyperion_holdout.yaml is one for a hyperspectral cube at ratio 3), or a base "
                   "model of the scenes' ratio and bands passed with --model")
        path = choose_model(str(scenes[0]), ratio, first.band_names, len(first.ms), first.sensor,
                            instead=instead).path
    weights = path / WEIGHTS if path.is_dir() else path
    if not weights.is_file():
        raise ValueError(f"{path}: no {WEIGHTS} to start from (export with `ddrf-export onnx --weights`, or pass "
                         f"the training run)")
    return weights, read_weights(weights)[2]


def finetune_config(card: Any, weights: Path, scenes: list[Path], scene_ratio: int, minutes: Optional[float],
                    steps: int, lr: float, batch: int, patch: int, hold_out: list[str], threads: Optional[int],
                    seed: int) -> dict[str, Any]:
    """The ddrf-train configuration: the base model's topology, bands, normalisation and diffusion, warm-started."""
    norm = card.normalisation
    if norm.kind not in ("scene", "bit_depth"):
        raise ValueError(f"{weights}: a model with {norm.kind} normalisation cannot be fine-tuned on scenes "
                         f"(it needs scene or bit_depth)")
    if scene_ratio != card.ratio and not (scene_ratio == 2 and card.ratio == 4):
        raise ValueError(f"{scenes[0]}: scene ratio {scene_ratio} cannot train a ratio-{card.ratio} model "
                         f"(only ratio 4 is simulated, from ratio-2 scenes)")
    topology = {k: v for k, v in card.model.items() if k not in ("ms_bands", "guide_bands")}
    return {
        "data": {"source": "scenes:" + ",".join(str(s) for s in scenes), "test_acquisitions": list(hold_out),
                 # a band-wise model learns from every band the scenes have
                 "bands": card.scene_bands, "band_wise": card.band_wise,
                 "normalisation": norm.kind, "percentiles": [norm.low, norm.high],
                 "patch": patch, "augment": True, "lms_border": card.lms_border,
                 "simulate_ratio": card.ratio if scene_ratio != card.ratio else None},
        "model": {"preset": "small_v2" if topology.get("arch") == "v2" else "small", "overrides": topology,
                  "init": str(weights),
                  # the run's card serves as the base's (every export of it, not only RUN/model)
                  "serving": {"scene_statistics": card.scene_statistics, "halo": card.halo,
                              **({"staged": card.staged} if card.staged else {}), **card.calibration()}},
        "diffusion": {"target": card.target, "residual": card.residual, "residual_scale": card.residual_scale,
                      "num_timesteps": card.schedule["num_timesteps"], "s": card.schedule["s"],
                      "sampling_steps": card.sampling_steps},
        "optim": {"steps": steps, "batch": batch, "lr": lr, "warmup": min(50, max(1, steps // 10)),
                  "min_lr_ratio": 1.0, "ema_decay": 0.995, "ema_start": 0, "seed": seed, "threads": threads,
                  "max_minutes": minutes},
        "log": {"every": 25, "checkpoint_every": 100, "progress": sys.stderr.isatty()},
    }


def export_run(run: Path, calibrated_by: Any = None) -> Path:
    """RUN/model: the ONNX graphs (FP32, FP16, and the card's K-step sampler as one graph, which ddrf-run prefers),
    the card and the EMA weights, replacing an earlier export. A fine-tuning run's card already serves as its base
    model's (`model.serving`: halo, scene statistics, staged graphs, spread calibration); `calibrated_by`: a card
    whose spread calibration to put back where averaging dropped it (the mean with the base)."""
    from ddrf.export.onnx_export import export_model, output_margin
    from ddrf.train.checkpoint import WEIGHTS, load_checkpoint, write_inference_weights

    target = run / EXPORTED
    model, card = load_checkpoint(run)
    if calibrated_by is not None:
        card = replace(card, **calibrated_by.calibration())
    card.output_margin = output_margin(card)  # as ddrf-export onnx does by default
    steps = (card.sampling_steps,) + ((1,) if card.staged and card.sampling_steps != 1 else ())  # staged: 1 step
    export_model(model, card, target, unrolled_steps=steps, overwrite=True)
    write_inference_weights(run, target / WEIGHTS)
    return target


if __name__ == "__main__":
    app()
