"""`ddrf-run --watch` guards: inputs that used to end in a traceback (restarted forever by the unit), a clobbered
status file or a scene that waits for ever. Each is one line naming the file, and exit 2 when restarting cannot help.

Run as root, chmod does not deny anything: there the tests make the file system refuse by monkeypatching."""
from __future__ import annotations

import builtins
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from ddrf.scenes.progress import Reporter
from ddrf.scenes.watch import StatusFile, Watcher, WatchOptions

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "ddrf" / "assets" / "sample_scene" / "LC80200392015216LGN00"
ROOT_USER = os.geteuid() == 0


def deny_writes(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Make `directory` read-only: chmod for a normal user; for root, creating a file in it raises EACCES."""
    if not ROOT_USER:
        directory.chmod(0o555)
        return
    real_os_open, real_open = os.open, builtins.open

    def denied(path: Any) -> bool:
        return isinstance(path, (str, os.PathLike)) and Path(os.fspath(path)).absolute().parent == directory

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if denied(path) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_os_open(path, flags, *args, **kwargs)

    def py_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if denied(path) and any(c in mode for c in "wxa+"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", py_open)


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    yield inbox, out
    for path in (out, *inbox.iterdir()):  # undo chmods so that pytest can remove tmp_path
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def watcher(inbox: Path, out: Path) -> tuple[Watcher, io.StringIO]:
    stream = io.StringIO()
    reporter = Reporter(log_format="text", progress=False, stream=stream)
    return Watcher(inbox, out, None, None, reporter, WatchOptions(settle_s=0), None), stream  # type: ignore[arg-type]


def cli(inbox: Path, out: Path) -> Any:
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    return CliRunner().invoke(app, ["--watch", str(inbox), "-o", str(out), "--method", "GSA", "--settle", "0"])


def one_line_exit_2(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_read_only_output_is_a_usage_error(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, out = dirs
    deny_writes(monkeypatch, out)
    one_line_exit_2(cli(inbox, out), str(out), "not writable")


def test_status_write_failing_mid_run_stops_with_exit_2(dirs: tuple[Path, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, out = dirs
    watch, stream = watcher(inbox, out)
    deny_writes(monkeypatch, out)  # after the start-up check: the disk went read-only while watching
    (inbox / "a").mkdir()
    (inbox / "a" / "x_B8.TIF.part").write_bytes(b"downloading")  # waiting: the watcher writes the status file
    assert watch.run() == 2
    lines = stream.getvalue().strip().splitlines()
    assert "Traceback" not in stream.getvalue()
    assert "ddrf-watch-status.json: cannot write the watch status file" in lines[-1]


@pytest.mark.parametrize("content", ['{"scenes": {"s1": {"updated": "x"}}}', '{"scenes": {"s1": "done"}}',
                                     '{"scenes": []}', '[1, 2]', '{"scenes": {"s1": {"status": "weird"}}}', None])
def test_status_file_of_the_wrong_shape_is_refused(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "ddrf-watch-status.json"
    if content is None:
        path.mkdir()  # the status path is a directory
    else:
        path.write_text(content)
    with pytest.raises(ValueError, match="ddrf-watch-status.json: not a ddrf-run watch status file"):
        StatusFile(path, tmp_path)


def test_status_file_of_the_wrong_shape_exits_2(dirs: tuple[Path, Path]) -> None:
    inbox, out = dirs
    (out / "ddrf-watch-status.json").write_text('{"scenes": {"s1": {"updated": "x"}}}')
    one_line_exit_2(cli(inbox, out), "ddrf-watch-status.json: not a ddrf-run watch status file")


def test_scene_named_like_the_status_file_is_refused(dirs: tuple[Path, Path]) -> None:
    inbox, out = dirs
    shutil.copytree(SAMPLE, inbox / "ddrf-watch-status")
    watch, stream = watcher(inbox, out)
    assert list(watch.pending()) == []
    entry = json.loads((out / "ddrf-watch-status.json").read_text())["scenes"]["ddrf-watch-status"]
    assert entry["status"] == "failed" and "would overwrite the watch status file" in entry["reason"]
    assert stream.getvalue().count("would overwrite") == 1
    assert list(watch.pending()) == []  # failed: never run, and no second line
    assert stream.getvalue().count("would overwrite") == 1


@pytest.mark.parametrize("target", ["inbox", "parent"])
def test_link_to_the_inbox_or_above_is_no_scene(dirs: tuple[Path, Path], target: str) -> None:
    inbox, out = dirs
    (inbox / "a").mkdir()
    (inbox / "a" / "x.TIF").write_bytes(b"x")
    (inbox / "loop").symlink_to(inbox if target == "inbox" else inbox.parent, target_is_directory=True)
    watch, stream = watcher(inbox, out)
    assert [p.name for p in watch.pending()] == ["a"]
    assert [p.name for p in watch.pending()] == ["a"]
    assert stream.getvalue().count("loop: links to") == 1  # one line, once
    assert "loop" not in watch.status.scenes


def test_unreadable_scene_directory_fails_with_a_reason(dirs: tuple[Path, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, out = dirs
    shutil.copytree(SAMPLE, inbox / "locked")
    if ROOT_USER:
        real_scandir = os.scandir

        def scandir(path: Any = ".") -> Any:
            if Path(os.fspath(path)) == inbox / "locked":
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    else:
        (inbox / "locked").chmod(0)
    watch, stream = watcher(inbox, out)
    assert list(watch.pending()) == []
    entry = watch.status.scenes["locked"]
    assert entry["status"] == "failed" and str(inbox / "locked") in entry["reason"]
    assert "cannot read the scene directory" in entry["reason"]
    assert stream.getvalue().count("cannot read the scene directory") == 1
