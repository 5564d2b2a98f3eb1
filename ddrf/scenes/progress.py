"""What `ddrf-run` tells its operator: progress, per-scene results and the closing list of outputs.

On a terminal the tqdm bars of the job loop show progress (as before). Without one (a service, a log collector) a
progress line is printed at most every `every_s` seconds or `every_pct` percent of a scene's windows. With
`log_format="json"` every message is one JSON object per line on stderr (`event`: progress, scene, output, summary,
stopping), and the bars are off so that stderr stays machine-readable.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable, TextIO


class StopRequested(BaseException):
    """Raised at a window boundary after SIGTERM: not an Exception, so the job loop does not record a failure."""


class GracefulStop:
    """Turns SIGTERM into a flag checked between windows (the window in flight finishes, the scene is abandoned).

    Entered inside another (ddrf-run's process-wide one, from its start), it takes over a request the outer one
    already holds."""

    IDLE_SLICE_S = 0.2  # an idle watcher sees a SIGTERM within this long

    def __init__(self) -> None:
        self.requested = False
        self.wake = threading.Event()  # set by others (the watcher's file observer) to end an idle wait early
        self._previous: Any = None

    def __enter__(self) -> "GracefulStop":
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        outer = getattr(self._previous, "__self__", None)
        if isinstance(outer, GracefulStop) and outer.requested:  # a SIGTERM before this stop was in place (the
            self.requested = True  # model's preload, a watcher's recovery): honoured here, where it is checked
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # a flag only, no lock: the handler runs in the main thread between two bytecodes, possibly while that
        # thread holds the lock inside `wake` (Event.wait, Event.clear), and setting the Event there deadlocked
        # the watcher on SIGTERM
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise StopRequested()

    def idle(self, seconds: float) -> None:
        """Wait up to `seconds` for `wake` or a stop request, whichever comes first; `wake` is cleared after."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0 or self.wake.wait(min(left, self.IDLE_SLICE_S)):
                break
        self.wake.clear()


def interrupt_once(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C unwinds (KeyboardInterrupt) once; later ones are ignored while the run unwinds, removing the scene's
    temporaries and lock and writing its summary: a second Ctrl-C there cut that short and left them behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@dataclass
class _SceneClock:
    started: float
    done: int = 0
    last_time: float = 0.0
    last_pct: float = 0.0


@dataclass
class Reporter:
    """Writes progress and results to `stream` as text lines or JSON lines."""

    log_format: str = "text"  # text | json
    progress: bool | None = None  # None: lines when not a terminal; False: none; True: tqdm bars
    every_s: float = 30.0
    every_pct: float = 10.0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    stop: GracefulStop | None = None
    clock: Callable[[], float] = time.monotonic

    @property
    def bars(self) -> bool | None:
        """What the tqdm bars get (RunSettings.progress): off for JSON logs and for progress lines."""
        if self.log_format == "json" or self.lines:
            return False
        return self.progress

    @property
    def lines(self) -> bool:
        if self.progress is False:
            return False
        if self.log_format == "json":
            return True
        return self.progress is None and not _isatty(self.stream)

    def emit(self, event: str, text: str, **fields: Any) -> None:
        if self.log_format == "json":
            line = json_line(event, **fields)
        else:
            line = f"ddrf-run: {one_text_line(text)}"
        print(line, file=self.stream, flush=True)

    def tile_hook(self, scene: str) -> Callable[[int, int], None]:
        """The job loop's per-window callback for one scene: progress lines and the SIGTERM check."""
        state = _SceneClock(self.clock())
        state.last_time = state.started

        def hook(done: int, total: int) -> None:
            state.done += done
            now = self.clock()
            pct = 100.0 * state.done / max(total, 1)
            due = now - state.last_time >= self.every_s or pct - state.last_pct >= self.every_pct
            if self.lines and (due or state.done >= total):
                elapsed = now - state.started
                eta = elapsed * (total - state.done) / state.done if state.done else None
                state.last_time, state.last_pct = now, pct
                eta_text = f", ETA {eta:.0f} s" if eta is not None else ""
                self.emit("progress", f"{scene}: {pct:.0f}% ({state.done}/{total} windows), {elapsed:.0f} s"
                                      f"{eta_text}", scene=scene, windows_done=state.done, windows=total,
                          percent=round(pct, 1), elapsed_s=round(elapsed, 1),
                          eta_s=None if eta is None else round(eta, 1))
            if self.stop is not None:
                self.stop.check()

        return hook

    def scene(self, entry: dict[str, Any]) -> None:
        """One scene finished (done, skipped or failed): always a line (a watcher has no closing summary)."""
        status = entry["status"]
        detail = {"failed": entry.get("error"), "skipped": entry.get("reason")}.get(status)
        text = entry["error"] if status == "failed" else f"{entry['name']}: {status} -> {entry['output']}"
        if "model" in entry:
            text += f" (model {entry['model']['name']}, {entry['model']['path']})"
        if status == "skipped":
            text += f" ({detail})"
        self.emit("scene", text, **{k: v for k, v in entry.items() if k != "tiles"})

    def summary(self, entries: list[dict[str, Any]]) -> int:
        """The closing lines: counts, then every output file by name. Returns the exit code (0 or 1)."""
        counts = {s: sum(e["status"] == s for e in entries) for s in ("done", "skipped", "failed", "abandoned")}
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "abandoned")
        self.emit("summary", f"{len(entries)} scene(s): {shown}", scenes=len(entries), **counts)
        for entry in entries:
            for path in entry.get("files", [entry["output"]]) if entry["status"] in ("done", "skipped") else []:
                label = "done" if entry["status"] == "done" else "existing"
                self.emit("output", f"  {label} {path}", scene=entry["name"], status=entry["status"], path=str(path))
            if entry["status"] in ("failed", "abandoned"):
                self.emit("output", f"  {entry['status']} {entry['name']}: {entry.get('error', 'stopped')}",
                          scene=entry["name"], status=entry["status"], error=entry.get("error"))
        return exit_code(entries)


def exit_code(entries: list[dict[str, Any]]) -> int:
    """ddrf-run's exit code for the scenes a run handled (batch or watch): 1 when any failed or was abandoned at
    SIGTERM (the others still ran), else 0. The one place of this rule."""
    return 1 if any(entry["status"] in ("failed", "abandoned") for entry in entries) else 0


def one_text_line(text: str) -> str:
    """`text` as one line of a text log: control characters (a newline or an escape sequence in a scene folder's
    name) written as Python escapes (`\\n`, `\\x1b`), so that no name splits a message in two, forges a line of
    its own or drives the terminal."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)


def json_line(event: str, **fields: Any) -> str:
    """One log line of `--log-format json`: `event`, `time` (UTC), then the fields."""
    return json.dumps({"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields},
                      default=str)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
