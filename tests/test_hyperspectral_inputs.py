"""Hyperspectral cubes (tens to hundreds of bands, ratio 3) with the faults such cubes carry: bad bands that are all
nodata or all zero, through the user's paths other than a plain ddrf-run (docs/RELIABILITY.md rows 380-389). The
cubes are written here: a smooth pattern with noise, each band a gain and offset of it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ddrf.data import read_geotiff_pair

RATIO = 3


def write_cube(folder: Path, bands: int = 40, side: int = 36, nodata: float | None = None,
               dead: dict[int, float] | None = None) -> tuple[Path, Path]:
    """`folder`/cube_pan.tif and cube_ms.tif (uint16, MS `side` x `side`, PAN `RATIO` times that); `dead` maps a
    0-based MS band to the one value it holds everywhere (a bad band)."""
    rng = np.random.default_rng(3)
    big = side * RATIO
    yy, xx = np.mgrid[0:big, 0:big] / big
    base = 800 + 300 * np.sin(6 * xx) * np.cos(5 * yy) + 30 * rng.standard_normal((big, big))
    low = base.reshape(side, RATIO, side, RATIO).mean(axis=(1, 3))
    ms = np.stack([low * (0.5 + 0.1 * (k % 7)) + 400 + 10 * k for k in range(bands)])
    for band, value in (dead or {}).items():
        ms[band] = value
    grid = {"driver": "GTiff", "dtype": "uint16", "crs": "EPSG:32633", "nodata": nodata}
    folder.mkdir(parents=True, exist_ok=True)
    pan, cube = folder / "cube_pan.tif", folder / "cube_ms.tif"
    with rasterio.open(pan, "w", width=big, height=big, count=1, transform=from_origin(5e5, 4e6, 10, 10),
                       **grid) as dst:
        dst.write(base.astype(np.uint16), 1)
    with rasterio.open(cube, "w", width=side, height=side, count=bands,
                       transform=from_origin(5e5, 4e6, 10 * RATIO, 10 * RATIO), **grid) as dst:
        dst.write(ms.astype(np.uint16))
    return pan, cube


def test_a_cube_with_an_all_nodata_band_is_refused_by_the_pair_reader(tmp_path: Path) -> None:
    """Row 380: one bad band of the cube all at the nodata value marked every pixel invalid, and the pair reader of
    ddrf-eval pairs:, ddrf-train and ddrf-finetune filled the whole cube with zeros and went on (ddrf-eval then failed
    with 'SAM is undefined'; training would learn from zeros). ddrf-run refuses the band in one line; so does the
    reader now."""
    pan, cube = write_cube(tmp_path, nodata=65535, dead={37: 65535})
    with pytest.raises(ValueError, match=f"^{cube}: band 38 has no valid pixels \\(all nodata\\)"):
        read_geotiff_pair(pan, [cube], bits=16)
    pan, cube = write_cube(tmp_path / "good", nodata=65535)  # the same cube without the bad band reads as it is
    pair = read_geotiff_pair(pan, [cube], bits=16)
    with rasterio.open(cube) as src:
        assert np.array_equal(pair.ms, src.read().transpose(1, 2, 0).astype(np.float64))


def _eval(folder: Path, *extra: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from ddrf.evaluate.command import app as eval_app

    result = CliRunner().invoke(eval_app, [f"pairs:{folder}", "--methods", "EXP,GSA", *extra])
    return result.exit_code, result.output


def test_ddrf_eval_names_a_dead_band_of_the_reference(tmp_path: Path) -> None:
    """Row 381: a cube whose bad band is 0 everywhere (no nodata tag) failed after fusing with 'ERGAS is undefined: a
    reference band has zero mean', naming neither the file nor the band; it is now said before any method runs."""
    pan, _ = write_cube(tmp_path, dead={1: 0})
    code, output = _eval(tmp_path, "--mode", "reduced")
    assert code == 2 and f"({pan})" in output and "band 2 (cube_ms_b2) is 0 everywhere" in output, output
    assert "--bands" in output and "Traceback" not in output


def test_ddrf_eval_full_resolution_at_ratio_3_says_what_would_work(tmp_path: Path) -> None:
    """Row 382: at full resolution the QNR family compares 32-pixel blocks of the fused image with 32 / ratio MS
    pixels, which a hyperspectral pair's ratio 3 does not divide: the run failed after fusing with 'block 32 must be a
    multiple of the ratio 3', naming no file; it now names the image and the mode that scores it."""
    pan, _ = write_cube(tmp_path)
    code, output = _eval(tmp_path, "--mode", "full")
    assert code == 2 and f"({pan})" in output and "ratio 3" in output and "--mode reduced" in output, output
    code, output = _eval(tmp_path, "--mode", "reduced")  # the same pair scores at reduced resolution
    assert code == 0 and "GSA" in output, output


