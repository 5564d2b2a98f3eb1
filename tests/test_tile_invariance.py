"""Issue 9, item 1: the bundled models' ddrf-run output does not depend on the tile size.

The bundled ratio-4 model (v2: no window statistics, a receptive field inside its card's halo) runs through
ddrf-run's own path (jobs.run_job: windows, halo, feathered blend) on a ratio-4 scene made from the bundled sample
scene, with tiles 128, 256 and 512 and once as a single window covering the whole padded scene; every band's p99
|difference| must stay within 0.5 % and its max within 2 % of that band's standard deviation. The bundled ratio-2
model (v1, with scene statistics and its card's 96-pixel halo) is held to the same bound on the sample scene itself,
at every tile ddrf-run accepts with that halo (128 leaves no room inside it).
"""
from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ddrf.scenes import engines, jobs, streaming
from ddrf.scenes.arrays import tile_differences
from ddrf.scenes.engines import default_tiling
from ddrf.scenes.tiling import CONTEXT_WINDOWS, context_windows
from scenes_fixtures import BANDS, SAMPLE

WHOLE = 1024  # > the scene's 512 columns + 2 halos: one window


def ratio4_scene(folder: Path) -> tuple[Path, Path]:
    """pan.tif = the sample's 15 m PAN; ms.tif = its 30 m blue, green, red, NIR averaged over 2 x 2 blocks (60 m),
    on the PAN's corner: a generic ratio-4 GeoTIFF pair of real Landsat-8 content."""
    stem = SAMPLE.name
    with rasterio.open(SAMPLE / f"{stem}_B8.TIF") as ds:
        pan, profile, left, top = ds.read(1), ds.profile, ds.transform.c, ds.transform.f
    ms = []
    for number in (2, 3, 4, 5):
        with rasterio.open(SAMPLE / f"{stem}_B{number}.TIF") as ds:
            band = ds.read(1).astype(np.float64)
        ms.append(band.reshape(band.shape[0] // 2, 2, band.shape[1] // 2, 2).mean(axis=(1, 3)))
    paths = folder / "pan.tif", folder / "ms.tif"
    with rasterio.open(paths[0], "w", **profile) as dst:
        dst.write(pan, 1)
    ms_profile = {**profile, "count": 4, "height": ms[0].shape[0], "width": ms[0].shape[1],
                  "transform": from_origin(left, top, 60.0, 60.0)}
    with rasterio.open(paths[1], "w", **ms_profile) as dst:
        dst.write(np.round(np.stack(ms)).astype(profile["dtype"]))
        dst.descriptions = tuple(BANDS)
    return paths


def bundled_ratio4_model() -> Path:
    from ddrf.bundled import choose_model

    return choose_model("ratio-4 scene", 4, BANDS, len(BANDS)).path


def fused(pair: tuple[Path, Path] | Path, tile: int, out: Path, model: Path | None = None,
          halo: int | None = None) -> np.ndarray:
    """ddrf-run's job path on a GeoTIFF pair or a scene directory; `halo` None: the model card's."""
    spec = engines.EngineSpec(model=str(model or bundled_ratio4_model()), backend="ort-cpu", seed=0, threads=1)
    settings = streaming.RunSettings(tile=tile, batch=1, halo=halo, progress=False)
    job = (jobs.SceneJob(out.stem, out, directory=pair) if isinstance(pair, Path)
           else jobs.SceneJob(out.stem, out, pan=pair[0], ms=(pair[1],)))
    assert jobs.run_job(job, spec, settings)["status"] == "done"
    with rasterio.open(out) as ds:
        return np.moveaxis(ds.read(), 0, -1).astype(np.float64)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Path, Path], np.ndarray]:
    folder = tmp_path_factory.mktemp("invariance")
    pair = ratio4_scene(folder)
    return folder, pair, fused(pair, WHOLE, folder / "whole.tif")


def test_the_bundled_ratio4_model_is_v2() -> None:
    from ddrf.card import read_card

    assert read_card(bundled_ratio4_model() / "card.json").model["arch"] == "v2"


@pytest.mark.parametrize("tile", [128, 256, 512])
def test_bundled_v2_output_does_not_depend_on_the_tile(tile: int,
                                                        whole: tuple[Path, tuple[Path, Path], np.ndarray]) -> None:
    folder, pair, reference = whole
    tiled = fused(pair, tile, folder / f"t{tile}.tif")
    figures = tile_differences({tile: tiled}, reference)[tile]  # the worst band's, as fractions of its std
    assert figures["p99"] <= 0.005 and figures["max"] <= 0.02, (tile, figures)


def test_the_one_graph_sampler_is_used_where_shipped_and_agrees(whole: tuple[Path, tuple[Path, Path], np.ndarray],
                                                                 tmp_path: Path) -> None:
    """The bundled ratio-4 model ships its 1-step sampler as one graph (sampler_k1.onnx): ddrf-run uses it, says so in
    the report, and writes what the encoder + denoiser graphs write (the same model without that file)."""
    import shutil

    folder, pair, _ = whole
    model = bundled_ratio4_model()
    stepwise = tmp_path / "stepwise"
    shutil.copytree(model, stepwise, ignore=shutil.ignore_patterns("sampler_k*"))
    one_graph = fused(pair, 256, tmp_path / "one.tif", model)
    two_graphs = fused(pair, 256, tmp_path / "two.tif", stepwise)
    assert json.loads((tmp_path / "one.json").read_text())["engine"]["unrolled"] is True
    assert json.loads((tmp_path / "two.json").read_text())["engine"]["unrolled"] is False
    assert float(np.abs(one_graph - two_graphs).max()) <= 1.0  # DN, integer output: rounding of float noise


