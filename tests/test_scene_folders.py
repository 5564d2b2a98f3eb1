"""Unusual but plausible scene folders: what discovery says must tell the user which files it means."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ddrf.scenes.discover import discover_scene
from ddrf.scenes.errors import SceneError
from test_bad_inputs import pair


def test_two_deliveries_nested_in_one_folder_are_named_by_their_paths(tmp_path: Path) -> None:
    """a/pan.tif and b/pan.tif: the refusal said `several PAN files (pan.tif, pan.tif)`, one name twice."""
    pan, ms = pair(tmp_path / "scene" / "a")
    shutil.copytree(tmp_path / "scene" / "a", tmp_path / "scene" / "b")
    with pytest.raises(SceneError, match=r"several PAN files \(a/pan\.tif, b/pan\.tif\)"):
        discover_scene(tmp_path / "scene")


def test_a_scene_argument_that_is_a_file_or_nothing_says_what_it_is(tmp_path: Path) -> None:
    """`ddrf-run pan.tif -o OUT`, a scene directory mistyped and an Item file mistyped all failed with `X: not a
    directory`; the Item now fails as the unreadable Item it is (a usage error, before any scene)."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    pan, _ = pair(tmp_path / "data")
    result = CliRunner().invoke(app, [str(pan), str(tmp_path / "typo"), "-o", str(tmp_path / "out"), "--method",
                                      "GSA", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert f"ddrf-run: {pan}: a file, not a scene directory (the folder holding a scene's PAN and MS" in result.output
    assert f"ddrf-run: {tmp_path / 'typo'}: no such directory" in result.output, result.output
    gone = tmp_path / "items" / "x.json"
    result = CliRunner().invoke(app, [str(gone), "-o", str(tmp_path / "out"), "--method", "GSA", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"ddrf-run: {gone}: not a readable STAC Item"), result.output


def test_the_watch_dry_run_names_a_linked_scene_as_the_watcher_does(tmp_path: Path) -> None:
    """A staging inbox of links to deliveries: the watcher writes OUT/<link name>.tif, but its dry run planned the
    scene under the name of the folder linked to (and checked for a finished output at that name)."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    pair(tmp_path / "archive" / "LC_real")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scene_link").symlink_to(tmp_path / "archive" / "LC_real", target_is_directory=True)
    result = CliRunner().invoke(app, ["--watch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "GSA",
                                      "--dry-run", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "\nscene_link: 64 x 64 PAN px" in result.output and "LC_real:" not in result.output, result.output


def test_a_file_name_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    """An MS file copied with a Latin-1 name (`ms\\xff.tif`): the scene failed with `'utf-8' codec can't encode
    character '\\udcff' ...`, naming no file."""
    import os

    pan, ms = pair(tmp_path / "data")
    scene = tmp_path / "scene"
    scene.mkdir()
    shutil.copy(pan, scene / "pan.tif")
    shutil.copy(ms, os.fsdecode(os.fsencode(scene) + b"/ms\xff.tif"))
    with pytest.raises(SceneError, match=r"ms\\xff\.tif: its name is no UTF-8, which GDAL cannot open; rename"):
        discover_scene(scene)


def test_two_pan_candidates_without_names_are_listed(tmp_path: Path) -> None:
    """Two single-band files on the finest grid and no naming scheme: the refusal named neither."""
    pan, ms = pair(tmp_path / "scene")
    shutil.copy(pan, tmp_path / "scene" / "second.tif")
    pan.rename(tmp_path / "scene" / "first.tif"), ms.rename(tmp_path / "scene" / "coarse.tif")
    with pytest.raises(SceneError, match=r"cannot tell PAN from MS .*: first\.tif, second\.tif"):
        discover_scene(tmp_path / "scene")
