"""ddrf-run with the bundled ratio-2 model at a tile its 96-pixel halo left no room in: staged (torch-free)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ddrf.scenes.arrays import tile_differences

BOUND = {"p99": 0.005, "max": 0.02}  # issue 9: of each band's standard deviation


def test_ddrf_run_tile_128_with_the_bundled_model_runs_staged_and_matches_one_window(tmp_path: Path) -> None:
    """The ratio-2 default at --tile 128, which its 96-pixel halo made impossible before (four halos, 384, were the
    least): staged, and within issue 9's bound of one window over the sample scene, as ddrf-run writes both."""
    import rasterio
    from typer.testing import CliRunner

    from ddrf.assets import SAMPLE_SCENE
    from ddrf.scenes.command import app

    outputs = {}
    for tile in (128, 4096):
        out = tmp_path / str(tile)
        result = CliRunner().invoke(app, [str(SAMPLE_SCENE), "-o", str(out), "--tile", str(tile), "--no-progress"])
        assert result.exit_code == 0, result.output
        report = json.loads((out / f"{SAMPLE_SCENE.name}.json").read_text())
        assert (report["engine"]["staged"] is not None) == (tile == 128)
        assert report["tiling"]["halo"] == (16 if tile == 128 else 96)
        with rasterio.open(out / f"{SAMPLE_SCENE.name}.tif") as raster:
            outputs[tile] = np.moveaxis(raster.read().astype(np.float64), 0, -1)
    figures = tile_differences({128: outputs[128]}, outputs[4096])[128]
    assert figures["p99"] <= BOUND["p99"] and figures["max"] <= BOUND["max"], figures


def test_ddrf_eval_records_the_halo_that_ran() -> None:
    """ddrf-eval's run settings name stage 3's halo and the stages for a --tile that runs staged, the card's halo
    for the default window (they recorded the card's 96 for both)."""
    from ddrf.bundled import model_folder
    from ddrf.evaluate.methods import OnnxDDRF, Tiling

    folder = model_folder("landsat_ratio2")
    staged = OnnxDDRF(folder, tiling=Tiling(tile=128)).settings()
    default = OnnxDDRF(folder).settings()
    assert (staged["halo"], staged["staged"]["decoder_halo"]) == (16, 16)
    assert (default["halo"], default["staged"]) == (96, None)


def test_dry_run_counts_the_scene_maps_in_tmpdir(tmp_path: Path, monkeypatch) -> None:
    """A staged run whose maps go to TMPDIR: the plan names their size and the folder's free space, and says when
    they do not fit (before, it counted only the output's room)."""
    import shutil

    from typer.testing import CliRunner

    from ddrf.assets import SAMPLE_SCENE
    from ddrf.scenes.command import app

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("ddrf.scenes.staged.MAP_MEMORY", 0)
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    real = shutil.disk_usage
    monkeypatch.setattr("shutil.disk_usage",
                        lambda path: real(path)._replace(free=1000) if Path(path) == temporary else real(path))
    args = [str(SAMPLE_SCENE), "-o", str(tmp_path / "out"), "--no-progress", "--dry-run", "--tile"]
    staged = CliRunner().invoke(app, args + ["128"])
    # (256 + 2 x 96) x (512 + 2 x 96) PAN px at 1/4 resolution, 32 + 5 + 32 channels of float32: 5.44 MB
    said = f"scene maps 5.44 MB in {temporary} (TMPDIR), 1 kB free, model landsat_ratio2"
    assert said in staged.output and "DOES NOT FIT" in staged.output, staged.output
    sampler = CliRunner().invoke(app, args + ["4096"])
    assert "scene maps" not in sampler.output and "DOES NOT FIT" not in sampler.output, sampler.output
    assert not (tmp_path / "out").exists() and not list(temporary.iterdir())
