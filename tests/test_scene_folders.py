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
