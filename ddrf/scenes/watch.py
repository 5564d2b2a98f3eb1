"""`ddrf-run --watch INBOX -o OUT`: fuse every scene directory that lands in INBOX, once, as it completes.

- Complete: no partial-download file in it (`.part`, `.tmp`, ...) and either the ready file is present
  (`--ready-file GLOB`, e.g. `*_MTL.txt` when the downlink writes it last) or no file has changed for `--settle`
  seconds and every file its metadata names is there (a Landsat MTL's band files, a DIMAP document's image files:
  Pleiades, SPOT 6/7). A scene still lacking such files (a copy paused on a
  slow link) stays waiting, its reason naming them, until they arrive, or until no file has changed for
  `--wait-listed` seconds: then it is fused with the bands present (a delivery without coastal or SWIR bands), and
  its log line and status say so.
- Exactly once across restarts: the status file (`OUT/ddrf-watch-status.json`) records each scene as waiting, queued,
  running, done or failed (with its one-line reason), done and failed ones with the digest of the directory as it
  was run (`delivery`). A done scene is never run again by the watcher. A failed one is not retried while its
  directory stays as it failed, so a bad delivery cannot make a retry loop; delivered again (the directory replaced,
  or its files changed: a fixed delivery) it is run once more, as a new scene, and if that fails too it records the
  new digest and waits for the next change. A scene left `running` by a crash or a kill is run again at the next
  start, which is safe because nothing of an unfinished scene is ever published.
- Stale state: a done scene whose directory changed since (a second delivery of the name), or whose output GeoTIFF
  was deleted, is said once per start, with how to fuse it again, never fused again; a waiting or queued scene whose
  directory left the inbox is dropped from the status file, said once, with what a killed run of it left in the
  output directory (temporaries, lock).
- Events: watchdog's native observer (inotify, ...) or, with `--poll`, its PollingObserver, for network file systems
  where change notifications do not arrive. Events only wake the loop; what is ready is decided by a scan, so a
  missed event delays a scene by at most one rescan interval.
- SIGTERM: the windows in flight finish, the scene in progress is abandoned (temporaries removed, status back to
  queued) and the watcher exits like any ddrf-run: 1 when a scene it handled in this run failed, else 0. SIGINT
  (Ctrl-C) too, except that the scene in progress stays `running` (run again at the next start).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, NamedTuple

from ddrf.files import open_lock
from ddrf.scenes.engines import EngineSpec
from ddrf.scenes.discover import delivered, is_mtl, listed_absent, unread_archive
from ddrf.scenes.jobs import SceneJob
from ddrf.scenes.streaming import Outputs, RunSettings
from ddrf.scenes.progress import GracefulStop, Reporter, StopRequested, exit_code
from ddrf.scenes.runner import run_scene

STATUS_NAME = "ddrf-watch-status.json"
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", ".download")
# a full rescan even without events (covers missed notifications); also how often done and failed scenes are looked
# at for a second delivery (Watcher.check_stale): that costs ~1 ms a scene, and while files are being copied in, every
# event brings a scan
IDLE_RESCAN_S = 30.0
# the `delivery` of a scene that failed when its directory could not be digested (unreadable, emptied, a partial file
# in it): any digest differs from it, so the scene is run again once it can be read and is complete
UNKNOWN_DELIVERY = "unknown"
STATUSES = ("waiting", "queued", "running", "done", "failed")
TEXT_FIELDS = ("source", "output", "reason", "delivery", "updated")  # of a status file's entry, when present


class CannotWatch(ValueError):
    """The status file cannot be written (the exactly-once promise) or the inbox read any more: the watcher stops."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class WatchOptions:
    settle_s: float = 30.0
    ready_file: str | None = None
    poll: bool = False
    poll_interval_s: float = 5.0
    status_file: Path | None = None
    wait_listed_s: float = 600.0  # without --ready-file: how long a settled scene waits for files its metadata names
    bands: tuple[str, ...] = ()  # --bands and --sensor: how every scene's bands are named, as in a batch run
    sensor: str | None = None