@pytest.fixture(scope="module")
def ratio2_whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    from ddrf.bundled import choose_model

    model = choose_model("sample scene", 2, BANDS, len(BANDS)).path
    folder = tmp_path_factory.mktemp("invariance2")
    return folder, model, fused(SAMPLE, WHOLE, folder / "whole.tif", model, halo=None)


@pytest.mark.parametrize("tile", [256, 384])
def test_bundled_ratio2_output_does_not_depend_on_the_tile(tile: int,
                                                            ratio2_whole: tuple[Path, Path, np.ndarray]) -> None:
    from ddrf.card import read_card

    folder, model, reference = ratio2_whole
    card = read_card(model / "card.json")
    assert card.scene_statistics and card.halo == 96 and card.model.get("arch", "v1") == "v1"
    figures = tile_differences({tile: fused(SAMPLE, tile, folder / f"t{tile}.tif", model, halo=None)}, reference)[tile]
    assert figures["p99"] <= 0.005 and figures["max"] <= 0.02, (tile, figures)
    # the shipped graphs skip the border the blend gives no weight, and the report says so
    report = json.loads((folder / f"t{tile}.json").read_text())
    assert report["engine"]["output_margin"] == report["tiling"]["unweighted_border"] == card.output_margin == 72


def test_context_windows_depend_on_the_scene_alone() -> None:
    assert context_windows(398, 200, 8) == context_windows(398, 200, 8)
    small = context_windows(250, 180, 8)
    assert [(b.row, b.col, b.height, b.width) for b in small] == [(0, 0, 256, 184)]
    for height, width in ((2048, 2048), (512, 16384), (100, 9000), (8192, 300)):
        boxes = context_windows(height, width, 8)
        assert 1 <= len(boxes) <= CONTEXT_WINDOWS
        assert len({(b.height, b.width) for b in boxes}) == 1  # one batch
        assert all(b.row % 8 == 0 and b.col % 8 == 0 and b.row >= 0 and b.col >= 0 for b in boxes)
        assert all(b.row + b.height <= -(-height // 8) * 8 and b.col + b.width <= -(-width // 8) * 8 for b in boxes)


def test_a_wide_halo_widens_the_default_window() -> None:
    assert default_tiling("ort-cpu") == (256, 1)
    assert default_tiling("ort-cpu", halo=80) == (576, 1)  # seven halos, rounded up to 64
    assert default_tiling("ort-cpu", method="GSA", halo=80) == (1024, 1)


def test_ddrf_run_refuses_steps_without_graphs_in_one_line(tmp_path: Path) -> None:
    """The bundled ratio-2 model ships its 1-step graphs only: --steps 4 names the export that would serve it."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app
    from scenes_fixtures import SAMPLE

    result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--steps", "4", "--no-progress"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "sampler_k4.onnx: missing" in lines[0] and "--scene-statistics --unrolled 4" in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_halo_below_the_models_is_said_and_reported(tmp_path: Path) -> None:
    """--halo 0 below a model's halo gave a tile-dependent output without a word (nor a flag in the report); a baseline,
    which needs no halo of a model's, says nothing."""
    from typer.testing import CliRunner

    from ddrf.card import read_card
    from ddrf.scenes.command import app
    from scenes_fixtures import TINY_MODEL
    from stac_fixtures import small_scene

    scene = small_scene(tmp_path / "scene")
    result = CliRunner().invoke(app, [str(scene), "-o", str(tmp_path / "out"), "--model", str(TINY_MODEL),
                                      "--halo", "0", "--tile", "64", "--threads", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    halo = read_card(TINY_MODEL / "card.json").halo
    assert f"--halo 0 is below the model's {halo}: the output will depend on the tile size" in result.output
    tiling = json.loads((tmp_path / "out" / "scene.json").read_text())["tiling"]
    assert (tiling["halo"], tiling["model_halo"]) == (0, halo)
    baseline = CliRunner().invoke(app, [str(scene), "-o", str(tmp_path / "gsa"), "--method", "GSA", "--halo", "0",
                                        "--no-progress"])
    assert baseline.exit_code == 0 and "below the model" not in baseline.output, baseline.output


def test_ddrf_fuse_on_arrays_writes_what_ddrf_run_writes(tmp_path: Path) -> None:
    """ddrf.fuse goes through ddrf-run's windows and scene statistics: on DataArrays with the scene's transform
    (the noise keyed to the same CRS pixels), the same pixels, to ddrf-run's rounding. numpy arrays key the noise
    to their own rows and columns, so they differ from ddrf-run's pixels by a draw of the noise."""
    rioxarray = pytest.importorskip("rioxarray")
    import rasterio
    import xarray as xr

    import ddrf
    from ddrf.scenes import engines, jobs, streaming
    from scenes_fixtures import SAMPLE

    def read(band: str) -> xr.DataArray:
        return rioxarray.open_rasterio(SAMPLE / f"{SAMPLE.name}_{band}.TIF")

    pan, ms = read("B8"), xr.concat([read(f"B{n}") for n in (2, 3, 4, 5)], dim="band")
    out = tmp_path / "scene.tif"
    settings = streaming.RunSettings(tile=None, batch=1, progress=False)
    assert jobs.run_job(jobs.SceneJob("scene", out, directory=SAMPLE), engines.EngineSpec(threads=1),
                        settings)["status"] == "done"
    with rasterio.open(out) as ds:
        written = np.moveaxis(ds.read(), 0, -1).astype(np.float64)
    fused = np.moveaxis(ddrf.fuse(pan, ms).values, 0, -1)
    assert float(np.abs(np.round(fused) - written).max()) <= 1.0
    plain = ddrf.fuse(pan.values[0], np.moveaxis(ms.values, 0, -1))
    assert float(np.abs(np.round(plain) - written).max()) > 10  # another draw of the noise
