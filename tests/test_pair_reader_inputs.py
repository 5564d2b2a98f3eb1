"""The GeoTIFF pair reader of ddrf-eval's `pairs:`, ddrf-train and ddrf-finetune (`ddrf.data.read_geotiff_pair`) on
the inputs ddrf-run's scene path refuses or accepts (docs/RELIABILITY.md rows 290-298, 315): it must take each as
ddrf-run does, through the same rules (`ddrf.geometry`). Files cut from the bundled sample scene. Rows 330-."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

from ddrf.data import read_geotiff_pair
from scenes_fixtures import SAMPLE

PAN = SAMPLE / f"{SAMPLE.name}_B8.TIF"
MS = [SAMPLE / f"{SAMPLE.name}_{b}.TIF" for b in ("B2", "B3", "B4", "B5")]


def copy(source: Path, path: Path, data: np.ndarray | None = None, **changes: object) -> Path:
    """`source` written to `path`, with other data (bands first) and profile entries."""
    with rasterio.open(source) as src:
        profile, values = src.profile, src.read()
    values = values if data is None else data
    profile.update(count=values.shape[0], **changes)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values.astype(profile["dtype"]))
    return path


def transform_of(path: Path) -> Affine:
    with rasterio.open(path) as src:
        return src.transform


def read(pan: Path, ms: list[Path]):
    return read_geotiff_pair(pan, ms, sensor="Landsat8", bits=12)


def test_a_palette_pan_or_ms_is_refused_by_the_pair_reader(tmp_path: Path) -> None:
    """Row 330: a colour table's indices were read as brightness, and trained on or scored, silently."""
    with rasterio.open(PAN) as src:
        data = (src.read() >> 8).astype(np.uint8)  # a palette file is byte data
    palette = copy(PAN, tmp_path / "pan.tif", data, dtype="uint8")
    with rasterio.open(palette, "r+") as dst:
        dst.write_colormap(1, {i: (i, 255 - i, 0, 255) for i in range(256)})
    with pytest.raises(ValueError, match=f"{palette}: a palette \\(colour-map\\) raster: its values index"):
        read(palette, MS)
    one_bit = copy(MS[1], tmp_path / "ms.tif", np.ones((1, 128, 256)), dtype="uint8", nbits=1)
    with pytest.raises(ValueError, match=f"{one_bit}: a 1-bit raster \\(NBITS=1\\)"):
        read(PAN, [MS[0], one_bit, *MS[2:]])
    ramp = copy(PAN, tmp_path / "ramp.tif", data, dtype="uint8")  # a grey ramp is brightness: read as its values
    with rasterio.open(ramp, "r+") as dst:
        dst.write_colormap(1, {i: (i, i, i, 255) for i in range(256)})
    assert np.array_equal(read(ramp, MS).pan, read(copy(PAN, tmp_path / "grey.tif", data, dtype="uint8"), MS).pan)


def test_a_grey_plus_alpha_pan_is_read_as_its_grey_band_masked_by_alpha(tmp_path: Path) -> None:
    """Row 331: `gdalwarp -dstalpha` writes a PAN as grey + alpha, which ddrf-run fuses (row 295); the pair reader
    refused it (`PAN has 2 bands, expected 1`), so ddrf-finetune failed on a scene folder ddrf-run fuses. It reads as
    the same fill under a nodata tag: filled from the valid neighbours."""
    with rasterio.open(PAN) as src:
        data = src.read()
    data[:, 64:96, 64:96] = 7
    alpha = np.where(data == 7, 0, 65535)
    warped = copy(PAN, tmp_path / "pan_alpha.tif", np.concatenate([data, alpha]))
    with rasterio.open(warped, "r+") as dst:
        dst.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    by_alpha, by_tag = read(warped, MS), read(copy(PAN, tmp_path / "pan_tagged.tif", data, nodata=7), MS)
    assert by_alpha.pan[64:96, 64:96].min() > 7  # filled, not the value under the alpha
    np.testing.assert_array_equal(by_alpha.pan, by_tag.pan)
    np.testing.assert_array_equal(by_alpha.ms, by_tag.ms)
    two = copy(PAN, tmp_path / "pan_two.tif", np.concatenate([data, data]))  # two image bands: still refused
    with pytest.raises(ValueError, match="PAN has 2 bands, expected 1"):
        read(two, MS)


def rotated(source: Path, path: Path, term: float) -> Path:
    """`source` with `term` in both rotation terms of its geotransform."""
    t = transform_of(source)
    return copy(source, path, transform=Affine(t.a, term, t.c, -term, t.e, t.f))


def test_rotation_terms_of_float_noise_are_no_rotation_to_the_pair_reader(tmp_path: Path) -> None:
    """Row 332: 1e-12 in a PAN's or MS's rotation terms moves no pixel by a billionth of one; ddrf-run reads such
    files as unrotated (row 298), the pair reader refused them as rotated. A rotation that moves a pixel still is."""
    plain = read(PAN, MS)
    noisy = read(rotated(PAN, tmp_path / "pan.tif", 1e-12), [rotated(m, tmp_path / m.name, 1e-12) for m in MS])
    np.testing.assert_array_equal(noisy.pan, plain.pan)
    np.testing.assert_array_equal(noisy.ms, plain.ms)
    with pytest.raises(ValueError, match="is rotated or not north-up"):
        read(rotated(PAN, tmp_path / "turned.tif", 0.002), MS)


