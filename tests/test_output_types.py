"""Output data types: signed integer inputs keep their range and a nodata value that valid data cannot take, MS
band files of different types are refused in one line, and a 4-band uint8 product is not tagged RGBA.

Inputs are made from the bundled sample scene (B2..B5 MS at 30 m, B8 PAN at 15 m); GSA and the committed tiny
model keep it cheap (no torch).
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from typer.testing import CliRunner

from ddrf.scenes.command import app
from ddrf.scenes.stac_out import band_entries
from ddrf.scenes.writer import beyond_range, quantise, value_range
from scenes_fixtures import SAMPLE, TINY_MODEL

BANDS = ["blue", "green", "red", "nir"]


def sample(band: str) -> tuple[np.ndarray, dict]:
    with rasterio.open(next(SAMPLE.glob(f"*_{band}.TIF"))) as src:
        return src.read(1), src.profile.copy()


def write(path: Path, data: np.ndarray, profile: dict, **kw) -> Path:
    data = data if data.ndim == 3 else data[None]
    profile = {**profile, "count": data.shape[0], "dtype": data.dtype.name, "nodata": None, **kw}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def sample_pair(folder: Path, convert) -> tuple[Path, Path]:
    """PAN and 4-band MS of the sample scene, each passed through `convert` (uint16 array -> new array)."""
    folder.mkdir(parents=True, exist_ok=True)
    pan, pan_profile = sample("B8")
    bands = [sample(b) for b in ("B2", "B3", "B4", "B5")]
    ms = np.stack([data for data, _ in bands])
    return (write(folder / "pan.tif", convert(pan), pan_profile),
            write(folder / "ms.tif", convert(ms), bands[0][1]))


def run(*args: str):
    return CliRunner().invoke(app, [*args, "--no-progress"])


def engine(tmp: Path, kind: str) -> list[str]:
    if kind == "GSA":
        return ["--method", "GSA"]
    return ["--model", str(shutil.copytree(TINY_MODEL, tmp / "model")), "--threads", "1"]


# ------------------------------------------------------------------ signed integers
def test_value_range_is_the_signed_types_own() -> None:
    assert value_range(np.dtype("int16"), 16) == (-32768, 32767)
    assert value_range(np.dtype("uint16"), 12) == (0, 4095)
    assert value_range(np.dtype("uint8"), None) == (0, 255)
    assert value_range(np.dtype("float32"), 16) is None


def test_quantise_keeps_negative_values_and_moves_valid_data_off_the_minimum() -> None:
    values = np.array([[[-40000.0], [-32768.0], [-5.4], [0.0], [40000.0], [7.0]]])
    valid = np.array([[True, True, True, True, True, False]])
    out = quantise(values, valid, np.dtype("int16"), 16, -32768.0)
    assert out.dtype == np.int16
    assert out[0, :, 0].tolist() == [-32767, -32767, -5, 0, 32767, -32768]


@pytest.mark.parametrize("kind", ["GSA", "model"])
def test_signed_integer_inputs_keep_their_negative_values(tmp_path: Path, kind: str) -> None:
    """int16 PAN and MS = sample - 15000 (most values negative): an int16 product with the same values, nodata
    -32768; before, everything under 0 was clipped to 0 and then moved off nodata 0 to 1."""
    pan, ms = sample_pair(tmp_path / "in", lambda a: (a.astype(np.int32) - 15000).astype(np.int16))
    out = tmp_path / "out.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--bands", ",".join(BANDS),
                 *engine(tmp_path, kind))
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds, rasterio.open(ms) as src:
        data, reference, nodata = ds.read(), src.read(), ds.nodata
        assert ds.dtypes[0] == "int16"
    assert nodata == -32768
    assert (data != nodata).all()  # the MS covers the whole PAN: every pixel is valid
    assert (data < 0).mean() > 0.5 and (data == 1).mean() < 0.01
    for band, ref in zip(data, reference):  # the tiny model's random residual moves means by a few hundred DN
        coarse = band.reshape(ref.shape[0], 2, ref.shape[1], 2).mean(axis=(1, 3))
        assert abs(band.mean() - ref.mean()) < 1000 and np.corrcoef(coarse.ravel(), ref.ravel())[0, 1] > 0.5
    outputs = json.loads(out.with_suffix(".json").read_text())["outputs"]
    assert outputs["nodata"] == -32768 and outputs["value_range"] == [-32768, 32767]


# ------------------------------------------------------------------ floating point
def test_float_inputs_give_nan_nodata_not_zero(tmp_path: Path) -> None:
    """Reflectance as float32 with a NaN hole in the PAN: the output's nodata is NaN (tagged), the hole is NaN, and
    every other pixel is finite; before, nodata was 0.0, a valid reflectance."""
    def to_float(a: np.ndarray) -> np.ndarray:
        return (a / 65535.0).astype(np.float32)

    pan, ms = sample_pair(tmp_path / "in", to_float)
    with rasterio.open(pan, "r+") as ds:
        data = ds.read(1)
        data[100:140, 300:400] = np.nan
        ds.write(data, 1)
    out = tmp_path / "out.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--bands", ",".join(BANDS), "--method", "GSA")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        fused, nodata, masks = ds.read(), ds.nodata, ds.read_masks()
        assert ds.dtypes[0] == "float32" and "DDRF_BITS" not in ds.tags()  # was 'None'
    assert nodata is not None and np.isnan(nodata)
    hole = np.zeros(fused.shape[1:], bool)
    hole[100:140, 300:400] = True
    assert np.isnan(fused[:, hole]).all() and np.isfinite(fused[:, ~hole]).all()
    assert not masks[:, hole].any() and masks[:, ~hole].all()  # readers see the hole as nodata
    def strict(path: Path) -> dict:  # JSON has no NaN: a reader other than Python's would refuse the file
        return json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{path}: {name}"))

    report, item = strict(out.with_suffix(".json")), strict(out.with_suffix(".item.json"))
    assert report["status"] == "done" and report["outputs"]["nodata"] == "nan"  # STAC's spelling of NaN
    assert {band["nodata"] for band in item["assets"]["data"]["bands"]} == {"nan"}
    # the report counts a float output's valid pixels as an integer output's (row 443: it had none)
    assert report["outputs"]["clipped"]["valid_pixels"] == int(masks[0].astype(bool).sum())


def test_a_float_ms_without_nodata_does_not_take_the_pans_zero(tmp_path: Path) -> None:
    """A float MS without a nodata tag beside a PAN tagged 0: the output took the PAN's 0.0, a valid reflectance,
    and its 0.0 pixels (water in NIR) read as missing. NaN is the float output's nodata then."""
    pan, ms = sample_pair(tmp_path / "in", lambda a: (a / 65535.0).astype(np.float32))
    with rasterio.open(pan, "r+") as ds:
        ds.nodata = 0
    out = tmp_path / "out.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--bands", ",".join(BANDS), "--method", "GSA")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        assert ds.nodata is not None and np.isnan(ds.nodata)


