"""Rasters whose values are codes, not brightness (a colour table's indices, one bit): `ddrf-run` refuses them as PAN
or MS in one line naming the file, and fuses what only looks like one (a grey-ramp colour table) as its values.
docs/RELIABILITY.md rows 290-291; the PAN cases are also in tests/test_bad_inputs.py's table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from ddrf.scenes.command import app

PAN_T, MS_T = from_origin(500000, 4000000, 15, 15), from_origin(500000, 4000000, 30, 30)


def write(path: Path, data: np.ndarray, transform, dtype: str = "uint8", **options) -> Path:
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=dtype, crs="EPSG:32616", transform=transform, **options) as dst:
        dst.write(data.astype(dtype))
    return path


def scene(folder: Path, ms_bands: int = 4) -> tuple[Path, Path]:
    """A 64 x 64 uint8 PAN and a 32 x 32 uint8 MS of smooth random DN."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    return (write(folder / "pan.tif", rng.uniform(40, 200, (64, 64)), PAN_T),
            write(folder / "ms.tif", rng.uniform(40, 200, (ms_bands, 32, 32)), MS_T))


def fuse(pan: Path, ms: Path, out: Path):
    return CliRunner().invoke(app, ["--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "GSA",
                                    "--no-progress"])


def test_a_palette_ms_is_refused_naming_it(tmp_path: Path) -> None:
    pan, ms = scene(tmp_path / "in", ms_bands=1)
    with rasterio.open(ms, "r+") as dst:
        dst.write_colormap(1, {i: (i, 255 - i, 0, 255) for i in range(256)})
    result = fuse(pan, ms, tmp_path / "out" / "x.tif")
    assert result.exit_code == 1, result.output
    assert f"{ms}: a palette (colour-map) raster: its values index a colour table" in result.output
    assert not (tmp_path / "out" / "x.tif").exists()


def test_a_grey_ramp_palette_is_fused_as_its_values(tmp_path: Path) -> None:
    """GDAL keeps a grey image's colour table when converting from GIF or PNG: index i is grey i, brightness."""
    pan, ms = scene(tmp_path / "in")
    plain = fuse(pan, ms, tmp_path / "plain.tif")
    with rasterio.open(pan, "r+") as dst:
        dst.write_colormap(1, {i: (i, i, i, 255) for i in range(256)})
    ramp = fuse(pan, ms, tmp_path / "ramp.tif")
    assert plain.exit_code == 0 and ramp.exit_code == 0, ramp.output
    with rasterio.open(tmp_path / "plain.tif") as a, rasterio.open(tmp_path / "ramp.tif") as b:
        assert np.array_equal(a.read(), b.read())


def test_a_one_bit_ms_is_refused_naming_it(tmp_path: Path) -> None:
    """Before: fused into a 1-bit output (0..1), 10 % of it clipped, the rest said to be saturated clouds or snow."""
    pan, _ = scene(tmp_path / "in")
    bits = np.random.default_rng(2).integers(0, 2, (4, 32, 32))
    ms = write(tmp_path / "in" / "ms.tif", bits, MS_T, nbits=1)
    result = fuse(pan, ms, tmp_path / "out" / "x.tif")
    assert result.exit_code == 1, result.output
    assert f"{ms}: a 1-bit raster (NBITS=1)" in result.output
    assert not (tmp_path / "out" / "x.tif").exists()
