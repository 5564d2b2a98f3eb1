"""Scene geometry at its edges through ddrf-run: grids that agree but for floating-point noise. Crops of the bundled
sample scene, fused with a classical method (the reader is the same for every method and model).
docs/RELIABILITY.md row 297."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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
