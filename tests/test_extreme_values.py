"""Extreme pixel values: stray values far outside a scene's range, and data in tiny units, through ddrf-run.

Made from the bundled sample scene.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import rasterio
from typer.testing import CliRunner

from ddrf.radiometry import Radiometry
from ddrf.saturation import OUTLIER_UNITS, fill_outliers
from ddrf.scenes.command import app
from scenes_fixtures import SAMPLE


def twelve_bit_copy(target: Path, strays: bool) -> None:
    """The sample scene as a 12-bit product kept in uint16 (DN / 16, no NBITS tag); with `strays`, a 2 x 2 MS block
    at 60000 in every band and one PAN pixel at 65000: values a 12-bit product cannot hold, as a bad decode or
    an untagged fill leaves them."""
    shutil.copytree(SAMPLE, target)
    for path in target.glob("*_B[2-58].TIF"):
        with rasterio.open(path, "r+") as ds:
            data = ds.read(1) // 16
            if strays and path.name.endswith("_B8.TIF"):
                data[50, 60] = 65000
            elif strays:
                data[10:12, 20:22] = 60000
            ds.write(data, 1)


def fuse(scene: Path, out: Path, *options: str) -> np.ndarray:
    result = CliRunner().invoke(app, [str(scene), "-o", str(out), "--no-progress", "--threads", "1", *options])
    assert result.exit_code == 0, result.output
    with rasterio.open(out / f"{scene.name}.tif") as ds:
        return ds.read().astype(np.float64)


def test_a_few_stray_values_leave_the_rest_of_the_scene_alone(tmp_path: Path) -> None:
    """Four MS pixels and one PAN pixel past a 12-bit product's range (about 85 model units where the scene is
    0-1) reached every pixel of the default model through its scene statistics: p99 590-2200 times a band's std
    off the clean product, much of it clipped at 0 or 65535. The network now sees values past
    OUTLIER_UNITS as mid-range values (ddrf.saturation.fill_outliers), and the part it did not see is added back
    upsampled, as the MS says it."""
    clean, stray = tmp_path / "clean", tmp_path / "stray"
    twelve_bit_copy(clean, strays=False)
    twelve_bit_copy(stray, strays=True)
    got, want = fuse(stray, tmp_path / "b"), fuse(clean, tmp_path / "a")
    far = np.ones(want.shape[1:], bool)
    far[:40, :60] = far[40:60, 50:70] = False  # around the MS block (PAN rows 20-23, columns 40-43) and the PAN pixel
    std = want[:, far].std(axis=1)
    share = np.percentile(np.abs(got - want)[:, far], 99, axis=1) / std
    assert (share < 0.05).all(), share
    assert (got[:, 21:24, 41:44] > 20000).all()  # the MS's stray values stay in the output, as the upsampled MS


def test_only_values_past_the_outlier_bounds_are_filled() -> None:
    radiometry = Radiometry(np.zeros(2), np.ones(2), np.zeros(1), np.ones(1))
    pan = np.linspace(-OUTLIER_UNITS, 1 + OUTLIER_UNITS, 16).reshape(4, 4)
    ms = np.full((2, 2, 2), 5.0)
    assert all(a is b for a, b in zip(fill_outliers(pan, ms, radiometry), (pan, ms)))
    ms[0, 0, 1], pan[0, 0] = 1e30, -3.4e38
    seen_pan, seen_ms = fill_outliers(pan, ms, radiometry)
    assert seen_ms[0, 0, 1] == 0.5 and seen_pan[0, 0] == 0.5  # the saturation fill: mid-range
    assert (np.delete(seen_ms.ravel(), 1) == 5).all() and (seen_pan.ravel()[1:] == pan.ravel()[1:]).all()


def sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    """A 128 x 128 PAN crop of the sample scene and its 64 x 64 four-band MS, as float reflectance (DN / 30000)."""
    with rasterio.open(next(SAMPLE.glob("*_B8.TIF"))) as ds:
        pan = ds.read(1)[:128, :128] / 30000.0
    ms = [rasterio.open(next(SAMPLE.glob(f"*_B{n}.TIF"))).read(1)[:64, :64] / 30000.0 for n in (2, 3, 4, 5)]
    return pan, np.stack(ms, axis=-1)


def test_classical_methods_do_not_depend_on_the_data_units() -> None:
    """Every method is homogeneous in the data's units; its guards (MATLAB's eps, 1e-12) are not. Reflectance
    scaled by 1e-39 (float32 denormals) or 1e-20 gave all zeros with MTF-GLP-HPM and Brovey (their denominators
    fell under the guards), while ddrf-run wrote it as a product."""
    from ddrf.baselines import ALL_METHODS, fuse

    pan, ms = sample_arrays()
    for method in ALL_METHODS:
        want = fuse(method, pan, ms, 2, "Landsat8")
        for scale in (1e-39, 1e-20, 1e20):
            got = fuse(method, pan * scale, ms * scale, 2, "Landsat8") / scale
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9 * np.abs(want).max(),
                                       err_msg=f"{method} {scale}")


def reflectance_pair(folder: Path, spikes: float | None, below_zero: float = 0.0,
                     ms_fill: float | None = None) -> tuple[Path, Path]:
    """The sample scene as float32 reflectance (DN / 30000) in pan.tif and ms.tif, no nodata tag; with `spikes`, a
    3 x 3 PAN block at that value (an untagged fill); with `below_zero`, each band shifted to have that % of its
    pixels at or below 0 (atmospheric over-correction); with `ms_fill`, MS rows 40-59, columns 100-129 at it."""
    folder.mkdir()
    paths = []
    for name, numbers in (("pan", (8,)), ("ms", (2, 3, 4, 5))):
        files = [next(SAMPLE.glob(f"*_B{n}.TIF")) for n in numbers]
        with rasterio.open(files[0]) as ds:
            profile = {**ds.profile, "dtype": "float32", "count": len(files), "nodata": None}
        data = np.stack([rasterio.open(f).read(1) / 30000.0 for f in files])
        data -= np.percentile(data, below_zero, axis=(1, 2), keepdims=True) if below_zero else 0.0
        if spikes is not None and name == "pan":
            data[0, 100:103, 200:203] = spikes
        if ms_fill is not None and name == "ms":
            data[:, 40:60, 100:130] = ms_fill
        with rasterio.open(folder / f"{name}.tif", "w", **profile) as ds:
            ds.write(data.astype(np.float32))
        paths.append(folder / f"{name}.tif")
    return paths[0], paths[1]


def fuse_pair(pan: Path, ms: Path, out: Path, *options: str) -> np.ndarray:
    result = CliRunner().invoke(app, ["--pan", str(pan), "--ms", str(ms), "--bands", "blue,green,red,nir", "-o",
                                      str(out), "--no-progress", "--threads", "1", *options])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        return ds.read().astype(np.float64)


def far_share(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Per band, p99 of |got - want| 10 pixels and more from the spiked PAN block, as a share of its std."""
    far = np.ones(want.shape[1:], bool)
    far[90:113, 190:213] = False
    return np.percentile(np.abs(got - want)[:, far], 99, axis=1) / want.reshape(len(want), -1).std(axis=1)


