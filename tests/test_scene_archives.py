"""A delivery left as an archive (a USGS Landsat .tar, a .zip): ddrf-run reads no archive, so it says so, naming the
archive, instead of 'no raster files' (a scene folder) or nothing at all (an archive dropped into a --watch inbox,
where only folders are scenes)."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

from typer.testing import CliRunner

from ddrf.scenes.command import app
from ddrf.scenes.progress import Reporter
from ddrf.scenes.watch import Watcher, WatchOptions
from scenes_fixtures import SAMPLE


def tar_of_sample(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for member in sorted(SAMPLE.iterdir())[:2]:
            tar.add(member, arcname=member.name)
    return path


def test_a_scene_folder_holding_only_an_archive_names_it(tmp_path: Path) -> None:
    archive = tar_of_sample(tmp_path / "scene" / "LC08_L1TP_020039.tar")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, [str(archive.parent), str(tmp_path / "empty"), "-o", str(tmp_path / "out"),
                                      "--method", "GSA", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert f"ddrf-run: {archive}: an archive; ddrf-run reads no archives: extract it" in result.output, result.output
    assert f"ddrf-run: {tmp_path / 'empty'}: no raster files" in result.output, result.output


def test_an_archive_in_the_watched_inbox_is_said_once(tmp_path: Path) -> None:
    inbox, out = tmp_path / "in", tmp_path / "out"
    archive = tar_of_sample(inbox / "LC08_L1TP_020039.TAR")
    (inbox / "notes.txt").write_text("not a delivery\n")
    stream = io.StringIO()
    reporter = Reporter(log_format="text", progress=False, stream=stream)
    watcher = Watcher(inbox, out, None, None, reporter, WatchOptions(settle_s=0), None)  # type: ignore[arg-type]
    assert list(watcher.pending()) == [] and list(watcher.pending()) == []
    said = stream.getvalue()
    assert said.count(f"{archive}: an archive; ddrf-run reads no archives: extract it") == 1, said
    assert "notes.txt" not in said
