"""Scene geometry at its edges through ddrf-run: grids that agree but for floating-point noise. The bundled
sample scene's files, fused with a classical method (the reader is the same for every method and model).
docs/RELIABILITY.md rows 297-298."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from ddrf.scenes.command import app
from scenes_fixtures import SAMPLE

BANDS = ("B2", "B3", "B4", "B5")  # blue, green, red, NIR


def band_file(folder: Path, band: str, shift: float = 0.0) -> Path:
    """The sample's band file, its origin moved `shift` CRS units east."""
    with rasterio.open(SAMPLE / f"{SAMPLE.name}_{band}.TIF") as src:
        data, profile = src.read(), src.profile
    profile["transform"] = Affine.translation(shift, 0) * profile["transform"]
    path = folder / f"x_{band}.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def fuse(folder: Path, out: Path, shifts: dict[str, float]) -> tuple[int, str]:
    folder.mkdir()
    ms = [a for b in BANDS for a in ("--ms", str(band_file(folder, b, shifts.get(b, 0.0))))]
    result = CliRunner().invoke(app, ["--pan", str(SAMPLE / f"{SAMPLE.name}_B8.TIF"), *ms, "-o", str(out),
                                      "--method", "GSA", "--bands", ",".join(("blue", "green", "red", "nir")),
                                      "--no-progress"])
    return result.exit_code, result.output


def test_ms_band_files_whose_grids_differ_by_float_noise_are_one_grid(tmp_path: Path) -> None:
    """One band file's origin 1e-7 m (3e-9 of a pixel) off the others', as a tool computing it from the bounds leaves
    it: the same product as exact grids (before: `MS grid differs from x_B2.tif (geotransform or size)`). A tenth of
    a pixel is still refused."""
    exact = fuse(tmp_path / "exact", tmp_path / "exact.tif", {})
    noisy = fuse(tmp_path / "noisy", tmp_path / "noisy.tif", {"B4": 1e-7})
    assert exact[0] == 0 and noisy[0] == 0, noisy[1]
    with rasterio.open(tmp_path / "exact.tif") as a, rasterio.open(tmp_path / "noisy.tif") as b:
        assert np.array_equal(a.read(), b.read())
    off = fuse(tmp_path / "off", tmp_path / "off.tif", {"B4": 3.0})
    assert off[0] == 1 and "x_B4.tif: MS grid differs from x_B2.tif" in off[1], off[1]


def test_rotation_terms_of_float_noise_are_no_rotation(tmp_path: Path) -> None:
    """A PAN whose geotransform carries 1e-12 in its rotation terms (a tool writing sin(0) as it computed it) moves no
    pixel by a billionth of one: fused as the unrotated PAN (before: `geotransform (...) is rotated or not
    north-up`). A rotation that moves a pixel is still refused (tests/test_bad_inputs.py, `rotated_by_a_hair`)."""
    ms = [a for b in BANDS for a in ("--ms", str(SAMPLE / f"{SAMPLE.name}_{b}.TIF"))]
    pan = SAMPLE / f"{SAMPLE.name}_B8.TIF"
    with rasterio.open(pan) as src:
        data, profile = src.read(), src.profile
    t = profile["transform"]
    profile["transform"] = Affine(t.a, 1e-12, t.c, -1e-12, t.e, t.f)
    noisy = tmp_path / "pan.tif"
    with rasterio.open(noisy, "w", **profile) as dst:
        dst.write(data)
    outputs = []
    for name, path in (("plain", pan), ("noisy", noisy)):
        result = CliRunner().invoke(app, ["--pan", str(path), *ms, "-o", str(tmp_path / f"{name}.tif"), "--method",
                                          "GSA", "--bands", "blue,green,red,nir", "--no-progress"])
        assert result.exit_code == 0, result.output
        with rasterio.open(tmp_path / f"{name}.tif") as dst:
            outputs.append(dst.read())
    assert np.array_equal(*outputs)


def test_an_ms_in_another_spelling_of_the_pans_crs_is_one_crs(tmp_path: Path) -> None:
    """Row 405: the sample's MS written with its UTM zone as a PROJ string on the WGS 84 ellipsoid with +towgs84=0
    (older tools write it so), the PAN as EPSG:32616. rasterio holds the two apart, so ddrf-run said `CRS EPSG:32616
    differs from PAN ... CRS EPSG:32616`; now they are one CRS and the product is the plain one's. Another datum
    under the same projection (NAD83, EPSG:26916, which PROJ maps onto WGS 84 unmoved) is still refused."""
    from ddrf.scenes.errors import SceneError
    from ddrf.scenes.scene import Scene

    code, output = fuse(tmp_path / "plain", tmp_path / "plain.tif", {})
    assert code == 0, output
    spelled = "+proj=utm +zone=16 +ellps=WGS84 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs"
    (tmp_path / "spelled").mkdir()
    ms = []
    for band in BANDS:
        with rasterio.open(band_file(tmp_path / "spelled", band), "r+") as dst:
            dst.crs = rasterio.crs.CRS.from_proj4(spelled)
            ms.append(dst.name)
    with rasterio.open(ms[0]) as src:
        assert src.crs != rasterio.crs.CRS.from_epsg(32616)  # the check can fail: rasterio's own equality says no
    result = CliRunner().invoke(app, ["--pan", str(SAMPLE / f"{SAMPLE.name}_B8.TIF"), *(a for m in ms for a in
                                      ("--ms", m)), "-o", str(tmp_path / "spelled.tif"), "--method", "GSA",
                                      "--bands", "blue,green,red,nir", "--no-progress"])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "plain.tif") as a, rasterio.open(tmp_path / "spelled.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    for m in ms:
        with rasterio.open(m, "r+") as dst:
            dst.crs = rasterio.crs.CRS.from_epsg(26916)
    with pytest.raises(SceneError, match="CRS EPSG:26916 differs from PAN .* CRS EPSG:32616"):
        Scene.from_paths(SAMPLE / f"{SAMPLE.name}_B8.TIF", ms)