class StatusFile:
    """Per scene: status, source, one-line reason, time of the last change; rewritten atomically on every change."""

    def __init__(self, path: Path, inbox: Path) -> None:
        self.path, self.inbox = path, inbox
        self.scenes: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        if not os.path.lexists(self.path):
            return {}
        problem = "move it away to start afresh"
        if self.path.is_dir():
            raise ValueError(f"{self.path}: not a ddrf-run watch status file (a directory); {problem}")
        try:
            document = json.loads(self.path.read_text())
        except OSError as exc:
            raise ValueError(f"{self.path}: cannot read the watch status file ({exc.strerror or exc})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.path}: not a ddrf-run watch status file ({exc}); {problem}") from None
        scenes = document.get("scenes") if isinstance(document, dict) else None
        if not isinstance(scenes, dict):
            raise ValueError(f"{self.path}: not a ddrf-run watch status file (no \"scenes\" object); {problem}")
        for name, entry in scenes.items():
            wrong = _wrong_entry(name, entry)
            if wrong:
                raise ValueError(f"{self.path}: not a ddrf-run watch status file (scene {name!r}: {wrong}); "
                                 f"{problem}")
        return dict(scenes)

    def status(self, name: str) -> str | None:
        return self.scenes.get(name, {}).get("status")

    def set(self, name: str, status: str, **fields: Any) -> None:
        entry = {k: v for k, v in self.scenes.get(name, {}).items() if k not in ("reason", "error")}
        self.scenes[name] = {**entry, "status": status, "updated": _now(), **{k: v for k, v in fields.items()
                                                                                if v is not None}}
        self.save()

    def save(self) -> None:
        from ddrf.files import write_text_atomic

        counts: dict[str, int] = {}
        for entry in self.scenes.values():
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        body = {"status_version": 1, "inbox": str(self.inbox), "updated": _now(), "counts": counts,
                "scenes": dict(sorted(self.scenes.items()))}
        try:
            write_text_atomic(self.path, json.dumps(body, indent=2) + "\n")
        except OSError as exc:
            raise CannotWatch(self.path, f"{self.path}: cannot write the watch status file "
                                         f"({exc.strerror or exc}); stopping") from None

    def drop(self, name: str) -> None:
        del self.scenes[name]
        self.save()

    def recover(self) -> list[str]:
        """Scenes a previous process left running (killed, crashed): queued again."""
        names = [n for n, e in self.scenes.items() if e["status"] == "running"]
        for name in names:
            self.set(name, "queued", reason="the previous process ended while it ran; run again")
        return names


def _wrong_entry(name: str, entry: Any) -> str | None:
    """What is wrong with a status file's entry (edited by hand), or None: the watcher uses the name as a file name
    in the output directory and the path fields as paths."""
    if not isinstance(entry, dict) or entry.get("status") not in STATUSES:
        return f"not an object with a status among {', '.join(STATUSES)}"
    if name in ("", ".", "..") or "/" in name:
        return "not a directory name"
    text = next((key for key in TEXT_FIELDS if key in entry and not isinstance(entry[key], str)), None)
    return f"{text} is not a string" if text else None