def test_an_int64_output_keeps_its_nodata_tag(tmp_path: Path) -> None:
    """int64 inputs: the output's nodata was the type's minimum, which GDAL's tag holds as -9 (read back so: nothing
    masked, and a fused -9 would read as missing). -2^53 survives the tag."""
    pan, ms = sample_pair(tmp_path / "in", lambda a: a.astype(np.int64))
    out = tmp_path / "out.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--bands", ",".join(BANDS), "--method", "GSA")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "int64" and ds.nodata == -2.0**53


# ------------------------------------------------------------------ MS files of several types
@pytest.mark.parametrize("odd", ["int16", "uint8"])
def test_ms_band_files_of_different_types_are_refused(tmp_path: Path, odd: str) -> None:
    """Separate --ms files, NIR in another type: one line naming both files and types, exit 1, no output (before,
    the output took the first band's type: a uint16 band cut at 32767, or a uint8 band kept 0..255 in uint16)."""
    folder = tmp_path / "in"
    folder.mkdir()
    pan = write(folder / "pan.tif", *sample("B8"))
    files = []
    for band in ("B2", "B3", "B4", "B5"):
        data, profile = sample(band)
        data = (data >> 8).astype(odd) if band == "B5" else data
        files.append(write(folder / f"ms_{band}.tif", data, profile))
    out = tmp_path / "out" / "x.tif"
    result = run("--pan", str(pan), *[a for f in files for a in ("--ms", str(f))], "-o", str(out), "--method", "GSA")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if "must share one data type" in line]
    assert lines and "Traceback" not in result.output
    assert f"{files[3]}: data type is {odd} but {files[0]} is uint16" in lines[0]
    assert not out.exists() and not out.with_suffix(".json").exists()


