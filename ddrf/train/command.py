"""`ddrf-train CONFIG.yaml [key=value ...] --out DIR [--resume | --overwrite]` (torchrun-compatible for DDP)."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, help="Train a DDRF model (see configs/*.yaml).")


@app.command()
def main(
    config: Path = typer.Argument(..., help="YAML training config"),
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted overrides, e.g. optim.steps=200"),
    out: Path = typer.Option(..., "--out", help="run directory (checkpoint, card, log)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run in --out"),
    stop_at: Optional[int] = typer.Option(None, "--stop-at", min=1,
                                          help="end this invocation at that step, as an interruption would "
                                               "(the schedule still spans optim.steps; --resume continues)"),
) -> None:
    from ddrf.train.config import load_config
    from ddrf.train.loop import cleanup_distributed, train

    command = shlex.join(["ddrf-train", *sys.argv[1:]])
    try:
        cfg = load_config(config, overrides or [])
        result = train(cfg, out, resume=resume, overwrite=overwrite, command=command, stop_at=stop_at,
                       inputs=[config])
    except (ValueError, FloatingPointError) as exc:
        _fail(str(exc))
    except OSError as exc:  # disk full or a file-size limit while checkpointing: the last whole checkpoint stays
        _fail(f"{exc.filename or out}: cannot write ({exc.strerror})", 1)
    finally:
        cleanup_distributed()
    if not result.losses and os.environ.get("RANK", "0") == "0":
        typer.echo(f"nothing to train: the run in {out} is at step {result.end_step} of optim.steps {cfg.optim.steps}")
    elif result.losses and os.environ.get("RANK", "0") == "0":
        first, last = result.losses[: min(10, len(result.losses))], result.losses[-min(10, len(result.losses)):]
        typer.echo(f"steps {result.start_step}->{result.end_step} in {result.seconds:.1f} s; loss "
                   f"{sum(first) / len(first):.4f} (first {len(first)}) -> {sum(last) / len(last):.4f} "
                   f"(last {len(last)}); run in {out}")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"ddrf-train: error: {msg}", err=True)
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
