"""`ddrf-run --watch`: real scene directories (copies of the bundled sample) appear in an inbox while the watcher runs
as its own process; restarts and SIGTERM must neither lose nor duplicate a scene."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from ddrf.scenes.watch import Readiness, StatusFile, WatchLock

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "ddrf" / "assets" / "sample_scene" / "LC80200392015216LGN00"


class WatchProcess:
    """`ddrf-run --watch` in a subprocess (JSON logs to a file); `poll`: watchdog's polling observer, else native."""

    def __init__(self, inbox: Path, out: Path, log: Path, *extra: str, poll: bool = True) -> None:
        self.out, self.log = out, log
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        polling = ["--poll", "--poll-interval", "0.2"] if poll else []
        args = [sys.executable, "-m", "ddrf.scenes.command", "--watch", str(inbox), "-o", str(out), *polling,
                "--log-format", "json", *extra]
        self.stream = log.open("w")
        # SIGINT as on a terminal: a test run started in the background (CI, `cmd &`) has it ignored, and a child
        # that inherits that would never see the Ctrl-C the tests send
        self.process = subprocess.Popen(args, stdout=self.stream, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    def status(self) -> dict[str, Any]:
        path = self.out / "ddrf-watch-status.json"
        return json.loads(path.read_text())["scenes"] if path.exists() else {}

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None:
                raise AssertionError(f"watcher exited ({self.process.returncode}) waiting for {what}: "
                                     f"{self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"timed out waiting for {what}: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """Send `signum` (SIGTERM by default) and wait: the exit code."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.stream.close()


def scene_state(watcher: WatchProcess, name: str) -> str | None:
    return watcher.status().get(name, {}).get("status")


def deliver(dest: Path, hold_back: str | None = None) -> Path | None:
    """Copy the sample scene into `dest` as a downlink would; `hold_back`: that file is left as `<name>.part`."""
    dest.mkdir()
    partial = None
    for path in sorted(SAMPLE.iterdir()):
        if hold_back and path.name.endswith(hold_back):
            partial = dest / (path.name + ".part")
            shutil.copy(path, partial)
        else:
            shutil.copy(path, dest / path.name)
    return partial


def scene_events(watcher: WatchProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in watcher.events() if e["event"] == "scene" and e["name"] == name]


def test_watch_exactly_once_across_restart(tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    first = WatchProcess(inbox, out, tmp_path / "first.log", "--method", "GSA", "--settle", "0.5",
                         "--wait-listed", "0")  # the sample lacks the B1, B6, B7 its MTL names
    first.wait("watching", lambda: any(e["event"] == "watching" for e in first.events()))
    partial = deliver(inbox / "a", hold_back="_B8.TIF")  # PAN still downloading
    (inbox / "bad").mkdir()
    (inbox / "bad" / "x_B8.TIF").write_bytes(b"not a raster")
    first.wait("bad fails", lambda: scene_state(first, "bad") == "failed")
    time.sleep(1.0)  # > --settle: a scene with a partial file must still wait
    assert scene_state(first, "a") == "waiting" and not (out / "a.tif").exists()
    assert partial is not None
    partial.rename(partial.with_suffix(""))
    first.wait("a done", lambda: scene_state(first, "a") == "done")
    assert first.stop() == 1  # "bad" failed in this run (exit codes: tests/test_watch_exit.py)
    assert "x_B8.TIF" in first.status()["bad"]["reason"]
    stamp = (out / "a.tif").stat().st_mtime_ns
    assert {p.name for p in out.iterdir()} == {"a.tif", "a.json", "a.item.json", "ddrf-watch-status.json",
                                               "ddrf-watch-status.json.lock"}

    # a scene the previous process was running when it was killed: queued again at the next start
    deliver(inbox / "c")
    status = json.loads((out / "ddrf-watch-status.json").read_text())
    status["scenes"]["c"] = {"status": "running", "source": str(inbox / "c")}
    (out / "ddrf-watch-status.json").write_text(json.dumps(status))

    second = WatchProcess(inbox, out, tmp_path / "second.log", "--method", "GSA", "--settle", "600",
                          "--ready-file", "*_MTL.txt", poll=False)  # native (inotify) events this time
    second.wait("c done", lambda: scene_state(second, "c") == "done")
    (inbox / "b").mkdir()
    for path in SAMPLE.glob("*.TIF"):
        shutil.copy(path, inbox / "b" / path.name)
    second.wait("b waiting", lambda: scene_state(second, "b") == "waiting")
    time.sleep(0.5)
    assert scene_state(second, "b") == "waiting"  # no ready file yet, and --settle is long
    mtl = next(SAMPLE.glob("*_MTL.txt"))  # the ready file lands whole (copied, then renamed), as a producer should
    shutil.copy(mtl, inbox / "b" / f"{mtl.name}.part")
    (inbox / "b" / f"{mtl.name}.part").rename(inbox / "b" / mtl.name)
    second.wait("b done", lambda: scene_state(second, "b") == "done")
    assert second.stop() == 0
    assert (out / "a.tif").stat().st_mtime_ns == stamp  # not redone
    assert not scene_events(second, "a") and not scene_events(second, "bad")  # neither rerun nor retried
    assert [len(scene_events(second, n)) for n in ("b", "c")] == [1, 1]
    final = second.status()
    assert {n: e["status"] for n, e in final.items()} == {"a": "done", "b": "done", "bad": "failed", "c": "done"}
    assert any(e["event"] == "recovered" and e["scenes"] == ["c"] for e in second.events())


def test_sigterm_abandons_the_scene_in_progress_cleanly(tmp_path: Path) -> None:
    """SIGTERM while the bundled model is fusing small windows: the process exits 0 promptly, nothing of the scene
    is published or left behind, the scene goes back to queued and the next start fuses it once."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    deliver(inbox / "a")
    slow = WatchProcess(inbox, out, tmp_path / "slow.log", "--settle", "0", "--wait-listed", "0", "--tile", "64",
                        "--halo", "16",
                        "--threads", "1", "--progress-every", "0", "--progress-percent", "0")
    slow.wait("first windows", lambda: any(e["event"] == "progress" and e["windows_done"] >= 2
                                           for e in slow.events()), timeout=90)
    started = time.monotonic()
    assert slow.stop() == 0
    assert time.monotonic() - started < 10
    progress = [e for e in slow.events() if e["event"] == "progress"]
    assert progress[-1]["windows_done"] < progress[-1]["windows"]  # it really stopped part-way
    assert slow.status()["a"]["status"] == "queued" and "SIGTERM" in slow.status()["a"]["reason"]
    assert sorted(p.name for p in out.iterdir()) == ["ddrf-watch-status.json", "ddrf-watch-status.json.lock"]

    # the next start fuses it (a classical method here, only to keep the test short)
    again = WatchProcess(inbox, out, tmp_path / "again.log", "--settle", "0", "--wait-listed", "0", "--method",
                         "GSA")
    again.wait("a done", lambda: scene_state(again, "a") == "done", timeout=90)
    assert again.stop() == 0
    assert len(scene_events(again, "a")) == 1 and (out / "a.tif").is_file() and (out / "a.item.json").is_file()


def test_readiness_by_settle_time_and_partial_files(tmp_path: Path) -> None:
    clock = [0.0]
    readiness = Readiness(5.0, None, clock=lambda: clock[0])
    scene = tmp_path / "s"
    scene.mkdir()
    assert not readiness.ready(scene)  # empty
    (scene / "pan.tif").write_bytes(b"x")
    assert not readiness.ready(scene)  # first seen now
    clock[0] = 4.0
    assert not readiness.ready(scene)
    (scene / "ms.tif").write_bytes(b"y")  # a change restarts the clock
    clock[0] = 8.0
    assert not readiness.ready(scene)
    clock[0] = 13.5
    assert readiness.ready(scene)
    (scene / "more.tif.part").write_bytes(b"z")
    clock[0] = 100.0
    assert not readiness.ready(scene)


def test_status_file_must_be_ours(tmp_path: Path) -> None:
    bad = tmp_path / "status.json"
    bad.write_text("[1, 2")
    with pytest.raises(ValueError, match="status.json: not a ddrf-run watch status file"):
        StatusFile(bad, tmp_path)


def test_second_watcher_on_one_output_is_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    (tmp_path / "inbox").mkdir()
    (tmp_path / "out").mkdir()
    with WatchLock(tmp_path / "out" / "ddrf-watch-status.json"):  # as a running watcher holds it
        result = CliRunner().invoke(app, ["--watch", str(tmp_path / "inbox"), "-o", str(tmp_path / "out"),
                                          "--method", "GSA"])
    assert result.exit_code == 2 and "another ddrf-run --watch is writing" in result.output


def test_watched_scenes_take_the_runs_band_names(tmp_path: Path) -> None:
    """--bands with --watch names every arriving scene's bands as a batch run does (before, the watcher dropped it
    and fused a red-first file as if blue came first)."""
    import numpy as np
    import rasterio
    from typer.testing import CliRunner

    from ddrf.scenes.command import app
    from scenes_fixtures import reordered_generic_scene

    inbox, out, order = tmp_path / "inbox", tmp_path / "out", ("--bands", "red,green,blue,nir")
    inbox.mkdir()
    watcher = WatchProcess(inbox, out, tmp_path / "watch.log", "--settle", "0.3", "--threads", "1", *order)
    reordered_generic_scene(inbox / "generic")
    watcher.wait("generic done", lambda: scene_state(watcher, "generic") == "done", timeout=120)
    assert watcher.stop() == 0
    batch = CliRunner().invoke(app, [str(inbox / "generic"), "-o", str(tmp_path / "batch"), "--no-progress",
                                     "--threads", "1", *order])
    assert batch.exit_code == 0, batch.output
    with rasterio.open(out / "generic.tif") as watched, rasterio.open(tmp_path / "batch" / "generic.tif") as ran:
        np.testing.assert_array_equal(watched.read(), ran.read())
