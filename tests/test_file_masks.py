"""GDAL keeps no-data beside the pixels as a mask (internal or external) or an alpha band; the values under it are
fill. ddrf-run used to read past both: a masked block was fused as data (and spread its fill into its neighbours
through the filters), and an RGB + alpha MS had its alpha band fused as a fourth band. Crops of the bundled sample
scene, fused with a classical method (the reader is the same for every method and model)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from typer.testing import CliRunner

from ddrf.scenes.command import app
from scenes_fixtures import SAMPLE

BANDS = ("B2", "B3", "B4", "B5")  # blue, green, red, NIR
METHOD = ["--method", "MTF-GLP-FS", "--no-progress"]


def crop(band: str, side: int) -> tuple[np.ndarray, dict]:
    with rasterio.open(SAMPLE / f"{SAMPLE.name}_{band}.TIF") as src:
        window = Window(0, 0, side, side)
        return src.read(1, window=window), {"crs": src.crs, "transform": src.window_transform(window)}


def write(path: Path, data: np.ndarray, grid: dict, mask: np.ndarray | None = None, **profile: object) -> Path:
    """data (bands, h, w); mask (h, w) True where valid, written as GDAL's internal per-dataset mask."""
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", count=data.shape[0], height=data.shape[1],
                           width=data.shape[2], dtype=data.dtype, **grid, **profile) as dst:
            dst.write(data)
            if mask is not None:
                dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return path


def inputs(folder: Path) -> tuple[Path, np.ndarray, dict]:
    """The PAN crop (128 x 128) and the four MS bands' crop (64 x 64) with its grid."""
    folder.mkdir(parents=True, exist_ok=True)
    pan, pan_grid = crop("B8", 128)
    ms, ms_grid = zip(*(crop(b, 64) for b in BANDS))
    return write(folder / "pan.tif", pan[None], pan_grid), np.stack(ms), ms_grid[0]


def fuse(pan: Path, ms: Path, out: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    result = CliRunner().invoke(app, ["--pan", str(pan), "--ms", str(ms), "-o", str(out), *METHOD])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dst:
        return dst.read(), dst.read_masks(1) > 0, dst.descriptions


def test_a_masked_block_is_no_data_like_a_nodata_value(tmp_path: Path) -> None:
    """The same 16 x 16 MS block filled with 0: under an internal mask, it fuses exactly as under a nodata tag of 0."""
    pan, ms, grid = inputs(tmp_path)
    ms[:, :16, :16] = 0
    valid = np.ones(ms.shape[1:], dtype=bool)
    valid[:16, :16] = False
    masked = fuse(pan, write(tmp_path / "masked.tif", ms, grid, mask=valid), tmp_path / "a.tif")
    tagged = fuse(pan, write(tmp_path / "tagged.tif", ms, grid, nodata=0), tmp_path / "b.tif")
    assert not masked[1][:32, :32].any() and masked[1][40:, 40:].all()  # the block's PAN footprint is nodata
    np.testing.assert_array_equal(masked[1], tagged[1])
    np.testing.assert_array_equal(masked[0][:, masked[1]], tagged[0][:, tagged[1]])


def test_a_masked_pan_block_is_no_data(tmp_path: Path) -> None:
    pan, ms, grid = inputs(tmp_path)
    with rasterio.open(pan) as src:
        data, pan_grid = src.read(), {"crs": src.crs, "transform": src.transform}
    valid = np.ones(data.shape[1:], dtype=bool)
    valid[64:96, 64:96] = False
    masked_pan = write(tmp_path / "pan_masked.tif", data, pan_grid, mask=valid)
    fused, fused_valid, _ = fuse(masked_pan, write(tmp_path / "ms.tif", ms, grid), tmp_path / "a.tif")
    assert not fused_valid[64:96, 64:96].any() and fused_valid[:64].all()


def test_a_grey_plus_alpha_pan_is_its_grey_band_masked_by_alpha(tmp_path: Path) -> None:
    """`gdalwarp -dstalpha` writes a PAN as grey + alpha: fused as the grey band with no data where alpha is 0, exactly
    as the same fill under a nodata tag (before: `PAN file has 2 bands, expected 1`)."""
    pan, ms, grid = inputs(tmp_path)
    with rasterio.open(pan) as src:
        data, pan_grid = src.read(), {"crs": src.crs, "transform": src.transform}
    data[:, 64:96, 64:96] = 0
    alpha = np.where(data > 0, 65535, 0).astype(data.dtype)
    warped = write(tmp_path / "pan_alpha.tif", np.concatenate([data, alpha]), pan_grid)
    with rasterio.open(warped, "r+") as dst:
        dst.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    ms_path = write(tmp_path / "ms.tif", ms, grid)
    by_alpha = fuse(warped, ms_path, tmp_path / "a.tif")
    by_tag = fuse(write(tmp_path / "pan_tagged.tif", data, pan_grid, nodata=0), ms_path, tmp_path / "b.tif")
    assert not by_alpha[1][64:96, 64:96].any() and by_alpha[1][:64].all()
    np.testing.assert_array_equal(by_alpha[1], by_tag[1])
    np.testing.assert_array_equal(by_alpha[0][:, by_alpha[1]], by_tag[0][:, by_tag[1]])
    folder = tmp_path / "unnamed"  # no naming scheme: the PAN is the one image band on the finest grid
    folder.mkdir()
    warped.rename(folder / "first.tif")
    ms_path.rename(folder / "second.tif")
    result = CliRunner().invoke(app, [str(folder), "-o", str(tmp_path / "out"), *METHOD])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / "unnamed.tif") as dst:
        np.testing.assert_array_equal(dst.read(), rasterio.open(tmp_path / "a.tif").read())