# ------------------------------------------------------------------ 4-band uint8
@pytest.mark.parametrize("cog", [False, True])
def test_four_band_uint8_output_is_not_rgba(tmp_path: Path, cog: bool) -> None:
    """A 4-band uint8 product: grey and undefined bands named by their descriptions, not RGB + alpha (NIR)."""
    pan, ms = sample_pair(tmp_path / "in", lambda a: (a >> 7).clip(0, 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--bands", ",".join(BANDS), "--method", "GSA",
                 *(["--cog"] if cog else []))
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "uint8"
        assert ds.colorinterp == (ColorInterp.gray, *[ColorInterp.undefined] * 3)
        assert all(rasterio.enums.MaskFlags.alpha not in flags for flags in ds.mask_flag_enums)
        assert list(ds.descriptions) == BANDS
    assert not list(tmp_path.glob("*.aux.xml"))


def test_statistics_of_an_rgba_raster_raise_no_warning(tmp_path: Path) -> None:
    """A raster with an alpha band and nodata (an older output): its STAC statistics say no NodataShadowWarning,
    so stderr keeps one line per event."""
    data = np.random.default_rng(0).integers(1, 255, (4, 32, 32), dtype=np.uint8)
    profile = dict(driver="GTiff", height=32, width=32, crs="EPSG:32616",
                   transform=rasterio.transform.from_origin(500000, 4000000, 1, 1), photometric="RGB", alpha="YES")
    path = write(tmp_path / "rgba.tif", data, profile, nodata=0)
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == ColorInterp.alpha  # the case at hand
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = band_entries(path, BANDS)
    assert [w.category.__name__ for w in caught] == []
    assert [e["name"] for e in entries] == BANDS and entries[3]["statistics"]["minimum"] >= 1


# ------------------------------------------------------------------ values the output type cannot hold
def test_beyond_range_counts_valid_pixels_that_round_outside_the_range_per_band() -> None:
    values = np.array([[[-0.6, 255.4], [-0.4, 255.6], [300.0, -9.0]]])  # (1 row, 3 pixels, 2 bands)
    valid = np.array([[True, True, False]])
    assert beyond_range(values, valid, (0.0, 255.0)).tolist() == [[1, 0], [0, 1]]
    assert beyond_range(values, valid, None).tolist() == [[0, 0], [0, 0]]


def test_clipped_fused_values_are_counted_in_the_report_and_said(tmp_path: Path) -> None:
    """A uint8 pair whose brightest quarter sits at the ceiling: GSA's injected detail leaves 0..255 there. Before,
    the clipping was silent; now the report counts it per band and one line names the bands past 0.1 %."""
    pan, ms = sample_pair(tmp_path / "in", lambda a: np.clip(a // 40, 0, 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--bands", ",".join(BANDS), "--method", "GSA")
    assert result.exit_code == 0, result.output
    clipped = json.loads(out.with_suffix(".json").read_text())["outputs"]["clipped"]
    with rasterio.open(out) as ds:
        data, valid = ds.read(), ds.read_masks(1) > 0
    for i, band in enumerate(BANDS):  # a clipped pixel is written at the range's end, so at most that many
        assert clipped["above"][band] <= np.count_nonzero((data[i] == 255) & valid)
        assert clipped["below"][band] <= np.count_nonzero((data[i] <= 1) & valid)
    assert clipped["valid_pixels"] == np.count_nonzero(valid)
    assert sum(clipped["above"].values()) > 0.001 * clipped["valid_pixels"]
    said = [line for line in result.output.splitlines() if "were clipped" in line]
    assert len(said) == 1 and "0..255" in said[0] and said[0] == f"ddrf-run: out: {clipped['warnings'][0]}"