class WatchLock:
    """An exclusive lock beside the status file: two watchers on one output would fuse scenes twice."""

    def __init__(self, status_path: Path) -> None:
        self.path = status_path.with_name(status_path.name + ".lock")
        self.fd: int | None = None

    def __enter__(self) -> "WatchLock":
        try:
            self.fd = open_lock(self.path)
        except OSError as exc:
            raise ValueError(f"{self.path}: cannot open the watch lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise ValueError(f"{self.path}: another ddrf-run --watch is writing to this output directory") from None
        except OSError as exc:  # ENOLCK: no watcher could tell another one is running
            os.close(self.fd)
            raise ValueError(f"{self.path}: cannot lock it ({exc.strerror}): its file system gives no file locks (an "
                             "NFS mount without its lock service?); mount it with locks or write elsewhere") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the file stays (harmless, reused)


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...] | None:
    """(name, size, mtime) of every file; None while the directory is empty or holds a partial download."""
    try:
        files = sorted(p for p in directory.rglob("*") if p.is_file())
        if not files or any(p.name.lower().endswith(PARTIAL_SUFFIXES) for p in files):
            return None
        return tuple((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    except FileNotFoundError:  # a file vanished while we looked: still being written
        return None


def delivery_digest(directory: Path) -> str | None:
    """A short digest of what `directory` holds: its fingerprint and its own ctime, which a new directory of the same
    name changes even when its files keep their names, sizes and times (`cp -a`, `rsync -a`). None while the
    directory is empty or holds a partial download."""
    try:
        files, ctime = fingerprint(directory), directory.stat().st_ctime_ns
    except OSError:
        return None
    return None if files is None else hashlib.sha256(repr((files, ctime)).encode()).hexdigest()[:16]


def failed_delivery(digest: str | None) -> str:
    """The `delivery` a failed entry records: the directory's digest, or UNKNOWN_DELIVERY when it had none."""
    return digest or UNKNOWN_DELIVERY


class Verdict(NamedTuple):
    ready: bool
    reason: str | None = None  # why it waits, or (ready) what it is fused without


def check_ready_file(pattern: str | None) -> None:
    """--ready-file is a name pattern matched inside each scene directory; anything else is a ValueError saying so."""
    if pattern is not None and not relative_pattern(pattern):
        raise ValueError(f"--ready-file {pattern!r}: not a file name pattern matched inside each scene directory "
                         "(like '*_MTL.txt' or 'done')")


class Readiness:
    """Decides when a scene directory is complete: ready file present, or unchanged for `settle_s` seconds with
    every file its metadata names present (or, after `wait_listed_s` seconds unchanged, with those present)."""

    def __init__(self, settle_s: float, ready_file: str | None, clock: Callable[[], float] = time.monotonic,
                 wait_listed_s: float = 600.0):
        check_ready_file(ready_file)
        self.settle_s, self.ready_file, self.clock, self.wait_listed_s = settle_s, ready_file, clock, wait_listed_s
        self.seen: dict[Path, tuple[Any, float]] = {}

    def ready(self, directory: Path) -> bool:
        return self.check(directory).ready

    def check(self, directory: Path) -> Verdict:
        current = fingerprint(directory)
        if current is None:
            self.seen.pop(directory, None)
            return Verdict(False)
        if self.ready_file and any(p.is_file() for p in directory.glob(self.ready_file)):  # a folder is no flag
            return Verdict(True)  # the producer says the scene is complete: the files it lacks are not coming
        now = self.clock()
        previous = self.seen.get(directory)
        if previous is None or previous[0] != current:
            self.seen[directory] = (current, now)
            quiet = 0.0
        else:
            quiet = now - previous[1]
        if quiet < self.settle_s:
            return Verdict(False)
        absent = listed_absent(directory)
        if not absent:
            return Verdict(True)
        names = named_in(absent)
        if quiet >= self.wait_listed_s:
            return Verdict(True, f"fused without {names}: not arrived within --wait-listed {self.wait_listed_s:g} s")
        return Verdict(False, f"waiting for {names} (fused without them when nothing changed for --wait-listed "
                              f"{self.wait_listed_s:g} s)")


def relative_pattern(pattern: str) -> bool:
    """A glob that matches within the directory it is applied to: not empty, absolute or reaching up with `..`."""
    parts = PurePosixPath(pattern).parts
    return bool(parts) and not pattern.startswith("/") and ".." not in parts


def named_in(absent: list[tuple[Path, Path]]) -> str:
    """'a.TIF, b.TIF named in the MTL' (or in DIM_....XML, the DIMAP document), from listed_absent's pairs."""
    by_document: dict[str, list[str]] = {}
    for path, document in absent:
        where = "the MTL" if is_mtl(document) else document.name
        by_document.setdefault(where, []).append(path.name)
    return "; ".join(f"{', '.join(names)} named in {where}" for where, names in by_document.items())


def unreadable(directory: Path) -> str | None:
    """Why the scene directory (or a folder in it) cannot be read, or None; a folder vanishing meanwhile is fine."""
    problems: list[str] = []

    def note(exc: OSError) -> None:
        if not isinstance(exc, FileNotFoundError):
            problems.append(f"{exc.filename or directory}: cannot read the scene directory "
                            f"({exc.strerror or exc})")

    if not os.access(directory, os.R_OK | os.X_OK):
        return f"{directory}: cannot read the scene directory (permission denied)"
    for _ in os.walk(directory, onerror=note):
        if problems:
            break
    return problems[0] if problems else None


def writable_directory(directory: Path) -> None:
    """Make `directory` if missing; a ValueError (a usage error: restarting will not fix it) unless a file can be
    created in it (also when it is a file, or under one)."""
    from ddrf.files import cannot_write

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason: str | None = "a file, not a directory" if isinstance(exc, FileExistsError) else exc.strerror
    else:
        reason = cannot_write(directory)
    if reason:
        raise ValueError(f"{directory}: the output directory is not writable ({reason})")


def watched_job(directory: Path, out: Path, bands: tuple[str, ...], sensor: str | None) -> SceneJob:
    """A scene of the inbox as the watcher fuses it (and its dry run plans it): named by its entry in the inbox, a
    link by the link's name, never by the folder it links to."""
    return SceneJob(directory.name, out / f"{directory.name}.tif", directory=directory, bands=bands, sensor=sensor)


def scene_dirs(inbox: Path) -> list[Path]:
    return sorted(p for p in inbox.iterdir() if p.is_dir() and delivered(p.name))


class Watcher:
    """The loop: scan, run what is ready (oldest name first), sleep until an event or the next rescan."""

    def __init__(self, inbox: Path, out: Path, spec: EngineSpec, settings: RunSettings, reporter: Reporter,
                 options: WatchOptions, catalog: Path | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.inbox, self.out, self.spec, self.settings = inbox, out, spec, settings
        self.reporter, self.options, self.catalog = reporter, options, catalog
        status_path = options.status_file or out / STATUS_NAME
        writable_directory(out)
        if status_path.parent != out:
            writable_directory(status_path.parent)
        self.status = StatusFile(status_path, inbox)
        self.readiness = Readiness(options.settle_s, options.ready_file, clock, options.wait_listed_s)
        self.notes: dict[str, str] = {}  # scene -> what it is fused without (--wait-listed ran out)
        self.skipped: set[str] = set()  # inbox entries already reported as no scene (one line each, once)
        self.handled: list[dict[str, Any]] = []  # this run's scene results: the exit code (earlier runs' do not count)
        self.said: set[tuple[str, str]] = set()  # (event, scene): stale-state lines said, each once per start
        self.baseline: dict[str, str] = {}  # done or failed entries from before the status file kept a digest: as
        # first seen
        self.done_checked = -float("inf")  # when done and failed scenes were last checked (check_stale)

    def skip(self, directory: Path, why: str) -> None:
        if directory.name not in self.skipped:
            self.skipped.add(directory.name)
            self.reporter.emit("skipped", f"{directory}: {why}; not a scene, skipped", name=directory.name,
                               path=str(directory), reason=why)

    def skip_archives(self) -> None:
        """Only folders are scenes: an archive dropped into the inbox (a USGS .tar) is said once, not passed over."""
        for path in self.inbox.iterdir():
            packed = unread_archive(path, "a folder of the inbox") if path.is_file() and delivered(path.name) else None
            if packed:
                self.skip(path, packed)

    def refuse(self, directory: Path, reason: str) -> None:
        """A scene that cannot be run: failed, with its one-line reason (the watcher keeps watching)."""
        name = directory.name
        self.status.set(name, "failed", source=str(directory), reason=reason,
                        delivery=failed_delivery(delivery_digest(directory)))
        entry = {"name": name, "status": "failed", "error": reason, "source": str(directory),
                 "output": str(self.out / f"{name}.tif")}
        self.handled.append(entry)
        self.reporter.scene(entry)

    def outputs(self, name: str) -> Outputs:
        """Every output path the scene may have (spread map and quicklook included)."""
        return Outputs.for_raster(self.out.absolute() / f"{name}.tif", True, True)

    def clash(self, name: str) -> str | None:
        """The scene's outputs would overwrite the status or lock file (a scene named like the status file)."""
        from ddrf.scenes.jobs import published

        ours = {self.status.path.absolute(), self.status.path.absolute().with_name(self.status.path.name + ".lock")}
        for target in published(self.outputs(name)):
            if target in ours:
                return (f"{name}: its output {target} would overwrite the watch status file; rename the scene "
                        f"directory")
        return None

    def pending(self) -> Iterator[Path]:
        """Ready scenes not yet done or failed; marks the others waiting, and drops those gone from the inbox."""
        ours = {p.resolve() for p in (self.out, self.catalog) if p is not None}
        inbox = self.inbox.resolve()
        try:
            directories = scene_dirs(self.inbox)
            self.skip_archives()
        except OSError as exc:  # deleted, unmounted, made unreadable: nothing more will arrive
            raise CannotWatch(self.inbox, f"{self.inbox}: cannot read the inbox ({exc.strerror or exc}); "
                                          f"stopping") from None
        self.forget_gone({d.name for d in directories})
        now = self.readiness.clock()
        check_done = now - self.done_checked >= IDLE_RESCAN_S
        if check_done:
            self.done_checked = now
        for directory in directories:
            resolved = directory.resolve()
            if resolved in ours:  # an output or catalogue folder inside the inbox is not a scene
                continue
            if resolved == inbox or resolved in inbox.parents:
                self.skip(directory, f"links to {resolved}, the inbox or a folder above it")
                continue
            state = self.status.status(directory.name)
            if state in ("done", "failed") and check_done:
                state = self.check_stale(directory, state)
            if state in ("done", "failed"):
                continue
            reason = self.clash(directory.name) or unreadable(directory)
            if reason:
                self.refuse(directory, reason)
                continue
            verdict = self.readiness.check(directory)
            if verdict.ready:
                if verdict.reason:
                    self.notes[directory.name] = verdict.reason
                    self.reporter.emit("incomplete", f"{directory}: {verdict.reason}", name=directory.name,
                                       path=str(directory), reason=verdict.reason)
                yield directory
            elif state is None or (state == "waiting"
                                   and self.status.scenes[directory.name].get("reason") != verdict.reason):
                self.status.set(directory.name, "waiting", source=str(directory), reason=verdict.reason)
                if verdict.reason:
                    self.reporter.emit("waiting", f"{directory}: {verdict.reason}", name=directory.name,
                                       path=str(directory), reason=verdict.reason)

    def check_stale(self, directory: Path, state: str) -> str:
        """A done or failed scene against its directory and output (once per IDLE_RESCAN_S); the scene's state after.

        - done, and its directory changed since it was fused (delivered again, files replaced): one `redelivered` line
          per start saying so and how to fuse it again;
        - done, and its output GeoTIFF is gone (deleted from OUT): one `missing` line per start, the same way. Neither
          is fused again by itself: a published product is never replaced (or redone) unasked;
        - failed, and its directory changed since it failed (a fixed delivery): one `retrying` line, and the scene is
          `waiting` again, run once complete as a new scene would be. It cannot loop: a failing run records the digest
          of what it failed on, and an unchanged failed delivery is never run again.
        Entries from before the status file kept a digest are compared with what this process first saw."""
        name = directory.name
        entry = self.status.scenes[name]
        if state == "done":
            output = entry.get("output") or str(self.outputs(name).raster)
            how = (f"To fuse it again, deliver it under a new directory name, or stop the watcher, delete {name!r} "
                   f"from {self.status.path} and start it with --overwrite")
            if ("redelivered", name) not in self.said and self.changed(directory, entry):
                self.say_once("redelivered", directory, f"already fused to {output}, and its files changed since (a "
                              f"new delivery?); not fused again. {how}", output=output)
            if not os.path.lexists(output):
                self.say_once("missing", directory, f"done, but its output {output} is gone (deleted?); not fused "
                              f"again. {how}", output=output)
            return state
        if not self.changed(directory, entry):
            return state
        error = entry.get("reason") or "no reason recorded"
        entry.pop("delivery", None)  # what it failed on; its next run records its own
        self.status.set(name, "waiting", source=str(directory))
        self.reporter.emit("retrying", f"{directory}: failed before ({error}), and its files changed since (a fixed "
                           f"delivery?); fusing it again once it is complete, once: if that fails too, not again "
                           f"until its files change again", name=name, path=str(directory), error=error,
                           status_file=str(self.status.path))
        return "waiting"

    def changed(self, directory: Path, entry: dict[str, Any]) -> bool:
        """Whether the scene directory differs from the digest its done or failed entry recorded (or, for an entry
        without one, from what this process first saw); False while it is emptied or still being delivered."""
        current = delivery_digest(directory)
        if current is None:  # look again later
            return False
        return current != (entry.get("delivery") or self.baseline.setdefault(directory.name, current))

    def say_once(self, event: str, directory: Path, text: str, **fields: Any) -> None:
        """One line about a scene's stale state, once per start."""
        if (event, directory.name) in self.said:
            return
        self.said.add((event, directory.name))
        self.reporter.emit(event, f"{directory}: {text}", name=directory.name, path=str(directory),
                           status_file=str(self.status.path), **fields)

    def forget_gone(self, present: set[str]) -> None:
        """Waiting or queued scenes whose directory left the inbox (renamed, deleted): dropped from the status file,
        said once, and what a killed run of one left in the output directory removed. Done and failed entries stay:
        they keep a scene of that name from being fused twice or retried in a loop."""
        for name, entry in list(self.status.scenes.items()):
            if entry["status"] not in ("waiting", "queued") or name in present:
                continue
            self.status.drop(name)
            self.readiness.seen.pop(self.inbox / name, None)
            self.notes.pop(name, None)
            removed = self.leftovers(name) if entry["status"] == "queued" else []
            path = entry.get("source") or str(self.inbox / name)
            text = f"{path}: gone from the inbox while {entry['status']}; dropped from the status file"
            if removed:
                text += f", and removed what an unfinished run of it left: {', '.join(p.name for p in removed)}"
            self.reporter.emit("gone", text, name=name, path=path, was=entry["status"],
                               removed=[str(p) for p in removed])

    def leftovers(self, name: str) -> list[Path]:
        """Remove the temporaries a killed run of the scene left, and its output lock (a run of the scene would, but a
        gone scene gets none). Under that lock, so that a live process writing the output (a batch ddrf-run) keeps
        its files; a lock of a dead process is free (the kernel dropped it) and removed on release."""
        from ddrf.files import Busy, clean_stale, exclusive
        from ddrf.scenes.jobs import published

        outputs = self.outputs(name)
        try:
            with exclusive(outputs.raster):
                return [path for final in published(outputs) for path in clean_stale(final)]
        except (Busy, OSError):
            return []

    def run_one(self, directory: Path) -> None:
        name = directory.name
        job = watched_job(directory, self.out, self.options.bands, self.options.sensor)
        self.status.set(name, "running", source=str(directory), output=str(job.raster))
        delivered = delivery_digest(directory)  # what this run fuses: a change during the run is a new delivery
        try:
            entry = run_scene(job, self.spec, self.settings, self.reporter, self.catalog)
        except StopRequested:
            self.status.set(name, "queued", reason="abandoned at SIGTERM (nothing published); run at the next start")
            self.reporter.emit("stopping", f"SIGTERM: abandoned {name}, stopping", scene=name)
            raise
        self.handled.append(entry)
        note = self.notes.pop(name, None)
        if entry["status"] == "failed":  # what it failed on: run again only when that changes
            self.status.set(name, "failed", reason=entry["error"], delivery=failed_delivery(delivered))
        else:
            self.status.set(name, "done", files=entry.get("files"), seconds=entry.get("seconds"), reason=note,
                            delivery=delivered)  # what was fused: a later change is said

    def wait_time(self) -> float:
        waiting = any(e["status"] in ("waiting", "queued") for e in self.status.scenes.values())
        return max(0.2, min(self.options.settle_s / 2, 5.0)) if waiting else IDLE_RESCAN_S

    def run(self) -> int:
        """When stopped by SIGTERM or SIGINT: 1 when a scene failed in this run, else 0 (as a batch run); 2 (and one
        line naming the file) when the status file cannot be written or the inbox read."""
        try:
            return self._run()
        except CannotWatch as exc:
            self.reporter.emit("error", " ".join(str(exc).split()), path=str(exc.path), error=str(exc))
            return 2

    def _run(self) -> int:
        recovered = self.status.recover()
        if recovered:
            self.reporter.emit("recovered", f"run again (left running by the previous process): "
                                            f"{', '.join(recovered)}", scenes=recovered)
        stopped_by = "SIGTERM"
        with GracefulStop() as stop, _observer(self.inbox, self.options, stop.wake):
            self.reporter.stop = stop
            self.reporter.emit("watching", f"watching {self.inbox} -> {self.out} (status: {self.status.path})",
                               inbox=str(self.inbox), output=str(self.out), status_file=str(self.status.path))
            try:
                while not stop.requested:
                    for directory in self.pending():
                        if stop.requested:
                            break
                        self.run_one(directory)
                    stop.idle(self.wait_time())
            except StopRequested:
                pass
            except KeyboardInterrupt:  # Ctrl-C: the scene in progress stays `running`, so the next start runs it
                stopped_by = "SIGINT"
        code = exit_code(self.handled)
        counts = {s: sum(e["status"] == s for e in self.status.scenes.values())
                  for s in ("done", "failed", "queued", "waiting")}
        self.reporter.emit("stopped", f"stopped on {stopped_by}: " + ", ".join(f"{n} {s}" for s, n in counts.items()),
                           signal=stopped_by, exit_code=code, **counts)
        return code


class _observer:
    """watchdog's observer (native, or polling with --poll) setting `wake` on any change under the inbox."""

    def __init__(self, inbox: Path, options: WatchOptions, wake: Any) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        self.observer = PollingObserver(timeout=options.poll_interval_s) if options.poll else Observer()
        self.observer.schedule(Wake(), str(inbox), recursive=True)
        self.inbox = inbox

    def __enter__(self) -> "_observer":
        try:
            self.observer.start()
        except OSError as exc:  # the inbox gone since the start-up check; inotify's limits
            raise CannotWatch(self.inbox, f"{self.inbox}: cannot watch the inbox ({exc.strerror or exc}); "
                                          f"stopping") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.observer.stop()
        self.observer.join(timeout=10)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
