"""Console entry points. Each stage owns its Typer app in `<stage>/command.py`; this module only imports it lazily,
so `ddrf-run` and `ddrf-profile` never pull in torch."""
from __future__ import annotations

import importlib
import signal
import sys

# modules of the optional extras (pyproject.toml) -> the extra that installs them
EXTRA_OF = {"torch": "train", "safetensors": "train", "yaml": "train", "onnx": "train", "onnxslim": "train",
            "dask": "dist", "distributed": "dist", "tensorrt": "gpu", "cuda": "gpu"}


def on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the work in progress removes its temporaries and locks."""
    raise KeyboardInterrupt(f"signal {signum}")


def _run(module: str, sigterm: bool = True) -> None:
    """Run a stage's app; a missing optional dependency is one line naming the extra, not a traceback.
    `sigterm`: SIGTERM unwinds like Ctrl-C (False: the caller has its own handler in place)."""
    command = "ddrf-" + module.split(".")[1].replace("evaluate", "eval").replace("scenes", "run")
    # over a file-size limit (ulimit -f) a write should fail with EFBIG, which the commands report and clean up
    # after, instead of the default SIGXFSZ killing the process mid-file
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if sigterm:
        signal.signal(signal.SIGTERM, on_sigterm)
    import typer

    try:
        code = importlib.import_module(module).app(standalone_mode=False)
    except _click_errors() as exc:  # a bad option or value: one line like every other refusal, not a usage box
        message = " ".join(getattr(exc, "format_message", exc.__str__)().split())
        ctx = getattr(exc, "ctx", None)
        hint = f" ({ctx.command_path} --help lists the options)" if ctx is not None else ""
        if message:  # none after a bare group command, whose help is then shown
            print(f"{command}: error: {message}{hint}", file=sys.stderr)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except typer.Abort:  # end of input at a prompt (Ctrl-C ends with exit code 130)
        print("Aborted!", file=sys.stderr)
        raise SystemExit(1) from None
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF:
            raise
        print(f"{command}: needs {top}, which the base (runtime) install leaves out: "
              f"pip install 'ddrf-edge[{EXTRA_OF[top]}]'", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _click_errors() -> tuple[type[Exception], ...]:
    """The base of click's errors: recent typer releases ship their own click (its errors are TyperExceptions),
    older ones use click itself."""
    import typer

    errors: list[type[Exception]] = [typer.TyperException] if hasattr(typer, "TyperException") else []
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:
        pass
    return tuple(errors)


def train_app() -> None:
    _run("ddrf.train.command")


def eval_app() -> None:
    _run("ddrf.evaluate.command")


def export_app() -> None:
    _run("ddrf.export.command")


def run_app() -> None:
    from ddrf.scenes.progress import GracefulStop, interrupt_once

    bounded_heap()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it is ignored (`cmd &`)
        signal.signal(signal.SIGINT, interrupt_once)
    # from the first moment: a SIGTERM during the imports, the checks or the model's preload is kept and honoured by
    # the run loop's own stop (a batch abandons its scenes and writes its summary, a watcher logs `stopped`), where
    # unwinding like Ctrl-C there ended in exit 130 and no summary or `stopped` line
    with GracefulStop():
        _run("ddrf.scenes.command", sigterm=False)


MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's initial threshold, held fixed by ddrf-run


def bounded_heap() -> None:
    """Make glibc serve every block over 128 KiB by mmap, returned to the system when freed (ddrf-run's process).

    glibc raises that threshold each time it frees a mapped block (up to 32 MiB); after that the window-sized arrays
    of reading, blending and writing come from heaps shared by the reader and main threads, and fragment them. The
    default run's peak RSS on a 4096 x 4096 scene: 881 MiB with the dynamic threshold, 784 MiB with it fixed, no
    slower (docs/BENCHMARKS.md). Only ddrf-run, where that was measured: training was not, and a map per large
    tensor could cost it. A MALLOC_MMAP_THRESHOLD_ the user set wins; elsewhere than glibc this does nothing.
    """
    import ctypes
    import os

    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD; setting it ends the dynamic rule
    except (OSError, AttributeError):  # not glibc (musl, for one)
        return


def profile_app() -> None:
    _run("ddrf.profile.command")


def finetune_app() -> None:
    _run("ddrf.finetune.command")