def test_an_alpha_band_masks_the_others_and_is_not_fused(tmp_path: Path) -> None:
    """An RGB + alpha byte MS: three bands fused, named by their colour interpretation, nodata where alpha is 0."""
    pan, ms, grid = inputs(tmp_path)
    rgb = (ms[[2, 1, 0]] // 256).astype(np.uint8)  # red, green, blue
    alpha = np.full(ms.shape[1:], 255, dtype=np.uint8)
    alpha[-16:, -16:] = 0
    path = tmp_path / "rgba.tif"
    with rasterio.open(path, "w", driver="GTiff", count=4, height=64, width=64, dtype="uint8", photometric="RGB",
                       alpha="YES", **grid) as dst:
        dst.write(np.concatenate([rgb, alpha[None]]))
    with rasterio.open(path) as src:
        assert src.colorinterp[3] == ColorInterp.alpha  # the file is what GDAL calls RGBA
    result = CliRunner().invoke(app, ["--pan", str(pan), "--ms", str(path), "-o", str(tmp_path / "a.tif"), *METHOD])
    assert result.exit_code == 0, result.output
    assert "band order assumed red, green, blue (the file's colour interpretation" in " ".join(result.output.split())
    with rasterio.open(tmp_path / "a.tif") as dst:
        assert dst.count == 3 and dst.descriptions == ("red", "green", "blue")
        valid = dst.read_masks(1) > 0
    assert not valid[-32:, -32:].any() and valid[:96, :96].all()


def test_an_alpha_band_beside_four_bands_masks_them(tmp_path: Path) -> None:
    """`gdalwarp -dstalpha` on a four-band MS writes five bands, the fifth alpha; GDAL takes an alpha band as the
    mask of two- and four-band files only, so its own mask of this file is all valid. The alpha band was dropped
    from the bands but masked nothing: the transparent block (0 in every band) was fused as data. It must fuse
    exactly as the same fill under a nodata tag."""
    pan, ms, grid = inputs(tmp_path)
    ms[:, -16:, :16] = 0
    alpha = np.where(ms[0] > 0, 65535, 0).astype(ms.dtype)
    warped = write(tmp_path / "ms_alpha.tif", np.concatenate([ms, alpha[None]]), grid)
    with rasterio.open(warped, "r+") as dst:
        dst.colorinterp = [ColorInterp.gray, *[ColorInterp.undefined] * 3, ColorInterp.alpha]
    with rasterio.open(warped) as src:
        assert src.mask_flag_enums[0] == [rasterio.enums.MaskFlags.all_valid]  # GDAL itself masks nothing here
    by_alpha = fuse(pan, warped, tmp_path / "a.tif")
    by_tag = fuse(pan, write(tmp_path / "tagged.tif", ms, grid, nodata=0), tmp_path / "b.tif")
    assert by_alpha[0].shape[0] == 4 and not by_alpha[1][-32:, :32].any() and by_alpha[1][:64, 40:].all()
    np.testing.assert_array_equal(by_alpha[1], by_tag[1])
    np.testing.assert_array_equal(by_alpha[0][:, by_alpha[1]], by_tag[0][:, by_tag[1]])


def test_a_nir_band_gdal_flagged_alpha_stays_a_band_and_masks_nothing(tmp_path: Path) -> None:
    """GDAL writes a four-band byte file as RGB + alpha unless told otherwise: blue, green, red, NIR written so must
    keep NIR as a band, and NIR values of 0 (dark water in 8 bits) must not become no data."""
    pan, ms, grid = inputs(tmp_path)
    bgrn = (ms // 256).astype(np.uint8)
    bgrn[3, :8, :8] = 0
    path = write(tmp_path / "bgrn.tif", bgrn, grid)
    with rasterio.open(path) as src:
        assert src.colorinterp[3] == ColorInterp.alpha  # the default at hand
    fused, valid, _ = fuse(pan, path, tmp_path / "a.tif")
    assert fused.shape[0] == 4 and valid.all()


def test_band_scales_and_offsets_reach_the_output(tmp_path: Path) -> None:
    """The output is in the MS's DN, so a reflectance scale and offset on the MS bands must be on its bands too
    (they were dropped: the DN read as reflectance were then wrong)."""
    pan, ms, grid = inputs(tmp_path)
    path = write(tmp_path / "ms.tif", ms, grid)
    with rasterio.open(path, "r+") as dst:
        dst.scales, dst.offsets = (2e-5, 2e-5, 3e-5, 2e-5), (-0.1, -0.1, -0.2, -0.1)
    result = CliRunner().invoke(app, ["--pan", str(pan), "--ms", str(path), "-o", str(tmp_path / "a.tif"),
                                      "--uncertainty", "2", *METHOD[2:], "--model", "landsat_ratio2",
                                      "--threads", "1", "--tile", "128", "--halo", "16"])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "a.tif") as dst:
        assert dst.scales == (2e-5, 2e-5, 3e-5, 2e-5) and dst.offsets == (-0.1, -0.1, -0.2, -0.1)
    with rasterio.open(tmp_path / "a_spread.tif") as dst:
        assert dst.scales == (2e-5, 2e-5, 3e-5, 2e-5) and dst.offsets == (0.0,) * 4


def test_training_and_evaluation_pairs_honour_the_mask_too(tmp_path: Path) -> None:
    """`read_geotiff_pair` (ddrf-eval's `pairs:`, ddrf-train and ddrf-finetune) read the fill under a mask as data:
    a masked block must read exactly as the same block under a nodata tag (filled from its valid neighbours)."""
    from ddrf.data.geotiff import read_geotiff_pair

    pan, ms, grid = inputs(tmp_path)
    ms[:, :16, :16] = 0
    valid = np.ones(ms.shape[1:], dtype=bool)
    valid[:16, :16] = False
    masked = read_geotiff_pair(pan, [write(tmp_path / "masked.tif", ms, grid, mask=valid)], bits=16)
    tagged = read_geotiff_pair(pan, [write(tmp_path / "tagged.tif", ms, grid, nodata=0)], bits=16)
    assert masked.ms[:16, :16].min() > 0  # filled, not the fill value 0
    np.testing.assert_array_equal(masked.ms, tagged.ms)
    np.testing.assert_array_equal(masked.pan, tagged.pan)


def test_each_band_keeps_its_own_nodata_value(tmp_path: Path) -> None:
    """A multi-band MS whose bands declare different nodata values (a VRT stacking band files, an .img): every band
    but the first had its holes fused as data (values far outside the data's range). It must fuse exactly as the
    same band files given one by one."""
    pan, ms, grid = inputs(tmp_path)
    names, holes = ("blue", "green", "red", "nir"), (0, 1, 7, 65535)
    files = []
    for k, (name, hole) in enumerate(zip(names, holes)):
        band = ms[k].copy()
        band[8 + 4 * k:16 + 4 * k, 8:16] = hole  # each band's hole elsewhere, so each band's nodata matters
        files.append(write(tmp_path / f"{name}.tif", band[None], grid, nodata=hole))
        with rasterio.open(files[-1], "r+") as dst:
            dst.set_band_description(1, name)
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{k + 1}"><NoDataValue>{hole}</NoDataValue>'
        f"<Description>{name}</Description><SimpleSource><SourceFilename relativeToVRT=\"1\">{name}.tif"
        "</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        for k, (name, hole) in enumerate(zip(names, holes)))
    vrt = tmp_path / "ms.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>{grid["crs"].to_wkt()}</SRS>'
                   f"<GeoTransform>{', '.join(map(str, grid['transform'].to_gdal()))}</GeoTransform>{bands}</VRTDataset>")
    with rasterio.open(vrt) as src:
        assert src.nodatavals == holes
    stacked = fuse(pan, vrt, tmp_path / "a.tif")
    result = CliRunner().invoke(app, ["--pan", str(pan), *(a for f in files for a in ("--ms", str(f))), "-o",
                                      str(tmp_path / "b.tif"), *METHOD])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "b.tif") as dst:
        one_by_one = dst.read(), dst.read_masks(1) > 0
    assert not stacked[1][16 + 24:32 + 24, 16:32].any()  # the NIR hole's PAN footprint is nodata
    np.testing.assert_array_equal(stacked[1], one_by_one[1])
    np.testing.assert_array_equal(stacked[0], one_by_one[0])
