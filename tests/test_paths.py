"""What a ground station's file systems do to names and paths: glob characters and odd names in scene folders, the
hrefs of the STAC Items written for them, lock files of other users, and a lock that cannot be removed.

Cheap: files made here, or the bundled sample scene fused with GSA (no torch)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import pytest
from typer.testing import CliRunner

import ddrf.files
from ddrf.files import Busy, clean_stale, exclusive, temp_path
from ddrf.scenes.command import app
from scenes_fixtures import SAMPLE


def test_cleaning_stale_temporaries_touches_only_the_outputs_own(tmp_path: Path) -> None:
    """Scene `a[1]` (or `a*`) must remove the temporaries its killed run left, and never those of scene `a1`, `ab`
    or `a.tif.b`, which another run may be writing this moment: the name is no glob pattern."""
    others = [temp_path(tmp_path / name) for name in ("a1.tif", "ab.tif", "a.tif.b.tif")]
    owns = {name: temp_path(tmp_path / name) for name in ("a[1].tif", "a*.tif", "a.tif")}
    for path in [*others, *owns.values()]:
        path.write_bytes(b"half a file")
    for name, own in owns.items():
        assert clean_stale(tmp_path / name) == [own], name
        assert not own.exists()
    assert all(path.exists() for path in others)


def test_a_lock_that_cannot_be_removed_hides_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The output folder made read-only during the work: its own error is raised (not the lock's unlink), a work
    that succeeded raises nothing, and the lock left behind is free for the next run."""
    final = tmp_path / "x.tif"
    lock = tmp_path / ".x.tif.ddrf-lock"
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == lock:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(OSError, match="x.item.json"):
        with exclusive(final):
            raise OSError(13, "Permission denied", str(tmp_path / "x.item.json"))
    with exclusive(final):
        pass
    assert lock.exists()
    monkeypatch.undo()
    with exclusive(final):
        pass
    assert not lock.exists()