def test_a_few_untagged_fill_values_keep_the_pan_scale(tmp_path: Path) -> None:
    """The scale of a nearly constant band is floored at a millionth of its magnitude; that magnitude was the
    band's largest value, so nine PAN pixels at 1e30 (or -3.4e38) made the PAN's scale 1e24 and every other PAN
    pixel 0 model units: the default model fused no PAN detail anywhere (a band's std off the clean product).
    The floor now takes the magnitude of the band's percentiles."""
    want = fuse_pair(*reflectance_pair(tmp_path / "clean", None), tmp_path / "clean.tif")
    for value in (1e30, -3.4e38):
        got = fuse_pair(*reflectance_pair(tmp_path / f"spiked{value:g}", value), tmp_path / f"{value:g}.tif")
        assert np.isfinite(got).all()
        assert (far_share(got, want) < 0.05).all(), (value, far_share(got, want))


def test_a_few_untagged_fill_values_leave_a_classical_product_alone(tmp_path: Path) -> None:
    """Nine PAN pixels at 1e30 (or -3.4e38) put the PAN's window mean at 7e25, and float64 kept no PAN detail
    beside it: MTF-GLP-HPM and Brovey moved every pixel by 10-12 of a band's std (p50), GSA 2 % of the pixels by
    more than one. A classical method now gets the model's outlier fill (ddrf.saturation.fill_outliers), past its
    own bound (CLASSICAL_OUTLIER_UNITS): away from the block the product is the clean scene's."""
    clean = reflectance_pair(tmp_path / "clean", None)
    for method in ("MTF-GLP-HPM", "Brovey", "GSA"):
        want = fuse_pair(*clean, tmp_path / f"{method}.tif", "--method", method)
        for value in (1e30, -3.4e38):
            spiked = reflectance_pair(tmp_path / f"{method}{value:g}", value)
            got = fuse_pair(*spiked, tmp_path / f"{method}{value:g}.tif", "--method", method)
            assert np.isfinite(got).all()
            assert (far_share(got, want) < 1e-3).all(), (method, value, far_share(got, want))