def test_ms_band_files_are_one_grid_to_a_millionth_of_a_pixel(tmp_path: Path) -> None:
    """Row 333: the pair reader compared MS band files' geotransforms to 1e-5 CRS units, ddrf-run to a millionth of a
    pixel (row 297): a 30 m band 2e-5 m off (7e-7 of a pixel) was refused, and in degrees a band 4 % of a pixel off
    was read as on the grid. Both now read as ddrf-run reads them."""
    plain = read(PAN, MS)
    noisy = read(PAN, [MS[0], copy(MS[1], tmp_path / "b3.tif", transform=Affine.translation(2e-5, 0) @ transform_of(MS[1])),
                       *MS[2:]])
    np.testing.assert_array_equal(noisy.ms, plain.ms)
    pan_t, ms_t = Affine(0.000135, 0, -90, 0, -0.000135, 30), Affine(0.00027, 0, -90, 0, -0.00027, 30)
    pan = copy(PAN, tmp_path / "pan.tif", crs="EPSG:4326", transform=pan_t)
    ms = [copy(m, tmp_path / f"ms{i}.tif", crs="EPSG:4326", transform=ms_t) for i, m in enumerate(MS)]
    read(pan, ms)
    ms[1] = copy(MS[1], tmp_path / "off.tif", crs="EPSG:4326", transform=Affine.translation(5e-6, 0) @ ms_t)
    with pytest.raises(ValueError, match="off.tif: MS grid differs from"):
        read(pan, ms)


def test_a_maxar_tiled_delivery_reads_as_the_untiled_product(tmp_path: Path) -> None:
    """Row 334: ddrf-run reads a Maxar `.TIL` as the mosaic of its tiles; the pair reader (ddrf-finetune, ddrf-train's
    scenes:) opened it with GDAL's TIL driver, which wants the product's .IMD: `not a readable raster (Unable to open
    .TIL dataset due to missing metadata file.)`. It reads the same arrays as the untiled product."""
    from ddrf.data import read_band_pair
    from ddrf.scenes.discover import discover_scene
    from scenes_fixtures import MAXAR, maxar_tiled_product

    pairs = []
    for folder in (MAXAR, maxar_tiled_product(tmp_path / "tiled")):
        found = discover_scene(folder)
        pairs.append(read_band_pair(found.pan, found.ms, found.sensor, 11, found.band_names))
    assert found.pan.suffix == ".TIL"
    np.testing.assert_array_equal(pairs[0].pan, pairs[1].pan)
    np.testing.assert_array_equal(pairs[0].ms, pairs[1].ms)


def test_a_south_up_file_is_said_as_such(tmp_path: Path) -> None:
    """Row 403: a PAN whose y pixel size is positive is south-up, said so with the way out, by ddrf-run's words."""
    t = transform_of(PAN)
    with pytest.raises(ValueError, match=r"pan.tif: geotransform .* is south-up \(positive y pixel size .*flip it"):
        read(copy(PAN, tmp_path / "pan.tif", transform=Affine(t.a, 0, t.c, 0, -t.e, t.f)), MS)


def test_a_pair_file_on_no_map_grid_is_refused_as_ddrf_run_refuses_it(tmp_path: Path) -> None:
    """Row 407: an MS band georeferenced by ground control points only in a training or evaluation pair was `CRS None
    differs from PAN CRS EPSG:32616`; an RPC'd one with a CRS tag `rotated or not north-up`. Now ddrf-run's words
    (`ddrf/geometry.py: map_grid_problem`), which name what the file is and how to put it on a map grid."""
    from rasterio.control import GroundControlPoint
    from rasterio.rpc import RPC

    gcps = copy(MS[1], tmp_path / "b3.tif", transform=Affine.identity(), crs=None)
    with rasterio.open(gcps, "r+") as dst:
        dst.gcps = ([GroundControlPoint(row=r, col=c, x=456000.0 + 30 * c, y=3394000.0 - 30 * r)
                     for r, c in ((0, 0), (0, 10), (10, 0))], "EPSG:32616")
    with pytest.raises(ValueError, match=r"b3.tif: georeferenced by ground control points only, no geotransform"):
        read(PAN, [MS[0], gcps, *MS[2:]])
    rpcs = copy(PAN, tmp_path / "pan.tif", transform=Affine.identity(), crs="EPSG:4326")
    with rasterio.open(rpcs, "r+") as dst:
        dst.rpcs = RPC(height_off=0, height_scale=100, lat_off=30.6, lat_scale=0.05, line_den_coeff=[1] + [0] * 19,
                       line_num_coeff=[0, 0, -1] + [0] * 17, line_off=32, line_scale=32, long_off=-87.4,
                       long_scale=0.05, samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18, samp_off=32,
                       samp_scale=32)
    with pytest.raises(ValueError, match=r"pan.tif: RPC-only GeoTIFF \(no geotransform\): not orthorectified"):
        read(rpcs, MS)
