"""`ddrf-run --watch` and stale state: what the status file says must follow the inbox.

- a done scene delivered again (the directory replaced, or its files changed) is not fused again (its output is a
  published product) but said once per start, with how to fuse it again;
- a waiting or queued scene whose directory left the inbox (renamed, deleted) is dropped from the status file and said
  once, also after a SIGKILL, when the restart removes the temporaries and the output lock the killed run left. A
  lock held by a live process is kept: another watcher on the output is still refused."""
from __future__ import annotations

import io
import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from test_watch import SAMPLE, WatchProcess, deliver, scene_state
from test_watch_guards import watcher

from ddrf.files import exclusive
from ddrf.scenes.progress import Reporter
from ddrf.scenes.watch import IDLE_RESCAN_S, Watcher, WatchOptions

STATUS = "ddrf-watch-status.json"


def events(process: WatchProcess, event: str) -> list[dict[str, Any]]:
    return [e for e in process.events() if e["event"] == event]


def scan(watch: Watcher) -> None:
    """One pass of the watch loop."""
    for directory in watch.pending():
        watch.run_one(directory)


def test_done_scene_delivered_again_is_said_once_and_not_fused_again(tmp_path: Path) -> None:
    """Delivered again while the watcher was stopped, with the same file names, sizes and times (`cp -a`): only the
    directory is new. The next start says so once, and neither fuses it nor touches its output."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    shutil.copytree(SAMPLE, inbox / "a")  # copy2: the files keep their times
    first = WatchProcess(inbox, out, tmp_path / "first.log", "--method", "GSA", "--settle", "0.2",
                         "--wait-listed", "0")
    first.wait("a done", lambda: scene_state(first, "a") == "done")
    assert first.stop() == 0
    assert first.status()["a"]["delivery"]  # what was fused
    stamp = (out / "a.tif").stat().st_mtime_ns

    shutil.rmtree(inbox / "a")
    shutil.copytree(SAMPLE, inbox / "a")  # the second delivery
    second = WatchProcess(inbox, out, tmp_path / "second.log", "--method", "GSA", "--settle", "0.2",
                          "--wait-listed", "0")
    second.wait("redelivered", lambda: bool(events(second, "redelivered")))
    deliver(inbox / "b")  # a new scene meanwhile: the loop scans many times
    second.wait("b done", lambda: scene_state(second, "b") == "done")
    assert second.stop() == 0
    said = events(second, "redelivered")
    assert len(said) == 1, said
    assert said[0]["name"] == "a" and said[0]["output"] == str(out / "a.tif")
    assert said[0]["status_file"] == str(out / STATUS) and said[0]["path"] == str(inbox / "a")
    assert not [e for e in events(second, "scene") if e["name"] == "a"]  # not fused again
    assert (out / "a.tif").stat().st_mtime_ns == stamp and second.status()["a"]["status"] == "done"


def test_done_scene_changed_while_watching_is_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock, with a stand-in for the fusion: done scenes are looked at once per IDLE_RESCAN_S; a change is
    said once (plain text here), not while a partial file says the delivery is still coming, and never fused. A done
    entry from before the status file kept a digest ("old") is compared with what the watcher first saw."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    for name in ("a", "b", "old"):
        shutil.copytree(SAMPLE, inbox / name)
    (out / STATUS).write_text(json.dumps({"scenes": {"old": {"status": "done", "source": str(inbox / "old")}}}))
    fused: list[str] = []

    def run_scene(job: Any, *_: Any) -> dict[str, Any]:
        fused.append(job.name)
        job.raster.write_bytes(b"fused")
        return {"name": job.name, "status": "done", "output": str(job.raster), "files": [str(job.raster)]}

    monkeypatch.setattr("ddrf.scenes.watch.run_scene", run_scene)
    clock = [0.0]
    stream = io.StringIO()
    reporter = Reporter(log_format="text", progress=False, stream=stream)
    unused: Any = None  # engine and run settings: the stand-in does not fuse
    watch = Watcher(inbox, out, unused, unused, reporter, WatchOptions(settle_s=0, wait_listed_s=0), None,
                    clock=lambda: clock[0])

    def lines() -> list[str]:
        return [line for line in stream.getvalue().splitlines() if "already fused" in line]

    scan(watch)
    assert fused == ["a", "b"]
    for name in ("a", "b", "old"):
        with (inbox / name / f"{SAMPLE.name}_MTL.txt").open("a") as mtl:
            mtl.write("\n")  # edited after it was fused
    (inbox / "b" / "late_B8.TIF.part").write_bytes(b"x")  # b: still being delivered again
    clock[0] = IDLE_RESCAN_S / 2
    scan(watch)
    assert lines() == []  # not looked at yet
    clock[0] = IDLE_RESCAN_S
    scan(watch)
    assert lines() == [f"ddrf-run: {inbox / n}: already fused to {out / f'{n}.tif'}, and its files changed since (a "
                       f"new delivery?); not fused again. To fuse it again, deliver it under a new directory name, or "
                       f"stop the watcher, delete {n!r} from {out / STATUS} and start it with --overwrite"
                       for n in ("a", "old")]
    (inbox / "b" / "late_B8.TIF.part").rename(inbox / "b" / "late_B8.TIF")
    for step in (2, 3, 4):
        clock[0] = step * IDLE_RESCAN_S
        scan(watch)
    assert [line.split(":")[1].strip() for line in lines()] == [str(inbox / n) for n in ("a", "old", "b")]
    assert fused == ["a", "b"]
    assert {n: e["status"] for n, e in watch.status.scenes.items()} == {"a": "done", "b": "done", "old": "done"}


def test_renamed_or_deleted_waiting_scene_is_dropped_and_said_once(tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    watch = WatchProcess(inbox, out, tmp_path / "watch.log", "--method", "GSA", "--settle", "0.2")
    watch.wait("watching", lambda: bool(events(watch, "watching")))
    deliver(inbox / "a", hold_back="_B8.TIF")  # PAN still downloading: waiting
    deliver(inbox / "b", hold_back="_B8.TIF")
    watch.wait("a, b waiting", lambda: {scene_state(watch, n) for n in "ab"} == {"waiting"})
    (inbox / "a").rename(inbox / "a2")
    shutil.rmtree(inbox / "b")
    watch.wait("a, b gone", lambda: len(events(watch, "gone")) == 2 and scene_state(watch, "a2") == "waiting")
    time.sleep(1.0)  # five rescans (one every 0.2 s while a scene waits)
    assert watch.stop() == 0
    gone = sorted((e["name"], e["path"], e["was"], e["removed"]) for e in events(watch, "gone"))
    assert gone == [("a", str(inbox / "a"), "waiting", []), ("b", str(inbox / "b"), "waiting", [])]
    assert {n: e["status"] for n, e in watch.status().items()} == {"a2": "waiting"}
    assert next(e for e in events(watch, "stopped"))["waiting"] == 1


def test_restart_after_sigkill_forgets_a_deleted_scene_and_cleans_up_after_it(tmp_path: Path) -> None:
    """SIGKILL while the bundled model fuses `a` leaves it `running`, with its output lock and temporaries; `a` is
    deleted before the restart. The restart is not blocked by the dead watcher's lock, drops `a` and removes what it
    left. A live watcher's lock still refuses a second one."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    deliver(inbox / "a")
    killed = WatchProcess(inbox, out, tmp_path / "killed.log", "--settle", "0", "--wait-listed", "0", "--tile", "64",
                          "--halo", "16", "--threads", "1", "--progress-every", "0", "--progress-percent", "0")
    killed.wait("first windows", lambda: any(e["event"] == "progress" and e["windows_done"] >= 1
                                             for e in killed.events()), timeout=90)
    assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    left = sorted(p.name for p in out.glob(".a.*"))
    assert ".a.tif.ddrf-lock" in left and any(n.endswith(".ddrf-part") for n in left), left
    assert killed.status()["a"]["status"] == "running"
    shutil.rmtree(inbox / "a")

    again = WatchProcess(inbox, out, tmp_path / "again.log", "--method", "GSA", "--settle", "0")
    again.wait("a gone", lambda: bool(events(again, "gone")))
    refused = WatchProcess(inbox, out, tmp_path / "refused.log", "--method", "GSA")
    assert refused.process.wait(timeout=60) == 2
    assert "another ddrf-run --watch is writing to this output directory" in refused.log.read_text()
    refused.stop()
    assert again.stop() == 0
    assert events(again, "recovered")[0]["scenes"] == ["a"]
    (gone,) = events(again, "gone")
    assert gone["name"] == "a" and gone["was"] == "queued"
    assert sorted(Path(p).name for p in gone["removed"]) == [n for n in left if n.endswith(".ddrf-part")]
    assert again.status() == {}
    assert sorted(p.name for p in out.iterdir()) == [STATUS, f"{STATUS}.lock"]  # no lock, no temporary left


def test_gone_scene_keeps_an_output_lock_a_live_process_holds(tmp_path: Path) -> None:
    """A queued scene gone from the inbox while another process (a batch ddrf-run) writes its output: the entry goes,
    that process's lock and temporary stay."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    (out / STATUS).write_text(json.dumps({"scenes": {"a": {"status": "queued", "source": str(inbox / "a")}}}))
    temporary = out / ".a.tif.0123abcd.ddrf-part"
    with exclusive(out / "a.tif"):
        temporary.write_bytes(b"being written")
        watch, stream = watcher(inbox, out)
        assert list(watch.pending()) == []
        assert watch.status.scenes == {} and temporary.exists() and (out / ".a.tif.ddrf-lock").exists()
    assert stream.getvalue() == (f"ddrf-run: {inbox / 'a'}: gone from the inbox while queued; dropped from the "
                                 f"status file\n")
    assert json.loads((out / STATUS).read_text())["scenes"] == {}
