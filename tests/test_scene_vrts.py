"""VRT files in a scene folder: a VRT over files elsewhere (`pan.vrt`, `ms.vrt` made by gdalbuildvrt over a
delivery kept on another disk) is one of the scene's rasters; a VRT beside its own sources is not (its sources are
discovered, and counting both would make two PAN or MS candidates). Before, a folder of VRTs alone was refused as
having no raster files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from typer.testing import CliRunner

from ddrf.scenes.command import app
from ddrf.scenes.discover import discover_scene
from test_bad_inputs import pair


def vrt_over(source: Path, vrt: Path) -> Path:
    rasterio.shutil.copy(str(source), str(vrt), driver="VRT")
    return vrt


def test_a_scene_of_vrts_over_files_elsewhere_is_fused_as_those_files(tmp_path: Path) -> None:
    pan, ms = pair(tmp_path / "data")
    scene = tmp_path / "scene"
    scene.mkdir()
    pan_vrt, ms_vrt = vrt_over(pan, scene / "pan.vrt"), vrt_over(ms, scene / "ms.vrt")
    found = discover_scene(scene)
    assert (found.pan, [path for path, _ in found.ms]) == (pan_vrt, [ms_vrt] * 4)
    out = tmp_path / "out"
    runner = CliRunner()
    by_scene = runner.invoke(app, [str(scene), "-o", str(out), "--method", "GSA", "--no-progress"])
    assert by_scene.exit_code == 0, by_scene.output
    by_files = runner.invoke(app, ["--pan", str(pan), "--ms", str(ms), "-o", str(out / "direct.tif"), "--method",
                                   "GSA", "--no-progress"])
    assert by_files.exit_code == 0, by_files.output
    with rasterio.open(out / "scene.tif") as a, rasterio.open(out / "direct.tif") as b:
        assert np.array_equal(a.read(), b.read())


def test_a_vrt_beside_its_own_sources_is_not_counted_again(tmp_path: Path) -> None:
    pan, ms = pair(tmp_path / "scene")
    vrt_over(pan, tmp_path / "scene" / "pan_view.vrt")  # absolute source path
    shutil.copy(tmp_path / "scene" / "pan_view.vrt", tmp_path / "scene" / "sub_pan.vrt")
    absolute = (tmp_path / "scene" / "pan_view.vrt").read_text()
    (tmp_path / "scene" / "rel_pan.vrt").write_text(  # a source given relative to the VRT
        absolute.replace(f'relativeToVRT="0">{pan}', 'relativeToVRT="1">pan.tif'))
    found = discover_scene(tmp_path / "scene")
    assert (found.pan, [path for path, _ in found.ms]) == (pan, [ms] * 4)


def test_a_vrt_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    """A folder of VRTs whose source is gone, or one that is no VRT: the VRT and why, not 'no raster files'."""
    pan, ms = pair(tmp_path / "data")
    scene, broken = tmp_path / "scene", tmp_path / "broken"
    scene.mkdir(), broken.mkdir()
    vrt_over(pan, scene / "pan.vrt"), vrt_over(ms, scene / "ms.vrt")
    pan.unlink()
    (broken / "pan.vrt").write_text("<VRTDataset rasterXSize=")  # cut short
    result = CliRunner().invoke(app, [str(scene), str(broken), "-o", str(tmp_path / "out"), "--method", "GSA",
                                      "--no-progress"])
    assert result.exit_code == 1, result.output
    assert f"ddrf-run: {scene / 'pan.vrt'}: unreadable or truncated raster ({pan}: No such file" in result.output
    assert f"ddrf-run: {broken / 'pan.vrt'}: not a readable raster" in result.output, result.output
