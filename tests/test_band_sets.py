"""Band sets, orders and ratios: a file's bands in another order, or some of a sensor's bands, fuse as the same bands
in the sensor's order do (each band keeps its own MTF gain); cheap synthetic rasters and classical methods."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from typer.testing import CliRunner

import ddrf
from ddrf.scenes.command import app
from ddrf.sensors import WV8
from test_bad_inputs import MS_T, write_tif


def smooth_pair(bands: int, size: int = 32, ratio: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PAN (size * ratio square) and MS (size, size, bands) in DN, each band its own level and texture."""
    rng = np.random.default_rng(seed)
    pan = rng.uniform(2000, 6000, (size * ratio, size * ratio))
    ms = rng.uniform(1000, 4000, (size, size, bands)) + 500 * np.arange(bands)
    return pan, ms


def dataarray_fuse(pan: np.ndarray, ms: np.ndarray, names: list[str], sensor: str) -> np.ndarray:
    import xarray as xr

    fused = ddrf.fuse(xr.DataArray(pan, dims=("y", "x")),
                      xr.DataArray(np.moveaxis(ms, -1, 0), dims=("band", "y", "x"), coords={"band": names}),
                      method="MTF-GLP-FS", sensor=sensor)
    assert list(fused.band.values) == names
    return fused.values


def test_named_bands_keep_their_own_mtf_gain_in_any_order_or_subset() -> None:
    """WorldView-3's eight bands reversed, or only its red, green and blue, fuse as those bands of the eight in the
    sensor's order (before: the gains were taken by position, so a reversed file gave nir2's gain to coastal, and
    three bands were refused: 'sensor WV3 has 8 MS MTF gains, image has 3 bands')."""
    pan, ms = smooth_pair(8)
    whole = dataarray_fuse(pan, ms, list(WV8), "WV3")
    reverse = dataarray_fuse(pan, ms[..., ::-1], list(WV8[::-1]), "WV3")
    np.testing.assert_allclose(reverse[::-1], whole, rtol=0, atol=1e-3)
    rgb = [WV8.index(b) for b in ("red", "green", "blue")]
    np.testing.assert_allclose(dataarray_fuse(pan, ms[..., rgb], ["red", "green", "blue"], "WV3"), whole[rgb],
                               rtol=0, atol=1e-3)


def described_ms(path: Path, ms: np.ndarray, names: list[str]) -> Path:
    write_tif(path, np.moveaxis(ms, -1, 0), MS_T)
    with rasterio.open(path, "r+") as dst:
        for band, name in enumerate(names, 1):
            dst.set_band_description(band, name)
    return path


def test_ddrf_run_gives_each_described_band_its_own_gain(tmp_path: Path) -> None:
    """ddrf-run --sensor QB on an MS whose descriptions say nir, red, green, blue fuses each band as the same MS in
    QuickBird's order does (before: blue's gain went to NIR, NIR's to blue, silently)."""
    from test_bad_inputs import PAN_T

    pan, ms = smooth_pair(4, size=16, ratio=2)
    write_tif(tmp_path / "pan.tif", pan, PAN_T)
    bgrn, nrgb = ["blue", "green", "red", "nir"], ["nir", "red", "green", "blue"]
    outputs = {}
    for order in (bgrn, nrgb):
        name = "_".join(order)
        described_ms(tmp_path / f"{name}.tif", ms[..., [bgrn.index(b) for b in order]], order)
        result = CliRunner().invoke(app, ["--pan", str(tmp_path / "pan.tif"), "--ms", str(tmp_path / f"{name}.tif"),
                                          "-o", str(tmp_path / "out" / f"{name}.tif"), "--sensor", "QB",
                                          "--method", "MTF-GLP-FS", "--no-progress"])
        assert result.exit_code == 0, result.output
        with rasterio.open(tmp_path / "out" / f"{name}.tif") as src:
            assert list(src.descriptions) == order
            outputs[name] = dict(zip(order, src.read()))
    first, second = outputs.values()
    for band in bgrn:
        np.testing.assert_array_equal(first[band], second[band])


def test_a_hyperspectral_cube_no_model_fits_is_refused_in_a_readable_line(tmp_path: Path) -> None:
    """200 unnamed bands at ratio 3: the refusal and the assumed-order line name the first and last bands and the
    count (before: all 200 names, some 2,000 characters on one line)."""
    from test_bad_inputs import PAN_T

    pan, ms = smooth_pair(200, size=8, ratio=3)
    write_tif(tmp_path / "pan.tif", pan, PAN_T)
    write_tif(tmp_path / "ms.tif", np.moveaxis(ms, -1, 0), MS_T * MS_T.scale(1.5))
    result = CliRunner().invoke(app, ["--pan", str(tmp_path / "pan.tif"), "--ms", str(tmp_path / "ms.tif"),
                                      "-o", str(tmp_path / "out.tif"), "--no-progress"])
    assert result.exit_code == 1
    refusal = next(line for line in result.output.splitlines() if "no bundled model fits" in line)
    assert "bands band1, band2, band3, ..., band199, band200 (200 bands);" in refusal and len(refusal) < 800
    assert not (tmp_path / "out.tif").exists()