def test_a_lock_file_another_user_left_still_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared output folder where another user's killed run left its lock file (0644, theirs): this user's run
    takes the lock through a read-only descriptor, and it still keeps a second run out. As root chmod denies
    nothing, so there opening the file for writing is refused by monkeypatching (as the kernel refuses a user)."""
    final = tmp_path / "x.tif"
    lock = tmp_path / ".x.tif.ddrf-lock"
    lock.touch()
    lock.chmod(0o444)
    if os.geteuid() == 0:
        real_open = os.open

        def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if Path(os.fspath(path)) == lock and flags & (os.O_WRONLY | os.O_RDWR):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", os_open)
    with exclusive(final):
        with pytest.raises(Busy, match="another process is writing this output"):
            with exclusive(final):
                pass
    assert not lock.exists()


def resolved(href: str, document: Path) -> Path:
    """Where a STAC href in `document` points, resolved as the URI reference STAC says it is."""
    return Path(unquote(urlparse(urljoin(document.absolute().as_uri(), href)).path))


def test_stac_hrefs_of_odd_names_point_at_the_files(tmp_path: Path) -> None:
    """A scene folder named `pass #1?%41 é`: the Item's asset hrefs and the catalogue's link, resolved as URIs (as
    ddrf-run's own Item input, STAC browsers and HTTP clients resolve them), name the files written."""
    name = "pass #1?%41 é"
    shutil.copytree(SAMPLE, tmp_path / name)
    out, catalog = tmp_path / "out", tmp_path / "catalog"
    result = CliRunner().invoke(app, [str(tmp_path / name), "-o", str(out), "--method", "GSA", "--quicklook",
                                      "--stac-catalog", str(catalog), "--no-progress"])
    assert result.exit_code == 0, result.output
    item = out / f"{name}.item.json"
    assets = json.loads(item.read_text())["assets"]
    assert {key: resolved(asset["href"], item) for key, asset in assets.items()} == {
        "data": out / f"{name}.tif", "report": out / f"{name}.json", "quicklook": out / f"{name}_quicklook.png"}
    links = [link["href"] for link in json.loads((catalog / "catalog.json").read_text())["links"]
             if link["rel"] == "item"]
    assert [resolved(href, catalog / "catalog.json") for href in links] == [item]


def test_a_scene_name_too_long_for_its_temporaries_fails_before_any_work(tmp_path: Path) -> None:
    """A scene folder of 226 bytes (113 letters é): its outputs' own names fit in the 255 bytes of a name, but the
    STAC Item's temporary (`.NAME.item.json.<8 hex>.ddrf-part`, 256 bytes) does not. One line naming that output
    and by how much to shorten the name, before any fusion, and nothing published."""
    name = "é" * 113
    shutil.copytree(SAMPLE, tmp_path / name)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(tmp_path / name), "-o", str(out), "--method", "GSA", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert f"{name}.item.json: a name of 236 bytes" in result.output and "shorten it by 1 bytes" in result.output
    assert "windows of" not in result.output  # no plan: nothing was fused
    assert sorted(p.name for p in out.iterdir()) == ["ddrf-run-summary.json"]


def test_a_newline_in_a_scene_name_keeps_each_message_one_line(tmp_path: Path) -> None:
    """A scene folder named `new<newline>line` (or holding an escape sequence): every message stays one line
    starting `ddrf-run:`, the name written with `\\n` (the JSON report keeps the real name)."""
    name = "new\nline\x1b[2J"
    shutil.copytree(SAMPLE, tmp_path / name)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(tmp_path / name), "-o", str(out), "--method", "GSA", "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines and all(line.startswith("ddrf-run:") for line in lines), result.output
    assert "\x1b" not in result.output
    assert any(line.startswith("ddrf-run: new\\nline\\x1b[2J: done -> ") for line in lines), result.output
    assert json.loads((out / f"{name}.json").read_text())["inputs"]["directory"] == str(tmp_path / name)


def test_outputs_differing_only_in_case_clash_where_the_disk_folds_case(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenes `LC08` and `lc08` fused onto a FAT/exFAT USB disk: `LC08.tif` and `lc08.tif` are one file there, so
    the second would be refused as no ddrf-run output, or with --overwrite silently replace the first. One usage
    line before any work. This file system tells case, so the probe is made to answer as a USB disk's would."""
    for folder in ("a/LC08", "b/lc08"):
        shutil.copytree(SAMPLE, tmp_path / folder)
    out = tmp_path / "out"
    monkeypatch.setattr(ddrf.files, "folds_case", lambda folder: True, raising=False)
    result = CliRunner().invoke(app, [str(tmp_path / "a/LC08"), str(tmp_path / "b/lc08"), "-o", str(out),
                                      "--method", "GSA", "--overwrite", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert re.search(r"lc08: its output lc08\S* would also be written by \S*/a/LC08 .*does not tell upper from "
                     "lower case", result.output), result.output
    assert not out.exists() or not any(out.iterdir())
    monkeypatch.undo()
    assert not ddrf.files.folds_case(tmp_path)  # the probe itself, on this file system


def test_a_file_system_without_locks_is_said_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An output on an NFS mount whose lock service is down: flock fails with ENOLCK. The scene fails with one line
    saying the output cannot be locked and why (not `cannot write here`), no lock file is left, and a watcher on
    such an output stops with one line too."""
    import errno
    import fcntl

    from ddrf.scenes.watch import WatchLock

    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", flock)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(out), "--method", "GSA", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert f"{SAMPLE.name}.tif: cannot lock the output (No locks available): its file system gives no file locks" \
        in result.output, result.output
    assert "cannot write here" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["ddrf-run-summary.json"]
    with pytest.raises(ValueError, match="ddrf-watch-status.json.lock: cannot lock it .*gives no file locks"):
        with WatchLock(out / "ddrf-watch-status.json"):
            pass


def test_an_unexpanded_tilde_in_the_output_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-o "~/fused"` (quoted, or from a unit file): one usage line naming the home folder meant, and no folder
    named `~` made in the current one; a `~` folder that exists is taken as the folder it is."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, [str(SAMPLE), "-o", "~/fused", "--method", "GSA", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "-o ~/fused: ~ is no folder here" in result.output and str(tmp_path / "home" / "fused") in result.output
    assert not (tmp_path / "~").exists()
    (tmp_path / "~").mkdir()
    result = CliRunner().invoke(app, [str(SAMPLE), "-o", "~/fused", "--method", "GSA", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "~" / "fused" / f"{SAMPLE.name}.tif").is_file()


def test_a_linked_scene_is_named_by_its_link_as_the_watcher_names_it(tmp_path: Path) -> None:
    """`ddrf-run inbox/pass1 -o out`, pass1 a link to an archived delivery: the output is out/pass1.tif, as the
    watcher names that scene, so that rerunning a watched scene by hand replaces its output rather than making a
    second one under the archive folder's name; the link and its folder together are still one scene given twice."""
    shutil.copytree(SAMPLE, tmp_path / "archive" / "LC_real")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "pass1").symlink_to(tmp_path / "archive" / "LC_real", target_is_directory=True)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(tmp_path / "inbox" / "pass1"), "-o", str(out), "--method", "GSA",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.tif")) == ["pass1.tif"]
    result = CliRunner().invoke(app, [str(tmp_path / "inbox" / "pass1"), str(tmp_path / "archive" / "LC_real"),
                                      "-o", str(out), "--method", "GSA", "--no-progress"])
    assert result.exit_code == 2 and "the same scene directory is given twice" in result.output, result.output
