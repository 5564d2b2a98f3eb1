"""Maxar tiled deliveries: a product cut into `..._R<row>C<col>-...` tiles with a `.TIL` naming them is read as the
one image it is (ddrf/rasters.py), found by discovery, fused by ddrf-run exactly as the untiled image, and waited
for in watch mode. The refusals (a missing tile, a tile off its grid, tiles without a .TIL) are rows of
tests/test_bad_inputs.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from scenes_fixtures import MAXAR, maxar_tiled_product

from ddrf.rasters import TileListError, open_raster, til_tiles
from ddrf.scenes.command import app
from ddrf.scenes.discover import discover_scene, listed_absent
from ddrf.scenes.errors import SceneError
from ddrf.scenes.scene import Scene


def untiled(folder: str) -> Path:
    return next((MAXAR / f"012345678010_01_P001_{folder}").glob("*.TIF"))


def test_a_til_reads_as_the_untiled_image(tmp_path: Path) -> None:
    product = maxar_tiled_product(tmp_path / "product")
    for folder in ("PAN", "MUL"):
        til = next((product / f"012345678010_01_P001_{folder}").glob("*.TIL"))
        assert [(t.row, t.col) for t in til_tiles(til)] == [(0, 0), (0, 20), (12, 0), (12, 20)] if folder == "PAN" \
            else [(0, 0), (0, 10), (6, 0), (6, 10)]
        with open_raster(til) as mosaic, rasterio.open(untiled(folder)) as whole:
            assert (mosaic.count, mosaic.shape, mosaic.dtypes) == (whole.count, whole.shape, whole.dtypes)
            assert mosaic.crs == whole.crs and mosaic.transform == whole.transform
            np.testing.assert_array_equal(mosaic.read(), whole.read())
            window = rasterio.windows.Window(5, 3, 20, 20)  # across all four tiles, as a window read
            np.testing.assert_array_equal(mosaic.read(1, window=window), whole.read(1, window=window))


def test_discovery_finds_the_tile_lists_not_the_tiles(tmp_path: Path) -> None:
    found = discover_scene(maxar_tiled_product(tmp_path / "product"))
    assert found.scheme == "maxar" and found.pan.name == "20JUN15093522-P2AS-012345678010_01_P001.TIL"
    assert [(p.name, b) for p, b in found.ms] == [("20JUN15093522-M2AS-012345678010_01_P001.TIL", b)
                                                 for b in (1, 2, 3, 4)]
    assert found.band_names == discover_scene(MAXAR).band_names


def test_ddrf_run_fuses_a_tiled_delivery_as_the_untiled_image(tmp_path: Path) -> None:
    """The default model (the bundled one that fits) through ddrf-run's windows: the same output to the bit."""
    product = maxar_tiled_product(tmp_path / "maxar")  # named as the untiled fixture, so the outputs compare
    outputs = {}
    for name, scene in (("tiled", product), ("whole", MAXAR)):
        result = CliRunner().invoke(app, [str(scene), "-o", str(tmp_path / name), "--no-progress"])
        assert result.exit_code == 0, result.output
        with rasterio.open(tmp_path / name / "maxar.tif") as src:
            outputs[name] = (src.read(), src.profile)
    np.testing.assert_array_equal(outputs["tiled"][0], outputs["whole"][0])
    assert outputs["tiled"][1] == outputs["whole"][1]


def test_watch_waits_for_the_tiles_a_til_names(tmp_path: Path) -> None:
    """Watch mode waits while listed_absent names a file (tests/test_watch_listed.py runs that for MTL and DIMAP)."""
    product = maxar_tiled_product(tmp_path / "product")
    tile = next(product.rglob("*-P2AS_R2C1-*"))
    kept = tile.read_bytes()
    tile.unlink()
    til = next(product.rglob("*-P2AS-*.TIL"))
    assert listed_absent(product) == [(tile, til)]
    tile.write_bytes(kept)
    assert listed_absent(product) == []


def test_a_til_that_is_no_tile_list_is_named_with_the_reason(tmp_path: Path) -> None:
    product = maxar_tiled_product(tmp_path / "product")
    til = next(product.rglob("*-P2AS-*.TIL"))
    text = til.read_text()
    for broken, reason in (("not a tile list\n", "no TILE_ groups"),
                           (text.replace("ULColOffset = 20;", "ULColOffset = x;"), "tile 2: no readable filename"),
                           (text.replace('filename = "', 'filename = "../'), "is not a tile")):
        til.write_text(broken)
        with pytest.raises(TileListError, match=reason):
            open_raster(til)
        with pytest.raises(SceneError, match=f"Maxar tile list: .*{reason}") as err:
            Scene.from_directory(product)
        assert til.name in str(err.value) and "\n" not in str(err.value)
