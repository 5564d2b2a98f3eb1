"""`ddrf-export`: checkpoint -> ONNX graphs (`onnx`), ONNX -> TensorRT engines (`engine`), operator check (`check`),
several checkpoints of one network -> their mean (`average`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from ddrf.card import ModelCard

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Export a DDRF checkpoint to ONNX graphs and build TensorRT engines from them.")


def _fail(message: str) -> None:
    typer.echo(f"ddrf-export: error: {' '.join(message.split())}", err=True)
    raise typer.Exit(1)


def _check_out(out: Path) -> None:
    """The output folder can be made and take files, said before any work (and any partial folder)."""
    from ddrf.files import cannot_make

    problem = None if out.is_file() else cannot_make(out)  # a file there: the command says what it expected
    if problem:
        _fail(f"{out}: cannot write the output here ({problem})")


def _parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise typer.BadParameter(f"--unrolled takes comma-separated step counts, got {text!r}") from None
    if any(k < 1 for k in steps):
        raise typer.BadParameter(f"--unrolled step counts must be >= 1, got {text!r}")
    return steps


def _check_shift(card: ModelCard, unrolled: tuple[int, ...]) -> None:
    """The card's sampling shift keeps apart the steps of every sampler the export serves."""
    from ddrf.schedule import CosineSchedule

    schedule = CosineSchedule.from_dict(card.schedule)
    for steps in sorted({card.sampling_steps, *unrolled}):
        problem = schedule.shift_problem(steps)
        if problem:
            raise ValueError(f"{problem} (give another --sampling-shift)")


@app.command("onnx")
def onnx_command(
    spec: str = typer.Argument(..., metavar="CHECKPOINT", help="training run directory, checkpoint .safetensors or "
                               "bundled model name (landsat_ratio2)"),
    out: Path = typer.Option(Path("engines/model"), "-o", "--out", help="model directory to write"),
    unrolled: str = typer.Option("", help="also export the K-step sampler unrolled into one graph, e.g. 1,4"),
    fp16: bool = typer.Option(True, help="also write FP16 graphs (normalisations and softmax stay FP32)"),
    steps: Optional[int] = typer.Option(None, min=1, help="default sampling steps to record in the card"),
    overwrite: bool = typer.Option(False, help="replace the model in OUT (its graphs, card, engines and weights)"),
    weights: bool = typer.Option(False, help="also write model.safetensors (EMA weights only) for PyTorch reference"),
    scene_statistics: bool = typer.Option(False, help="v1 networks: take GroupNorm moments and attention keys once "
                                          "per scene (a scene pass, then every window), so the output does not "
                                          "depend on the tile; exports only the unrolled graphs"),
    staged: bool = typer.Option(False, help="with --scene-statistics and --unrolled 1: also export the 1-step "
                                "sampler as three graphs staged_entry_k1, staged_deep_k1, staged_decoder_k1 (shallow "
                                "levels in full-resolution windows, the deep ones at 1/4 resolution), each tiled "
                                "with a halo of its own (the card's staged)"),
    halo: Optional[int] = typer.Option(None, min=0, help="context margin (PAN pixels) that ddrf-run gives each "
                                       "window of this model, recorded in the card (default 32)"),
    sampling_shift: Optional[float] = typer.Option(None, help="move the sampler's steps to where their log-SNR is this "
                                                   "much higher (nats; negative: noisier steps, the first "
                                                   "staying at pure noise); recorded in the card's schedule and "
                                                   "baked into the unrolled graphs (default: the checkpoint card's, "
                                                   "else 0)"),
    crop: bool = typer.Option(True, help="unrolled samplers of networks without window statistics (v2, or "
                              "--scene-statistics) leave uncomputed the window border that ddrf-run's blend gives "
                              "no weight (card output_margin; the same output, less decoder work)"),
) -> None:
    """Export the encoder and step denoiser graphs (and unrolled samplers) with the model card."""
    from ddrf.bundled import model_folder
    from ddrf.card import STAGED_DEFAULTS
    from ddrf.export.onnx_export import export_model, output_margin
    from ddrf.schedule import CosineSchedule
    from ddrf.train.checkpoint import (WEIGHTS, check_inference_target, load_checkpoint, retire_inference_weights,
                                       write_inference_weights)

    _check_out(out)
    try:
        checkpoint = model_folder(spec)  # a path, else a bundled model's name (its weights ship with it)
        model, card = load_checkpoint(checkpoint)
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out}: exists and is not a directory (ddrf-export onnx writes a model directory)")
        if weights:
            check_inference_target(checkpoint, out / WEIGHTS, overwrite)
        if steps is not None:
            card.sampling_steps = steps
        card.scene_statistics = scene_statistics or card.scene_statistics
        card.staged = dict(STAGED_DEFAULTS) if staged else card.staged  # validate() refuses it off v1 scene models
        card.halo = card.halo if halo is None else halo
        if sampling_shift is not None:
            card.schedule = CosineSchedule.from_dict({**card.schedule, "sampling_shift": sampling_shift}).to_dict()
        card.output_margin = output_margin(card) if crop else 0
        card.validate()
        _check_shift(card, _parse_steps(unrolled))
        result = export_model(model, card, out, _parse_steps(unrolled), fp16=fp16, overwrite=overwrite)
        if weights:
            write_inference_weights(checkpoint, out / WEIGHTS)
        elif overwrite and retire_inference_weights(checkpoint, out / WEIGHTS):
            typer.echo(f"{out / WEIGHTS}: removed, the weights of the model replaced (--weights writes this one's)")
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        _fail(str(exc))
    except OSError as exc:  # disk full or a file-size limit: write_model_dir publishes all graphs or none
        _fail(f"{exc.filename or out}: cannot write ({exc.strerror})")
    for name, size in result.sizes().items():
        typer.echo(f"{result.graphs[name]}  {size / 1e6:.2f} MB")


