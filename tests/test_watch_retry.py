"""`ddrf-run --watch`: a failed scene delivered again, and a done scene whose output is gone.

- A failed scene whose directory changes afterwards (the operator fixed the delivery, or replaced the directory) is
  run once more, with one `retrying` line; if it fails again it records what it failed on and waits for the next
  change: an unchanged failed delivery is never run again, so there is no retry loop.
- A done scene whose output GeoTIFF was deleted is said once per start (`missing`), with how to fuse it again, and not
  fused again: a done scene is fused exactly once (docs/OPERATIONS.md)."""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_watch import SAMPLE, WatchProcess, scene_state
from test_watch_guards import ROOT_USER
from test_watch_stale import STATUS, events, scan

from ddrf.scenes.progress import Reporter
from ddrf.scenes.watch import IDLE_RESCAN_S, UNKNOWN_DELIVERY, Watcher, WatchOptions, delivery_digest

MTL = f"{SAMPLE.name}_MTL.txt"
PAN = f"{SAMPLE.name}_B8.TIF"


class Clocked:
    """A watcher on a fake clock whose fusion is a stand-in: a scene fails while its MTL holds no `FIXED` line."""

    def __init__(self, inbox: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fused: list[str] = []
        self.now = 0.0
        self.stream = io.StringIO()
        out.mkdir(exist_ok=True)

        def run_scene(job: Any, *_: Any) -> dict[str, Any]:
            self.fused.append(job.name)
            if "FIXED" not in (job.directory / MTL).read_text():
                return {"name": job.name, "status": "failed", "error": f"{job.name}: broken delivery"}
            job.raster.write_bytes(b"fused")
            return {"name": job.name, "status": "done", "output": str(job.raster), "files": [str(job.raster)]}

        monkeypatch.setattr("ddrf.scenes.watch.run_scene", run_scene)
        reporter = Reporter(log_format="text", progress=False, stream=self.stream)
        unused: Any = None  # engine and run settings: the stand-in does not fuse
        self.watch = Watcher(inbox, out, unused, unused, reporter, WatchOptions(settle_s=0, wait_listed_s=0), None,
                             clock=lambda: self.now)

    def scan_at(self, now: float) -> None:
        self.now = now
        scan(self.watch)

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if needle in line]


def edit(scene: Path, line: str) -> None:
    with (scene / MTL).open("a") as mtl:
        mtl.write(line + "\n")


def copy_scene(dest: Path, fixed: bool = False) -> Path:
    shutil.copytree(SAMPLE, dest)  # copy2: the files keep their times
    if fixed:
        edit(dest, "FIXED")
    return dest


def retrying_line(scene: Path) -> str:
    return (f"ddrf-run: {scene}: failed before ({scene.name}: broken delivery), and its files changed since (a fixed "
            f"delivery?); fusing it again once it is complete, once: if that fails too, not again until its files "
            f"change again")