def test_a_dividing_method_on_non_positive_values_is_said(tmp_path: Path) -> None:
    """Reflectance over-corrected (5 % of each band at or below 0): Brovey, BT-H and MTF-GLP-HPM divide
    by (low-passed) values that cross 0, so their output near them is unbounded (-60 to 90 where the data are
    -0.2 to 0.55): fused as the toolbox does, and said in one line naming the file and a method that copes. A
    method that does not divide, or positive data, says nothing."""
    shifted = reflectance_pair(tmp_path / "shifted", None, below_zero=5.0)
    result = CliRunner().invoke(app, ["--pan", str(shifted[0]), "--ms", str(shifted[1]), "--bands",
                                      "blue,green,red,nir", "-o", str(tmp_path / "hpm.tif"), "--no-progress",
                                      "--method", "MTF-GLP-HPM"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "divides" in line]
    assert len(said) == 1 and "ms.tif" in said[0] and "MTF-GLP-HPM-robust" in said[0], result.output
    warnings = json.loads((tmp_path / "hpm.json").read_text())["inputs"]["warnings"]
    assert any("divides" in line for line in warnings), warnings
    for pair, method in ((shifted, "GSA"), (reflectance_pair(tmp_path / "clean", None), "Brovey")):
        result = CliRunner().invoke(app, ["--pan", str(pair[0]), "--ms", str(pair[1]), "--bands", "blue,green,red,nir",
                                          "-o", str(tmp_path / f"{method}.tif"), "--no-progress", "--method", method])
        assert result.exit_code == 0 and "divides" not in result.output, result.output


def test_the_float32_fill_value_is_no_data_even_untagged(tmp_path: Path) -> None:
    """An MS block at float32's extreme (-3.4028235e38, GDAL's customary float fill) with no nodata tag, 2 % of the
    scene: its 1st percentile made every band's scale 1e38, the output held -inf and 1e38 and the spread map of
    --uncertainty 2 was not finite anywhere, with numpy's overflow warnings on stderr. +-float32 max is now no
    data, as NaN and inf are (ddrf.geometry.is_nodata): the block is nodata in the output and its spread, and the
    rest is finite and near the clean product."""
    fill = float(np.finfo(np.float32).min)
    want = fuse_pair(*reflectance_pair(tmp_path / "clean", None), tmp_path / "clean.tif")
    filled = reflectance_pair(tmp_path / "filled", None, ms_fill=fill)
    result = CliRunner().invoke(app, ["--pan", str(filled[0]), "--ms", str(filled[1]), "--bands", "blue,green,red,nir",
                                      "-o", str(tmp_path / "out.tif"), "--no-progress", "--uncertainty", "2"])
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    with rasterio.open(tmp_path / "out.tif") as ds, rasterio.open(tmp_path / "out_spread.tif") as spread_ds:
        got, spread = ds.read().astype(np.float64), spread_ds.read()
    block = np.zeros(got.shape[1:], bool)
    block[80:120, 200:260] = True
    assert np.isnan(got[:, block]).all() and np.isnan(spread[:, block]).all()
    far = np.ones(block.shape, bool)
    far[60:140, 180:280] = False
    assert np.isfinite(got[:, far]).all() and np.isfinite(spread[:, far]).all()
    share = np.percentile(np.abs(got - want)[:, far], 99, axis=1) / want.reshape(len(want), -1).std(axis=1)
    assert (share < 0.25).all(), share


def sea_with_an_island(target: Path) -> None:
    """The sample scene squeezed into a dark sea (DN 1000 + DN / 50, a range of about 300 DN) with a 32 x 32 PAN
    (16 x 16 MS) island at its own contrast 40x brighter: the island lies tens of units past the sea's 99th
    percentile, as a bright island or cloud over open water does."""
    shutil.copytree(SAMPLE, target)
    for path in target.glob("*_B[2-58].TIF"):
        with rasterio.open(path, "r+") as ds:
            data = ds.read(1).astype(np.float64)
            sea = 1000 + data / 50
            block = slice(40, 72) if path.name.endswith("_B8.TIF") else slice(20, 36)
            sea[block, block] = 1000 + data[block, block] * 2
            ds.write(np.round(sea).astype(np.uint16), 1)


def test_an_island_in_a_dark_sea_keeps_its_detail_with_a_classical_method_and_is_said_with_a_model(
        tmp_path: Path) -> None:
    """A classical method fused the island as the upsampled MS (no PAN detail) once the model's stray-value bound
    (10 units past the scene's range) served it too: it keeps its own bound (CLASSICAL_OUTLIER_UNITS), so GSA fuses
    the island as it fuses the same values alone. With a model the island is kept from the network, and one line
    says so instead of silence."""
    from scipy.ndimage import uniform_filter

    scene = tmp_path / "sea"
    sea_with_an_island(scene)
    got = fuse(scene, tmp_path / "gsa", "--method", "GSA")
    with rasterio.open(next(scene.glob("*_B8.TIF"))) as ds:
        pan = ds.read(1).astype(np.float64)

    def detail(image: np.ndarray) -> np.ndarray:  # the island's inside, high-passed
        return (image - uniform_filter(image, 5))[48:64, 48:64].ravel()

    # the PAN's detail in each band: 0.82-0.87 (NIR 0.60); as the upsampled MS 0.63-0.67 (NIR 0.04)
    match = [np.corrcoef(detail(band), detail(pan))[0, 1] for band in got]
    assert np.mean(match) > 0.7, match
    result = CliRunner().invoke(app, [str(scene), "-o", str(tmp_path / "model"), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "far outside the scene's range" in line]
    assert len(said) == 1 and said[0].startswith("ddrf-run: sea: ") and "_B8.TIF" in said[0], result.output