@app.command("average")
def average_command(
    checkpoints: list[str] = typer.Argument(..., help="two or more run directories, .safetensors or bundled model "
                                            "names (landsat_ratio2), all of one network"),
    out: Path = typer.Option(..., "-o", "--out", help="directory for the averaged model.safetensors and card.json"),
    overwrite: bool = typer.Option(False, help="replace an averaged checkpoint already in OUT"),
) -> None:
    """Average the EMA weights of checkpoints of one network (e.g. a run and its warm-started continuation) into a
    checkpoint that `ddrf-export onnx OUT` exports."""
    import shlex
    import sys

    from ddrf.bundled import model_folder
    from ddrf.train.checkpoint import average_weights

    _check_out(out)
    try:
        paths = [model_folder(c) for c in checkpoints]
        average_weights(paths, out, shlex.join(["ddrf-export", *sys.argv[1:]]), overwrite=overwrite)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or out}: cannot write ({exc.strerror})")
    typer.echo(f"{out}: mean of {len(checkpoints)} checkpoints' EMA weights")


@app.command("check")
def check_command(target: Path = typer.Argument(..., help="model directory written by `ddrf-export onnx`, or one "
                                                "ONNX graph")) -> None:
    """List operators that TensorRT's ONNX parser (8.6, 10.x) does not support; exit 1 if any."""
    from ddrf.engines.onnx_ops import check_tensorrt_ops

    if not (target.is_dir() or target.suffix == ".onnx"):
        problem = "not a model directory nor an .onnx graph" if target.exists() else "no such file or directory"
        _fail(f"{target}: {problem} (check takes a model directory or one .onnx graph)")
    graphs = sorted(target.glob("*.onnx")) if target.is_dir() else [target]
    if not graphs:
        _fail(f"{target}: no ONNX graphs")
    try:
        bad = {g.name: check_tensorrt_ops(g) for g in graphs}
    except ValueError as exc:
        _fail(str(exc))
    for name, problems in bad.items():
        typer.echo(f"{name}: " + ("ok" if not problems else ", ".join(f"{op} (TensorRT {v})" for op, v in problems)))
    if any(bad.values()):
        raise typer.Exit(1)


@app.command("engine")
def engine_command(
    model_dir: Path = typer.Argument(..., help="model directory written by `ddrf-export onnx`"),
    tile: Optional[int] = typer.Option(None, min=8, help="optimal window side (PAN pixels) of the optimisation profile "
                                       "(default: ddrf-run's GPU window for the model's halo)"),
    max_tile: Optional[int] = typer.Option(None, min=8, help="largest window side the engine accepts (default: the "
                                           "larger of --tile and ddrf-run's GPU window)"),
    batch: int = typer.Option(1, min=1, help="optimal batch"),
    max_batch: int = typer.Option(1, min=1, help="largest batch the engine accepts (each window of the batch at the "
                                  "largest side is held on the device at once)"),
    workspace_mb: int = typer.Option(2048, min=0, help="builder workspace limit (0: TensorRT's own, the device's "
                                     "memory)"),
    optimization_level: int = typer.Option(3, min=0, max=5, help="TensorRT builder optimisation level"),
    timing_cache: Path = typer.Option(Path("engines/timing.cache"), help="persistent timing cache"),
    overwrite: bool = typer.Option(False, help="replace existing engines"),
) -> None:
    """Build FP16 TensorRT engines (encoder, denoiser) with sidecars saying where they may run."""
    from ddrf.engines.build import build_model_engines
    from ddrf.engines.build import EngineBuildError
    from ddrf.engines.probe import EngineUnavailable

    try:
        written = build_model_engines(model_dir, tile=tile, max_tile=max_tile, batch=batch, max_batch=max_batch,
                                      workspace_bytes=workspace_mb << 20, optimization_level=optimization_level,
                                      timing_cache=timing_cache, overwrite=overwrite)
    except (EngineUnavailable, EngineBuildError, ValueError, FileExistsError) as exc:
        _fail(str(exc))
    for path in written:
        typer.echo(str(path))