def test_ddrf_finetune_without_a_base_for_the_cube_names_what_would_work(tmp_path: Path) -> None:
    """Row 383: no bundled model has ratio 3, and ddrf-finetune's refusal gave ddrf-run's advice: a classical
    --method (ddrf-finetune has none) or 'a model trained ... (ddrf-finetune ...)', itself. It now points at training
    one from scratch with ddrf-train on the same scene directories."""
    pytest.importorskip("torch")  # the train extra
    from typer.testing import CliRunner

    from ddrf.finetune.command import app as finetune_app

    write_cube(tmp_path / "scene")
    result = CliRunner().invoke(finetune_app, [str(tmp_path / "scene"), "--out", str(tmp_path / "run"), "--steps", "1"])
    assert result.exit_code != 0 and "no bundled model fits this scene (ratio 3" in result.output, result.output
    assert "--method" not in result.output and "ddrf-train" in result.output, result.output
    assert f"data.source=scenes:{tmp_path / 'scene'}" in result.output, result.output
    assert not (tmp_path / "run").exists()


def _bytes_read() -> int:
    with open("/proc/self/io") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="counts the bytes read through Linux's /proc/self/io")
def test_a_window_of_a_pixel_interleaved_cube_reads_its_blocks_once(tmp_path: Path) -> None:
    """Row 384: a multi-band GeoTIFF is pixel-interleaved by default (each tile holds every band), and ddrf-run read a
    window band by band, each read decoding the whole tile again: a 200-band cube's window took 10 s to read, 40 times
    its fusion. The bytes a window reads now stay near one pass over its tiles, whatever the band count."""
    from ddrf.geometry import PairGrid

    pan, cube = write_cube(tmp_path, bands=120, side=64)
    with rasterio.open(cube) as src:
        profile, data = src.profile, src.read()
    tiled = tmp_path / "cube_tiled.tif"  # one 64 x 64 tile holding all 120 bands, uncompressed
    with rasterio.open(tiled, "w", **{**profile, "tiled": True, "blockxsize": 64, "blockysize": 64,
                                      "interleave": "pixel"}) as dst:
        dst.write(data)
    with rasterio.open(pan) as p, rasterio.open(tiled) as m:
        grid = PairGrid.from_transforms(p.transform, p.shape, m.transform, m.shape)
    ms = [(tiled, b) for b in range(1, 121)]
    before = _bytes_read()
    _, fused_ms, _ = grid.read_window(pan, ms, {}, 0, 0, 96, 96)
    read = _bytes_read() - before
    assert np.array_equal(fused_ms, data[:, :32, :32].transpose(1, 2, 0).astype(np.float64))
    # the tile is 64 * 64 * 120 * 2 bytes and the PAN 192 * 192 * 2: a few passes at most, not one per band
    assert read < 4 * tiled.stat().st_size, f"{read} bytes read for a {tiled.stat().st_size}-byte cube"


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="counts the bytes read through Linux's /proc/self/io")
def test_the_stac_band_statistics_of_a_many_band_output_read_it_once(tmp_path: Path) -> None:
    """Row 385: the STAC Item every run writes takes each band's statistics from the fused raster; read with GDAL's
    per-band masks and GDAL's decimated read, each band decoded the pixel-interleaved tiles again (a row of tiles
    of 200 bands does not fit ddrf-run's 64 MB block cache): 196 s of a 200-band run of 120 x 600 pixels (1.2 s
    now), more than 100 s for 120 x 6000 (21 s now). The nodata value decides validity, and the blocks are read
    with all their bands, so the bytes read stay those of reading the raster a few times, not once per band."""
    from ddrf.scenes.stac_out import band_entries
    from ddrf.scenes.writer import geotiff_profile

    bands, rows, cols = 60, 16, 2100  # five tiles side by side, each of every band; statistics of every 2nd pixel
    values = (np.arange(bands * rows * cols).reshape(bands, rows, cols) % 997 + 1).astype(np.uint16)
    values[:, :4] = 0  # a quarter of every band is nodata
    raster = tmp_path / "fused.tif"
    profile = geotiff_profile(rows, cols, bands, np.dtype(np.uint16), "EPSG:32633", from_origin(5e5, 4e6, 10, 10), 0)
    with rasterio.open(raster, "w", **profile) as dst:
        dst.write(values)
    with rasterio.Env(GDAL_CACHEMAX=8 * 2**20):  # under a row of tiles, as 64 MB is under 200 bands' row
        before = _bytes_read()
        entries = band_entries(raster, [f"band{k}" for k in range(1, bands + 1)])
        read = _bytes_read() - before
    assert read < 4 * raster.stat().st_size, f"{read} bytes read for a {raster.stat().st_size}-byte raster"
    last = values[-1, 1::2, 1::2][values[-1, 1::2, 1::2] != 0]  # every 2nd pixel: the raster is over 2048 wide
    assert entries[-1]["statistics"]["valid_percent"] == 75.0
    assert entries[-1]["statistics"]["mean"] == pytest.approx(last.mean())


