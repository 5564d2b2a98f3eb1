"""--stac-catalog naming a scene directory (or a folder in one): the catalogue would be written among the scene's own
files, an input; refused in one line before anything is written, as an output folder inside a scene is."""
from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from ddrf.scenes.command import app
from scenes_fixtures import SAMPLE


def test_a_catalogue_in_a_scene_directory_is_refused(tmp_path: Path) -> None:
    scene = tmp_path / "a"
    shutil.copytree(SAMPLE, scene)
    for catalog in (scene, scene / "stac"):
        result = CliRunner().invoke(app, [str(scene), "-o", str(tmp_path / "out"), "--method", "GSA",
                                          "--no-progress", "--stac-catalog", str(catalog)])
        assert result.exit_code == 2, result.output
        assert f"{catalog}: --stac-catalog is inside scene {scene}; choose one outside it" in result.output
    assert sorted(p.name for p in scene.iterdir()) == sorted(p.name for p in SAMPLE.iterdir())
    assert not (tmp_path / "out").exists()


def test_a_catalogue_or_output_in_the_watched_inbox_is_refused(tmp_path: Path, monkeypatch) -> None:
    """--watch IN --stac-catalog IN/a: folder a (a scene, or to be taken for one) was skipped as a scene without a
    word (and the dry run planned it as one); a catalogue or an output inside a scene directory of the inbox would
    be written among its files. Each is refused in one line at start, the watch and its dry run alike."""
    import ddrf.scenes.watch as watch

    monkeypatch.setattr(watch.Watcher, "run", lambda self: 0)  # past the checks: would watch for ever
    inbox = tmp_path / "in"
    shutil.copytree(SAMPLE, inbox / "a")
    refused = [("--stac-catalog", inbox / "a", "--stac-catalog is inside the watched inbox"),
               ("--stac-catalog", inbox / "cat", "--stac-catalog is inside the watched inbox"),
               ("-o", inbox / "a" / "out", "the output directory is inside scene")]
    for option, path, said in refused:
        out = [] if option == "-o" else ["-o", str(tmp_path / "out")]
        for dry in ([], ["--dry-run"]):
            result = CliRunner().invoke(app, ["--watch", str(inbox), *out, option, str(path), "--method", "GSA",
                                              "--no-progress", *dry])
            assert result.exit_code == 2, (option, path, dry, result.output)
            assert f"{path}: {said}" in result.output, result.output
    assert sorted(p.name for p in inbox.iterdir()) == ["a"]
    assert sorted(p.name for p in (inbox / "a").iterdir()) == sorted(p.name for p in SAMPLE.iterdir())
    hidden = CliRunner().invoke(app, ["--watch", str(inbox), "-o", str(tmp_path / "out"), "--stac-catalog",
                                      str(inbox / ".stac"), "--method", "GSA", "--no-progress", "--dry-run"])
    assert hidden.exit_code == 0, hidden.output  # a hidden folder is never taken for a scene


def test_an_output_folder_directly_in_the_watched_inbox_is_refused(tmp_path: Path, monkeypatch) -> None:
    """--watch IN -o IN/a (a scene there now), -o IN/b (a delivery landing later under that name) or -o IN: taken
    without a word, scene a (or b) then skipped as the output folder, never fused, its folder written into. Each is
    refused in one line at start, the watch and its dry run alike; a hidden folder of the inbox is no scene."""
    import ddrf.scenes.watch as watch

    monkeypatch.setattr(watch.Watcher, "run", lambda self: 0)  # past the checks: would watch for ever
    inbox = tmp_path / "in"
    shutil.copytree(SAMPLE, inbox / "a")
    for out in (inbox / "a", inbox / "b", inbox):
        for dry in ([], ["--dry-run"]):
            result = CliRunner().invoke(app, ["--watch", str(inbox), "-o", str(out), "--method", "GSA",
                                              "--no-progress", *dry])
            assert result.exit_code == 2, (out, dry, result.output)
            assert f"{out}: the output directory is in the watched inbox" in result.output, result.output
    assert sorted(p.name for p in inbox.iterdir()) == ["a"]
    assert sorted(p.name for p in (inbox / "a").iterdir()) == sorted(p.name for p in SAMPLE.iterdir())
    hidden = CliRunner().invoke(app, ["--watch", str(inbox), "-o", str(inbox / ".fused"), "--method", "GSA",
                                      "--no-progress", "--dry-run"])
    assert hidden.exit_code == 0 and "1 scene directory to fuse" in hidden.output, hidden.output