def test_failed_scene_is_run_again_once_per_changed_delivery(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    scene = copy_scene(inbox / "a")
    w = Clocked(inbox, out, monkeypatch)
    w.scan_at(0)
    entry = w.watch.status.scenes["a"]
    assert w.fused == ["a"] and entry["status"] == "failed"
    assert entry["delivery"] == delivery_digest(scene)  # what it failed on
    for step in (1, 2):
        w.scan_at(step * IDLE_RESCAN_S)
    assert w.fused == ["a"] and w.lines("failed before") == []  # unchanged: never run again

    edit(scene, "still broken")  # a fix that does not fix it
    w.scan_at(2.5 * IDLE_RESCAN_S)
    assert w.fused == ["a"]  # not looked at yet: failed scenes are checked once per IDLE_RESCAN_S, as done ones
    w.scan_at(3 * IDLE_RESCAN_S)
    assert w.lines("failed before") == [retrying_line(scene)]
    assert w.fused == ["a", "a"]  # run once more, failed again
    entry = w.watch.status.scenes["a"]
    assert entry["status"] == "failed" and entry["delivery"] == delivery_digest(scene) != UNKNOWN_DELIVERY
    for step in (4, 5, 6):
        w.scan_at(step * IDLE_RESCAN_S)
    assert w.fused == ["a", "a"] and len(w.lines("failed before")) == 1  # no loop

    shutil.rmtree(scene)
    copy_scene(scene, fixed=True)  # the operator replaces the directory with a good delivery
    w.scan_at(7 * IDLE_RESCAN_S)
    assert w.fused == ["a", "a", "a"] and len(w.lines("failed before")) == 2
    entry = w.watch.status.scenes["a"]
    assert entry["status"] == "done" and entry["delivery"] == delivery_digest(scene)
    assert "broken delivery" not in json.dumps(entry)  # the earlier error is not kept as the done scene's reason
    for step in (8, 9):
        w.scan_at(step * IDLE_RESCAN_S)
    assert w.fused == ["a", "a", "a"] and w.lines("already fused") == [] and w.lines("is gone") == []
    assert [e["status"] for e in w.watch.handled] == ["failed", "failed", "done"]


def test_a_fix_that_lands_while_the_scene_runs_is_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry records the delivery the failed run read, taken as it started: a fix delivered during that run
    differs from it, so the scene is retried (it used to record the fixed files, and wait for a change forever)."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    scene = copy_scene(inbox / "a")
    w = Clocked(inbox, out, monkeypatch)

    def run_scene(job: Any, *_: Any) -> dict[str, Any]:  # the operator's fix lands while this run reads the old files
        w.fused.append(job.name)
        edit(job.directory, "FIXED")
        return {"name": job.name, "status": "failed", "error": f"{job.name}: broken delivery"}

    monkeypatch.setattr("ddrf.scenes.watch.run_scene", run_scene)
    w.scan_at(0)
    entry = w.watch.status.scenes["a"]
    assert w.fused == ["a"] and entry["status"] == "failed"
    assert entry["delivery"] != delivery_digest(scene)  # what it read, not the fix
    monkeypatch.undo()
    w = Clocked(inbox, out, monkeypatch)  # a restart, with the stand-in that fuses a fixed MTL
    w.scan_at(IDLE_RESCAN_S)
    assert w.fused == ["a"] and w.lines("failed before") == [retrying_line(scene)]
    assert w.watch.status.scenes["a"]["status"] == "done"


def test_failed_entries_of_an_earlier_start_are_run_again_only_when_changed(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`changed`: its digest differs from the recorded one; `unknown`: none could be taken when it failed; `same`: as
    it failed; `old`: failed before the status file kept a digest, compared with what this start first saw."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    scenes = {name: copy_scene(inbox / name, fixed=True) for name in ("changed", "old", "same", "unknown")}
    failed = {"status": "failed", "reason": "x: broken delivery"}
    recorded: dict[str, dict[str, Any]] = {"changed": {"delivery": "0123456789abcdef"}, "old": {}, "same": {
        "delivery": delivery_digest(scenes["same"])}, "unknown": {"delivery": UNKNOWN_DELIVERY}}
    (out / STATUS).write_text(json.dumps({"scenes": {n: {**failed, **r} for n, r in recorded.items()}}))
    w = Clocked(inbox, out, monkeypatch)
    w.scan_at(0)
    assert w.fused == ["changed", "unknown"]
    assert [line.split(": ")[1] for line in w.lines("failed before (x: broken delivery)")] == [
        str(scenes["changed"]), str(scenes["unknown"])]
    edit(scenes["old"], "edited while watching")
    w.scan_at(IDLE_RESCAN_S)
    assert w.fused == ["changed", "unknown", "old"]
    assert {n: e["status"] for n, e in w.watch.status.scenes.items()} == {
        "changed": "done", "old": "done", "same": "failed", "unknown": "done"}


def test_unreadable_scene_is_run_again_once_it_can_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreadable, it fails with no digest to record; made readable, it is run once (root: chmod denies nothing, so
    reading it is refused by monkeypatching)."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    scene = copy_scene(inbox / "locked", fixed=True)
    locked = [True]
    if ROOT_USER:
        real_scandir = os.scandir

        def scandir(path: Any = ".") -> Any:
            if locked[0] and Path(os.fspath(path)) == scene:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    else:
        scene.chmod(0)
    try:
        w = Clocked(inbox, out, monkeypatch)
        w.scan_at(0)
        entry = w.watch.status.scenes["locked"]
        assert entry["status"] == "failed" and "cannot read the scene directory" in entry["reason"]
        assert entry["delivery"] == UNKNOWN_DELIVERY and w.fused == []
        w.scan_at(IDLE_RESCAN_S)
        assert w.lines("failed before") == [] and w.watch.status.scenes["locked"]["status"] == "failed"
    finally:
        locked[0] = False
        scene.chmod(0o755)
    w.scan_at(2 * IDLE_RESCAN_S)
    assert len(w.lines("failed before")) == 1 and w.fused == ["locked"]
    assert w.watch.status.scenes["locked"]["status"] == "done"


def test_a_redelivery_that_is_refused_again_is_refused_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scene refused before it runs (named like the status file) and then changed: refused once more, with the new
    digest recorded, then left alone."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    scene = copy_scene(inbox / "ddrf-watch-status", fixed=True)
    w = Clocked(inbox, out, monkeypatch)
    w.scan_at(0)
    assert len(w.lines("would overwrite the watch status file")) == 1
    edit(scene, "edited")
    for step in (1, 2, 3, 4):
        w.scan_at(step * IDLE_RESCAN_S)
    refused = w.lines("ddrf-run: ddrf-watch-status: its output")
    assert len(w.lines("failed before")) == 1 and len(refused) == 2, w.stream.getvalue()
    entry = w.watch.status.scenes["ddrf-watch-status"]
    assert entry["status"] == "failed" and entry["delivery"] == delivery_digest(scene) and w.fused == []


def test_done_scene_whose_output_was_deleted_is_said_once_per_start(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for name in ("a", "b", "c"):
        copy_scene(inbox / name, fixed=True)
    w = Clocked(inbox, out, monkeypatch)
    w.scan_at(0)
    assert w.fused == ["a", "b", "c"]
    (out / "a.tif").unlink()
    (out / "c.tif").unlink()
    shutil.rmtree(inbox / "c")  # gone with its scene: nothing to say (nothing to fuse it from)
    w.scan_at(IDLE_RESCAN_S / 2)
    assert w.lines("is gone") == []  # not looked at yet
    expected = [f"ddrf-run: {inbox / 'a'}: done, but its output {out / 'a.tif'} is gone (deleted?); not fused again. "
                f"To fuse it again, deliver it under a new directory name, or stop the watcher, delete 'a' from "
                f"{out / STATUS} and start it with --overwrite"]
    for step in (1, 2, 3):
        w.scan_at(step * IDLE_RESCAN_S)
    assert w.lines("is gone") == expected
    assert w.fused == ["a", "b", "c"] and not (out / "a.tif").exists()

    again = Clocked(inbox, out, monkeypatch)  # the next start says it again, once
    for step in (0, 1, 2):
        again.scan_at(step * IDLE_RESCAN_S)
    assert again.lines("is gone") == expected and again.fused == []
    assert {n: e["status"] for n, e in again.watch.status.scenes.items()} == {"a": "done", "b": "done", "c": "done"}


def test_fixed_delivery_and_deleted_output_across_a_restart(tmp_path: Path) -> None:
    """As a process, with real fusion (GSA): `a` fails on a PAN that is no raster; the operator copies in the right PAN
    and deletes `b`'s output while the watcher is stopped. The next start fuses `a` (one `retrying` line) and says that
    `b`'s output is gone (one `missing` line), without fusing `b`."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    copy_scene(inbox / "a")
    (inbox / "a" / PAN).write_bytes(b"not a raster")
    copy_scene(inbox / "b")
    options = ("--method", "GSA", "--settle", "0.2", "--wait-listed", "0")
    first = WatchProcess(inbox, out, tmp_path / "first.log", *options)
    first.wait("a failed, b done", lambda: (scene_state(first, "a"), scene_state(first, "b")) == ("failed", "done"))
    assert first.stop() == 1  # a failed in this run
    assert first.status()["a"]["delivery"] == delivery_digest(inbox / "a")

    shutil.copy2(SAMPLE / PAN, inbox / "a" / PAN)  # the fix
    (out / "b.tif").unlink()
    second = WatchProcess(inbox, out, tmp_path / "second.log", *options)
    second.wait("a done", lambda: scene_state(second, "a") == "done")
    second.wait("missing", lambda: bool(events(second, "missing")))
    assert second.stop() == 0
    (retrying,) = events(second, "retrying")
    assert retrying["name"] == "a" and retrying["path"] == str(inbox / "a")
    assert "unreadable or truncated raster" in retrying["error"] and retrying["status_file"] == str(out / STATUS)
    (missing,) = events(second, "missing")
    assert missing["name"] == "b" and missing["output"] == str(out / "b.tif") and missing["path"] == str(inbox / "b")
    assert [e["name"] for e in events(second, "scene")] == ["a"]  # b not fused again
    assert (out / "a.tif").is_file() and not (out / "b.tif").exists()
    assert second.status()["a"]["delivery"] == delivery_digest(inbox / "a")
