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
