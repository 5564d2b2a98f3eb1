"""Read errors of a scene's files: the decimated preview read for scene statistics names the file that failed, in
one line, like the windowed reads do (corrupt tile data, a file with no valid pixel), and opening a file without
georeferencing leaves only ddrf-run's own line on stderr. docs/RELIABILITY.md lists these cases."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from ddrf.scenes.discover import SceneFiles
from ddrf.scenes.errors import SceneError
from ddrf.scenes.scene import Scene
from scenes_fixtures import TINY_MODEL
from test_bad_inputs import MS_T, assert_one_line, leftovers, pair, run, write_tif

DDRF_RUN = Path(sys.executable).parent / "ddrf-run"


def garble_a_middle_tile(path: Path) -> Path:
    """Rewrite as a deflate-tiled GeoTIFF, then garble the compressed data of tile (col 1, row 0): a tile the
    header check (the first and the last pixel) never reads, so only a whole-scene read meets it."""
    with rasterio.open(path) as src:
        data, profile = src.read(), src.profile
    profile.update(tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_0", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[offset:offset + size] = bytes(b ^ 0x5A for b in raw[offset:offset + size])
    path.write_bytes(bytes(raw))
    return path


def failed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("ddrf-run: ") and "/" in line
            and ("unreadable" in line or "valid" in line)]


@pytest.mark.parametrize("bad", ["ms.tif", "pan.tif"])
def test_corrupt_tile_data_is_named_by_the_preview_read(bad: str, tmp_path: Path) -> None:
    """A model run reads the whole scene first (its statistics): corrupt tile data there names the file that has
    it and what GDAL says, not the PAN with rasterio's "See previous exception"."""
    pan, ms = pair(tmp_path / "in")
    garble_a_middle_tile(tmp_path / "in" / bad)
    out = tmp_path / "out"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--model", str(TINY_MODEL),
                 "--threads", "1")
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, f"in/{bad}", r"unreadable or corrupt raster \(\S+\.tif, band \d+: ",
                    "ddrf-run:")
    other = "pan.tif" if bad == "ms.tif" else "ms.tif"
    assert failed_lines(result.output) and not any(other in line for line in failed_lines(result.output))
    assert "previous exception" not in result.output
    assert leftovers(out) == []


def test_an_all_nan_ms_is_named_not_the_pan(tmp_path: Path) -> None:
    """The bundled model normalises by scene statistics: an MS with no valid pixel is the MS's fault."""
    pan, _ = pair(tmp_path / "in")
    ms = write_tif(tmp_path / "in" / "ms.tif", np.full((4, 32, 32), np.nan), MS_T, "float32",
                   nodata=float("nan"))
    out = tmp_path / "out"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--threads", "1")
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, "in/ms.tif", "band 1 has no valid pixels", "ddrf-run:")
    assert not any("pan.tif" in line for line in failed_lines(result.output)), result.output
    assert leftovers(out) == []


def test_ms_bands_valid_in_no_common_pixel_name_the_ms(tmp_path: Path) -> None:
    """Each band has valid pixels, but no pixel is valid in all of them: still the MS's fault, not the PAN's."""
    pan, _ = pair(tmp_path / "in")
    data = np.full((4, 32, 32), 5000.0)
    data[0, :, :16] = data[1, :, 16:] = 0  # nodata 0: band 1 valid on the right only, band 2 on the left only
    ms = write_tif(tmp_path / "in" / "ms.tif", data, MS_T, nodata=0)
    with pytest.raises(SceneError, match=r"ms\.tif: no pixel is valid in every MS band"):
        Scene.from_paths(pan, ms).preview()


@pytest.mark.parametrize("bad", ["pan", "ms"])
def test_the_scene_opens_an_ungeoreferenced_file_without_a_warning(bad: str, tmp_path: Path) -> None:
    """Scene says "not georeferenced" itself, in one line: rasterio's two-line warning must not come first."""
    pan, ms = pair(tmp_path / "in")
    target = pan if bad == "pan" else ms
    with rasterio.open(target) as src:
        data, dtype = src.read(), src.dtypes[0]
    write_tif(target, data, transform=None, crs=None, dtype=dtype)
    files = SceneFiles(pan, [(ms, b) for b in range(1, 5)], ["blue", "green", "red", "nir"], "generic", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SceneError, match=rf"{bad}\.tif: not georeferenced"):
            Scene(files)
    assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)], [str(w) for w in caught]


def test_ddrf_run_on_an_ungeoreferenced_pan_prints_only_its_own_lines(tmp_path: Path) -> None:
    """End to end, in a fresh process (pytest would catch the warning): every stderr line is ddrf-run's."""
    pan, ms = pair(tmp_path / "in")
    with rasterio.open(pan) as src:
        data = src.read()
    write_tif(pan, data, transform=None, crs=None)
    done = subprocess.run([str(DDRF_RUN), "--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "out" / "x.tif"),
                           "--method", "Brovey", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "pan.tif: not georeferenced" in done.stderr
    assert all(line.startswith("ddrf-run: ") for line in done.stderr.splitlines()), done.stderr


def test_corrupt_tile_data_read_by_a_classical_method_says_what_gdal_says(tmp_path: Path) -> None:
    """--method reads the scene's preview first too (its percentiles tell outliers, ddrf.saturation.fill_outliers):
    the same corrupt MS is named with GDAL's reason, not rasterio's "See previous exception"."""
    pan, ms = pair(tmp_path / "in")
    garble_a_middle_tile(tmp_path / "in" / "ms.tif")
    out = tmp_path / "out"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--method", "GSA")
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, "in/ms.tif", r"unreadable or corrupt raster \(\S+\.tif, band \d+: ", "ddrf-run:")
    assert "previous exception" not in result.output and leftovers(out) == []
