"""A hyperspectral cube (102 bands, float reflectance) through ddrf-run: a classical method, a model trained on a
GeoTIFF cube, the bundled band-wise model, and the one-line refusal when no bundled model has its ratio."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ddrf.scenes.command import app as run_app

BANDS = 102


@pytest.fixture(scope="module")
def cube_pair(landsat8_paths: tuple[Path, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """PAN (float reflectance-like) and a 102-band cube interpolated across the real crop's 4 bands, same grids."""
    pan_path, ms_paths = landsat8_paths
    folder = tmp_path_factory.mktemp("cube")
    ms = np.stack([rasterio.open(p).read(1).astype(np.float64) for p in ms_paths], -1) / 4095.0
    grid = np.linspace(0, 3, BANDS)
    h, w, _ = ms.shape
    cube = np.stack([np.interp(grid, np.arange(4), px) for px in ms.reshape(-1, 4)]).reshape(h, w, BANDS)
    with rasterio.open(ms_paths[0]) as src:
        profile = {**src.profile, "count": BANDS, "dtype": "float32", "compress": "deflate"}
        with rasterio.open(folder / "cube_ms.tif", "w", **profile) as dst:
            dst.write(cube.transpose(2, 0, 1).astype(np.float32))
    with rasterio.open(pan_path) as src:
        profile = {**src.profile, "dtype": "float32"}
        with rasterio.open(folder / "cube_pan.tif", "w", **profile) as dst:
            dst.write((src.read(1) / 4095.0).astype(np.float32)[None])
    return folder / "cube_pan.tif", folder / "cube_ms.tif"


def _run(pan: Path, ms: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(run_app, ["--pan", str(pan), "--ms", str(ms), "-o", str(out), *extra])
    return result.exit_code, result.output


def _check_output(path: Path, ms: Path) -> np.ndarray:
    with rasterio.open(path) as fused, rasterio.open(ms) as low:
        image = fused.read()
        assert fused.count == BANDS and fused.crs == low.crs and fused.res[0] == pytest.approx(low.res[0] / 2)
    assert np.isfinite(image).all()
    return image


def test_a_hyperspectral_cube_fuses_with_a_classical_method(cube_pair: tuple[Path, Path], tmp_path: Path) -> None:
    pan, ms = cube_pair
    code, output = _run(pan, ms, tmp_path / "gsa.tif", "--method", "MTF-GLP-HPM")
    assert code == 0, output
    image = _check_output(tmp_path / "gsa.tif", ms)
    with rasterio.open(ms) as low:
        band_means = low.read().reshape(BANDS, -1).mean(1)
    # the fusion keeps each band's level: the cube's spectral shape survives band by band
    assert np.allclose(image.reshape(BANDS, -1).mean(1), band_means, rtol=0.05)


def test_the_bundled_band_wise_model_fuses_the_102_band_cube(cube_pair: tuple[Path, Path], tmp_path: Path) -> None:
    """No bundled model was trained on 102 bands, but the band-wise one takes any band set: it fuses the cube band by
    band, keeping each band's level, and the log names it."""
    pan, ms = cube_pair
    code, output = _run(pan, ms, tmp_path / "x.tif")
    assert code == 0, output
    assert "landsat_ratio2_band_wise" in output
    image = _check_output(tmp_path / "x.tif", ms)
    with rasterio.open(ms) as low:
        band_means = low.read().reshape(BANDS, -1).mean(1)
    assert np.allclose(image.reshape(BANDS, -1).mean(1), band_means, rtol=0.05)


def test_a_ratio_no_bundled_model_has_is_refused_in_one_line(cube_pair: tuple[Path, Path], tmp_path: Path) -> None:
    """The same cube with its MS pixels said to be 3 times the PAN's: no bundled model has ratio 3."""
    pan, ms = cube_pair
    three = tmp_path / "cube_ms_ratio3.tif"
    with rasterio.open(ms) as src:
        data, profile = src.read(), src.profile
    rows, cols = data.shape[1] * 2 // 3, data.shape[2] * 2 // 3  # the PAN grid over 3x larger MS pixels
    transform = profile["transform"] @ profile["transform"].scale(1.5, 1.5)
    with rasterio.open(three, "w", **{**profile, "height": rows, "width": cols, "transform": transform}) as dst:
        dst.write(data[:, :rows, :cols])
    code, output = _run(pan, three, tmp_path / "x.tif")
    assert code == 1 and "no bundled model fits" in output and "--method" in output, output
    assert not (tmp_path / "x.tif").exists()


def test_a_model_trained_on_a_cube_fuses_it_through_ddrf_run(cube_pair: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("torch")  # the train extra
    from ddrf.export.onnx_export import export_model
    from ddrf.train.checkpoint import load_checkpoint
    from ddrf.train.config import load_config
    from ddrf.train.loop import train

    pan, ms = cube_pair
    cfg = load_config(Path(__file__).parents[1] / "configs/hyperion_holdout.yaml", [
        f"data.source=geotiff:{pan},{ms}", "data.patch=16", "diffusion.scale_patches=16", "optim.steps=2",
        "optim.batch=2", "optim.warmup=1", "model.overrides={base_width: 8, channel_mults: [1, 2], time_dim: 32}",
        "log.progress=false"])
    train(cfg, tmp_path / "run")
    model, card = load_checkpoint(tmp_path / "run")
    assert len(card.bands) == BANDS and card.ratio == 2
    export_model(model, card, tmp_path / "model", fp16=False)
    code, output = _run(pan, ms, tmp_path / "ddrf.tif", "--model", str(tmp_path / "model"), "--tile", "128")
    assert code == 0, output
    image = _check_output(tmp_path / "ddrf.tif", ms)
    assert image.std() > 0


def test_ddrf_eval_warns_that_q2n_needs_digital_numbers(cube_pair: tuple[Path, Path]) -> None:
    from ddrf.evaluate.command import app as eval_app

    result = CliRunner().invoke(eval_app, [f"pairs:{cube_pair[0].parent}", "--methods", "EXP", "--mode", "reduced"])
    assert result.exit_code == 0, result.output
    assert "Q2n rounds its inputs to uint16" in result.output and "cube_ms.tif" in result.output