def test_the_fused_cube_keeps_each_band_s_wavelength(tmp_path: Path) -> None:
    """Row 386: a cube's band metadata (GDAL's per-band tags: `wavelength`, `wavelength_units`, `fwhm`, as ENVI
    files converted by GDAL carry them) was dropped from the output, whose bands were then band1..band40 with no way
    to tell their wavelengths. Each fused band now carries its MS band's tags (not the input's statistics)."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app as run_app

    pan, cube = write_cube(tmp_path / "in", bands=40)
    with rasterio.open(cube, "r+") as dst:
        for band in range(1, 41):
            dst.update_tags(band, wavelength=f"{400 + 10 * band:.1f}", wavelength_units="Nanometers", fwhm="10.0",
                            STATISTICS_MEAN="1.0")
    out = tmp_path / "fused.tif"
    result = CliRunner().invoke(run_app, ["--pan", str(pan), "--ms", str(cube), "-o", str(out), "--method", "EXP"])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as fused:
        tags = [fused.tags(band) for band in range(1, fused.count + 1)]
    assert [t.get("wavelength") for t in tags] == [f"{400 + 10 * band:.1f}" for band in range(1, 41)]
    assert tags[0]["wavelength_units"] == "Nanometers" and tags[0]["fwhm"] == "10.0"
    assert "STATISTICS_MEAN" not in tags[0]  # the input's, not the output's


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="counts the bytes read through Linux's /proc/self/io")
def test_the_scene_preview_of_a_pixel_interleaved_cube_reads_it_once(tmp_path: Path) -> None:
    """Row 387: the decimated whole-scene preview every run takes first (statistics, input checks) read the MS band
    by band, decoding a pixel-interleaved cube's tiles once per band: 9.8 s for a 200-band cube of 40 x 200 pixels
    (0.2 s now), minutes for a larger one. All the bands of a file now come in one read."""
    from ddrf.scenes.discover import pair_from_paths
    from ddrf.scenes.scene import Scene

    pan, cube = write_cube(tmp_path, bands=120, side=64)
    with rasterio.open(cube) as src:
        profile, data = src.profile, src.read()
    tiled = tmp_path / "cube_tiled.tif"
    with rasterio.open(tiled, "w", **{**profile, "tiled": True, "blockxsize": 64, "blockysize": 64,
                                      "interleave": "pixel"}) as dst:
        dst.write(data)
    scene = Scene(pair_from_paths(pan, tiled))
    before = _bytes_read()
    _, _, ms, _ = scene.preview()
    read = _bytes_read() - before
    assert np.array_equal(ms, data.transpose(1, 2, 0).astype(np.float64))
    assert read < 4 * tiled.stat().st_size, f"{read} bytes read for a {tiled.stat().st_size}-byte cube"


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="counts the bytes read through Linux's /proc/self/io")
def test_a_decimated_read_of_a_wide_cube_reads_it_once(tmp_path: Path) -> None:
    """Row 387 (a preview wider than 1024 pixels, and row 385's statistics): GDAL's decimated read decoded a
    pixel-interleaved cube's tiles once per band (16.9 s of preview for a 200-band cube 2000 MS pixels wide, 0.7 s
    now). `read_decimated` takes the same pixels, every band of a block in one read."""
    from ddrf.geometry import read_band, read_decimated

    bands, rows, cols = 120, 16, 2100
    values = (np.arange(bands * rows * cols).reshape(bands, rows, cols) % 4093).astype(np.uint16)
    cube = tmp_path / "wide.tif"
    with rasterio.open(cube, "w", driver="GTiff", width=cols, height=rows, count=bands, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(5e5, 4e6, 30, 30), tiled=True, blockxsize=512,
                       blockysize=16, interleave="pixel") as dst:
        dst.write(values)
    shape = (8, 1050)
    with rasterio.Env(GDAL_CACHEMAX=4 * 2**20), rasterio.open(cube) as src:  # a row of tiles outgrows it, as
        before = _bytes_read()  # a 200-band cube's outgrows ddrf-run's 64 MB: GDAL's own read took 960 passes
        fast = read_decimated(src, list(range(1, bands + 1)), shape)
        read = _bytes_read() - before
    with rasterio.open(cube) as src:  # GDAL's own decimated read, with the default cache it fits in
        assert np.array_equal(fast, read_band(src, list(range(1, bands + 1)), out_shape=(bands, *shape)))
    assert read < 4 * cube.stat().st_size, f"{read} bytes read for a {cube.stat().st_size}-byte cube"
