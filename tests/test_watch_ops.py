"""`ddrf-run --watch` as a service, at its edges: each bad setup or lost inbox is one line and exit 2 (a restart by
the unit cannot fix it), never a traceback that systemd restarts for ever."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_watch_guards import cli, dirs, one_line_exit_2, watcher  # noqa: F401 (dirs: a fixture)


def test_an_output_that_is_a_file_or_under_one_is_one_usage_line(dirs: tuple[Path, Path]) -> None:  # noqa: F811
    inbox, out = dirs
    blocker = out / "fused"
    blocker.write_text("not a folder")
    one_line_exit_2(cli(inbox, blocker), str(blocker), "not writable (a file, not a directory)")
    one_line_exit_2(cli(inbox, blocker / "sub"), str(blocker / "sub"), "not writable (Not a directory)")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("pattern", ["/data/flags/*.done", "../*", "", "."])
def test_a_ready_file_pattern_that_is_no_name_inside_the_scene_is_refused(tmp_path: Path, pattern: str) -> None:
    """Refused when the watcher is made, before it watches (ddrf-run: one usage line, exit 2). Before: an absolute
    pattern crashed the loop at the first scene (NotImplementedError traceback), `../*` matched the other scenes, so a
    scene still being copied was fused at once, and '' was silently no ready file."""
    from ddrf.scenes.progress import Reporter
    from ddrf.scenes.watch import Watcher, WatchOptions

    with pytest.raises(ValueError, match=f"--ready-file {re.escape(repr(pattern))}: not a file name pattern"):
        Watcher(tmp_path, tmp_path / "out", None, None, Reporter(progress=False),  # type: ignore[arg-type]
                WatchOptions(ready_file=pattern), None)


def test_an_inbox_deleted_while_watching_stops_with_one_line_and_exit_2(tmp_path: Path) -> None:
    """Before: a FileNotFoundError traceback from the scan (or the observer's start), exit 1, so the unit restarted
    it."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    watch, stream = watcher(inbox, out)
    shutil.rmtree(inbox)
    with pytest.raises(ValueError, match="inbox: cannot read the inbox .No such file or directory.; stopping"):
        list(watch.pending())
    assert watch.run() == 2  # gone before the observer started
    assert "Traceback" not in stream.getvalue()
    assert stream.getvalue().strip().splitlines()[-1].endswith(f"{inbox}: cannot watch the inbox (No such file or "
                                                               f"directory); stopping")


def test_the_dry_run_checks_the_ready_file_and_a_folder_is_no_ready_flag(dirs: tuple[Path, Path]) -> None:  # noqa: F811
    """`--watch --dry-run --ready-file ../x` exited 0 (the watcher itself refuses it); and a sub-folder named like the
    ready file counted as the flag, so a scene still being copied into it was taken as complete."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app
    from ddrf.scenes.watch import Readiness

    inbox, out = dirs
    result = CliRunner().invoke(app, ["--watch", str(inbox), "-o", str(out), "--method", "GSA", "--dry-run",
                                      "--ready-file", "../x"])
    one_line_exit_2(result, "--ready-file '../x': not a file name pattern")
    scene = inbox / "scene"
    (scene / "done").mkdir(parents=True)
    readiness = Readiness(600.0, "done", clock=lambda: 0.0)
    assert not readiness.ready(scene)
    (scene / "done").rmdir()
    (scene / "done").write_text("")
    assert readiness.ready(scene)
