"""Scene discovery, validation and PAN/MS alignment on small real Landsat-8 files (tests/data/scenes, the sample)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.rpc import RPC

from ddrf.scenes.discover import discover_scene, name_scene, name_sensor, pair_from_paths, read_mtl, select_bands
from ddrf.scenes.errors import SceneError
from ddrf.scenes.scene import Scene
from ddrf.filters import interp23

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "ddrf/assets/sample_scene/LC80200392015216LGN00"
SID = "LC80200392015216LGN00"
SCENES = Path(__file__).parent / "data/scenes"
C1 = SCENES / "landsat8_c1/LC08_L1TP_016037_20170813_20170814_01_RT"
C1_ID = C1.name
NAMING = SCENES / "naming"
BGRN = ["blue", "green", "red", "nir"]


def rewrite(src_path: Path, dst_path: Path, data: np.ndarray | None = None, **profile: object) -> Path:
    """Copy a GeoTIFF with changed pixels or profile entries (CRS, transform, count ...)."""
    with rasterio.open(src_path) as src:
        prof, arr = src.profile, src.read() if data is None else data
    prof.update(count=arr.shape[0], **profile)
    with rasterio.open(dst_path, "w", **prof) as dst:
        dst.write(arr)
    return dst_path


def copy_scene(tmp_path: Path, source: Path = SAMPLE) -> Path:
    return Path(shutil.copytree(source, tmp_path / source.name))


def assert_one_line_naming(err: pytest.ExceptionInfo[SceneError], name: str) -> None:
    message = str(err.value)
    assert "\n" not in message and name in message, message


# ------------------------------------------------------------ discovery
def test_landsat_mtl_discovery_on_sample() -> None:
    files = discover_scene(SAMPLE)
    assert (files.scheme, files.sensor, files.name) == ("landsat-mtl", "Landsat8", SID)
    assert files.band_names == BGRN
    assert files.pan.name == f"{SID}_B8.TIF"
    assert [(p.name, b) for p, b in files.ms] == [(f"{SID}_B{n}.TIF", 1) for n in (2, 3, 4, 5)]
    assert files.bits == 16  # QUANTIZE_CAL_MAX_BAND_* = 65535 in the real MTL
    assert files.metadata == SAMPLE / f"{SID}_MTL.txt"


def test_mtl_txt_fields_and_missing_listed_files() -> None:
    meta = read_mtl(C1 / f"{C1_ID}_MTL.txt")
    assert meta["SPACECRAFT_ID"] == "LANDSAT_8" and meta["FILE_NAME_BAND_8"] == f"{C1_ID}_B8.TIF"
    files = discover_scene(C1)  # the MTL also names B1, B6.. B11, BQA: absent files outside B2-B5/B8 are fine
    assert files.name == C1_ID and files.band_names == BGRN and files.bits == 16


def test_the_mtl_form_of_before_2012(tmp_path: Path) -> None:
    """USGS's Landsat-7 MTLs before 2012 write SPACECRAFT_ID = "Landsat7" and name bands ..._B10 .. _B80: refused
    as "not a Landsat-7/8/9 MTL (SPACECRAFT_ID Landsat7)". A Landsat-5 MTL is refused for its real reason."""
    scene = tmp_path / "L71016037_03720000905"
    scene.mkdir()
    old = {2: 1, 3: 2, 4: 3, 5: 4, 8: 8}  # the sample's Landsat-8 blue..NIR, PAN as Landsat-7's bands 1-4, 8
    lines = ['GROUP = L1_METADATA_FILE', '  GROUP = PRODUCT_METADATA', '    SPACECRAFT_ID = "Landsat7"']
    for new_band, band in old.items():
        name = f"{scene.name}_B{band}0.TIF"
        shutil.copy(SAMPLE / f"{SID}_B{new_band}.TIF", scene / name)
        lines.append(f'    BAND{band}_FILE_NAME = "{name}"')
    lines += ["  END_GROUP", "  QCALMAX_BAND1 = 255.0", "END_GROUP", "END"]
    (scene / f"{scene.name}_MTL.txt").write_text("\n".join(lines) + "\n")
    found = discover_scene(scene)
    assert (found.sensor, found.band_names, found.pan.name) == ("Landsat7", BGRN, f"{scene.name}_B80.TIF")
    assert [p.name for p, _ in found.ms] == [f"{scene.name}_B{b}0.TIF" for b in (1, 2, 3, 4)]
    (scene / f"{scene.name}_MTL.txt").write_text("\n".join(lines).replace("Landsat7", "Landsat5") + "\n")
    with pytest.raises(SceneError, match="Landsat 1-5 have no panchromatic band"):
        discover_scene(scene)


def test_a_level_2_product_is_refused_for_its_reason(tmp_path: Path) -> None:
    """Collection-2 Level-2 (surface reflectance) has no PAN: it was refused as "PAN band 8 file missing"."""
    scene = copy_scene(tmp_path)
    (scene / f"{SID}_B8.TIF").unlink()
    mtl = scene / f"{SID}_MTL.txt"
    mtl.write_text(mtl.read_text().replace("GROUP = PRODUCT_METADATA", 'GROUP = PRODUCT_METADATA\n    '
                                           'PROCESSING_LEVEL = "L2SP"', 1))
    with pytest.raises(SceneError, match="Level-2 has no panchromatic band"):
        discover_scene(scene)


def test_a_tiled_pleiades_delivery_is_refused_with_advice_that_works(tmp_path: Path) -> None:
    """Pleiades PAN and MS in R1C1, R1C2 tiles: the advice was "give --pan/--ms explicitly", which takes one PAN
    file; it now says to mosaic the tiles into VRTs first (which --pan and --ms take)."""
    scene = tmp_path / "pleiades"
    scene.mkdir()
    for kind, band in (("P", "B8"), ("MS", "B2")):
        for tile in ("R1C1", "R1C2"):
            shutil.copy(SAMPLE / f"{SID}_{band}.TIF", scene / f"IMG_PHR1A_{kind}_001_{tile}.TIF")
    with pytest.raises(SceneError, match=r"the PAN is in 2 tiles .*\(gdalbuildvrt .* --pan pan.vrt --ms ms.vrt"):
        discover_scene(scene)


@pytest.mark.parametrize("form", ["xml", "json"])
def test_mtl_xml_and_json_forms(tmp_path: Path, form: str) -> None:
    meta = read_mtl(SAMPLE / f"{SID}_MTL.txt")
    meta["SPACECRAFT_ID"] = "LANDSAT_9"  # prove the file's content is what decides
    scene_dir = tmp_path / SID
    scene_dir.mkdir()
    for n in (2, 3, 4, 5, 8):
        (scene_dir / f"{SID}_B{n}.TIF").symlink_to(SAMPLE / f"{SID}_B{n}.TIF")
    if form == "xml":
        body = "".join(f"<{k}>{v}</{k}>" for k, v in meta.items())
        text = f"<LANDSAT_METADATA_FILE><PRODUCT_CONTENTS>{body}</PRODUCT_CONTENTS></LANDSAT_METADATA_FILE>"
    else:
        text = json.dumps({"LANDSAT_METADATA_FILE": {"PRODUCT_CONTENTS": meta}})
    (scene_dir / f"{SID}_MTL.{form}").write_text(text)
    files = discover_scene(scene_dir)
    assert (files.sensor, files.band_names, files.bits) == ("Landsat9", BGRN, 16)


@pytest.mark.parametrize("scheme, sensor, pan_token, bits", [
    ("maxar", "generic", "-P2AS-", 11),  # no IMD: satellite unknown; Maxar products are 11-bit
    ("pleiades", "Pleiades", "_P_", 12),
    ("gaofen", "GF2", "-PAN1", 10),
    ("generic", "generic", "_pan", None),
    ("raster", "generic", "a.tif", None),
])
def test_naming_schemes(scheme: str, sensor: str, pan_token: str, bits: int | None) -> None:
    files = discover_scene(NAMING / scheme)
    assert (files.scheme, files.sensor, files.bits) == (scheme, sensor, bits)
    assert pan_token in files.pan.name
    assert len({p for p, _ in files.ms}) == 1 and [b for _, b in files.ms] == [1, 2, 3, 4]
    assert files.band_names == BGRN
    scene = Scene(files)
    assert (scene.ratio, scene.height, scene.width) == (2, 32, 32)


@pytest.mark.parametrize("image_token, mission, sensor", [
    ("SPOT6", None, "SPOT6/7"),  # no DIMAP document: the image names say SPOT
    ("SPOT7", "SPOT", "SPOT6/7"),
    ("PHR1A", "PHR", "Pleiades"),
    ("PHR1A", "SPOT", "SPOT6/7"),  # the document wins over a renamed image
])
def test_spot_6_7_is_told_from_pleiades(tmp_path: Path, image_token: str, mission: str | None, sensor: str) -> None:
    """SPOT 6/7 deliveries share Pleiades' DIMAP format; they were labelled Pleiades (and given its band edges in
    the STAC Item)."""
    scene = tmp_path / "scene"
    scene.mkdir()
    for image in (NAMING / "pleiades").glob("IMG_*.TIF"):
        shutil.copy(image, scene / image.name.replace("PHR1A", image_token))
    if mission is not None:
        (scene / f"DIM_{image_token}_MS_001.XML").write_text(
            f"<Dimap_Document><Dataset_Sources><MISSION>{mission}</MISSION></Dataset_Sources>"
            "<Raster_Data><Raster_Display><NBITS>12</NBITS></Raster_Display><Raster_Index_List>"
            + "".join(f"<Raster_Index><BAND_ID>B{i}</BAND_ID></Raster_Index>" for i in (2, 1, 0, 3))
            + "</Raster_Index_List></Raster_Data></Dimap_Document>")
    files = discover_scene(scene)
    assert (files.scheme, files.sensor, files.bits) == ("pleiades", sensor, 12)
    assert files.band_names == (["red", "green", "blue", "nir"] if mission else BGRN)


def test_landsat_tokens_without_mtl(tmp_path: Path) -> None:
    scene_dir = copy_scene(tmp_path)
    (scene_dir / f"{SID}_MTL.txt").unlink()
    files = discover_scene(scene_dir)
    assert (files.scheme, files.sensor, files.band_names) == ("landsat", "Landsat8", BGRN)
    assert files.pan.name.endswith("_B8.TIF") and files.ms[3][0].name.endswith("_B5.TIF")


def test_a_band_file_the_mtl_names_is_never_replaced_by_another_scenes(tmp_path: Path) -> None:
    """The MTL's red file absent: red is missing (said and recorded), not the one other *_B4 in the folder, which
    was taken silently (another date's scene, or a Level-2 SR_B4 beside the Level-1 files)."""
    scene = copy_scene(tmp_path)
    (scene / f"{SID}_B4.TIF").rename(scene / "LC08_L2SP_020039_20150804_SR_B4.TIF")
    found = discover_scene(scene)
    assert "red" not in found.band_names and "red" in found.missing
    assert all("SR_B4" not in path.name for path, _ in found.ms)


def test_two_scenes_in_one_flat_folder_are_refused(tmp_path: Path) -> None:
    """Two downloads extracted into one folder: only the first was fused, without a word."""
    scene = copy_scene(tmp_path)
    for path in list(scene.iterdir()):
        shutil.copy(path, scene / path.name.replace(SID, "LC80200392015232LGN00"))
    with pytest.raises(SceneError, match="several scenes"):
        discover_scene(scene)


def test_without_an_mtl_competing_band_files_are_told_apart_or_refused(tmp_path: Path) -> None:
    """An angle band named ..._SENSOR_AZIMUTH_B04 beside ..._B4: the scene's own red (the PAN's scene id) is taken;
    a gap_mask/ copy of every band: refused, naming the files (the last in sorted order used to win)."""
    scene = copy_scene(tmp_path)
    (scene / f"{SID}_MTL.txt").unlink()
    shutil.copy(scene / f"{SID}_B4.TIF", scene / f"{SID}_SENSOR_AZIMUTH_B04.TIF")
    found = discover_scene(scene)
    assert dict(zip(found.band_names, (p.name for p, _ in found.ms)))["red"] == f"{SID}_B4.TIF"
    (scene / "gap_mask").mkdir()
    for band in ("B2", "B3", "B4", "B5", "B8"):
        shutil.copy(scene / f"{SID}_{band}.TIF", scene / "gap_mask" / f"{SID}_GM_{band}.TIF")
    with pytest.raises(SceneError, match="several files for Landsat band 8 .*gap_mask"):
        discover_scene(scene)


def test_macos_copy_litter_is_not_part_of_the_scene(tmp_path: Path) -> None:
    """AppleDouble ._X files beside every file and a __MACOSX/ folder (a copy from a Mac to a FAT drive, or its
    zip): the scene discovered as without them (they broke every scheme: a ._X_MTL.txt was read as the MTL)."""
    clean = discover_scene(SAMPLE)
    scene = copy_scene(tmp_path)
    (scene / "__MACOSX").mkdir()
    for path in sorted(scene.glob("*.*")):
        litter = b"\x00\x05\x16\x07" + bytes(4092)
        (scene / f"._{path.name}").write_bytes(litter)
        (scene / "__MACOSX" / f"._{path.name}").write_bytes(litter)
    found = discover_scene(scene)
    assert found.band_names == clean.band_names and found.pan.name == clean.pan.name
    assert [p.name for p, _ in found.ms] == [p.name for p, _ in clean.ms]


def test_select_bands_reorders_and_names_what_is_missing(tmp_path: Path) -> None:
    files = discover_scene(SAMPLE)
    picked = select_bands(files, ["NIR", "red"])
    assert picked.band_names == ["nir", "red"] and [p.name[-6:] for p, _ in picked.ms] == ["B5.TIF", "B4.TIF"]
    with pytest.raises(SceneError, match="needs bands blue, green, red, nir, coastal; the scene has blue"):
        select_bands(files, BGRN + ["coastal"])
    scene_dir = copy_scene(tmp_path)
    (scene_dir / f"{SID}_B4.TIF").unlink()
    with pytest.raises(SceneError) as err:
        Scene.from_directory(scene_dir, bands=BGRN)
    assert_one_line_naming(err, f"{SID}_B4.TIF")
    assert "band red missing" in str(err.value)


def test_pair_from_paths() -> None:
    files = pair_from_paths(SAMPLE / f"{SID}_B8.TIF", [SAMPLE / f"{SID}_B{n}.TIF" for n in (4, 3, 2)])
    assert (files.sensor, files.band_names) == ("Landsat8", ["red", "green", "blue"])
    generic = pair_from_paths(NAMING / "generic/site_pan.tif", NAMING / "generic/site_ms.tif")
    assert len(generic.ms) == 4 and generic.names_assumed
    assert Scene(generic).ratio == 2


def test_band_files_named_b1_to_b4_beside_a_plain_pan_are_no_landsat(tmp_path: Path) -> None:
    """`--pan pan.tif --ms ms_b1.tif ... --ms ms_b4.tif`, each band file describing its band: they were taken for
    Landsat-8 bands 1-4 (coastal, blue, green, red), the file's own names ignored and nothing said."""
    for k, name in enumerate(BGRN):
        band = rewrite(SAMPLE / f"{SID}_B{k + 2}.TIF", tmp_path / f"ms_b{k + 1}.tif")
        with rasterio.open(band, "r+") as dst:
            dst.set_band_description(1, name)
    pan = Path(shutil.copy(SAMPLE / f"{SID}_B8.TIF", tmp_path / "pan.tif"))
    files = pair_from_paths(pan, [tmp_path / f"ms_b{k}.tif" for k in range(1, 5)])
    assert (files.sensor, files.band_names) == ("generic", BGRN)


def test_sensor_option_sets_the_sensor_and_names_unnamed_bands_by_count(tmp_path: Path) -> None:
    """--sensor (any alias) sets the sensor; bands nothing named get the sensor's names for that count, still marked
    as an assumed order; bands named by metadata keep their names; a count the sensor has no names for is refused
    with one line naming the MS file and --bands."""
    pan, ms = NAMING / "generic/site_pan.tif", NAMING / "generic/site_ms.tif"
    generic = pair_from_paths(pan, ms)
    pleiades = name_sensor(generic, "Pleiades-1A")
    assert (pleiades.sensor, pleiades.band_names) == ("Pleiades", BGRN)
    assert pleiades.names_assumed and "--sensor Pleiades" in pleiades.band_source
    with rasterio.open(ms) as src:
        four = src.read()
    seven = rewrite(ms, tmp_path / "ms7.tif", data=np.concatenate([four, four[:3]]))
    landsat = name_sensor(pair_from_paths(pan, seven), "landsat-8")
    assert landsat.band_names == ["coastal", "blue", "green", "red", "nir", "swir1", "swir2"]
    assert landsat.sensor == "Landsat8"
    sample = discover_scene(SAMPLE)
    relabelled = name_sensor(sample, "WorldView-3")
    assert relabelled.sensor == "WV3" and relabelled.band_names == sample.band_names  # the MTL named them
    with pytest.raises(ValueError, match=r"site_ms.tif: --sensor WV3 names 8 MS bands but the MS has 4; "
                                         r"name them with --bands"):
        name_sensor(generic, "WV03")


def test_bands_named_by_the_bands_option_take_a_sensor_of_another_band_count(tmp_path: Path) -> None:
    """--bands with --sensor: the bands are the ones --bands names, whatever count the sensor's names have (before:
    `--sensor WV3 names 8 MS bands but the MS has 4; name them with --bands`, though --bands named them)."""
    pan, ms = NAMING / "generic/site_pan.tif", NAMING / "generic/site_ms.tif"
    named = name_scene(pair_from_paths(pan, ms), "WorldView-3", ["Red", "green", "blue", "nir"])
    assert (named.sensor, named.band_names, named.names_assumed) == ("WV3", ["red", "green", "blue", "nir"], False)
    assert named.band_source == "--bands"


def test_sensor_option_through_ddrf_run(tmp_path: Path) -> None:
    """An unknown --sensor is a usage error listing the known ones; a known one reaches the report (sensor, band
    names and where they came from) and the classical method's MTF."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    pan, ms = NAMING / "generic/site_pan.tif", NAMING / "generic/site_ms.tif"
    args = ["--pan", str(pan), "--ms", str(ms), "--method", "MTF-GLP-HPM", "--no-progress"]
    bad = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "bad.tif"), "--sensor", "Landsat-99"])
    assert bad.exit_code == 2 and "--sensor: unknown sensor 'Landsat-99'; known: " in bad.output
    assert not (tmp_path / "bad.tif").exists()
    outputs = {}
    for sensor in ("Pleiades", "GeoEye-1"):
        out = tmp_path / f"{sensor}.tif"
        result = CliRunner().invoke(app, [*args, "-o", str(out), "--sensor", sensor])
        assert result.exit_code == 0, result.output
        report = json.loads(out.with_suffix(".json").read_text())
        assert report["scene"]["sensor"] == sensor and report["scene"]["band_names"] == BGRN
        assert report["inputs"]["band_identity"].startswith(f"--sensor {sensor}")
        with rasterio.open(out) as fused:
            outputs[sensor] = fused.read().astype(np.int64)
    assert np.abs(outputs["Pleiades"] - outputs["GeoEye-1"]).max() > 0  # their MTF gains differ


def test_a_sensor_of_another_ratio_than_the_scene_is_said(tmp_path: Path) -> None:
    """--sensor WorldView-3 (ratio 4) on a ratio-2 pair: fused with its MTF gains and recorded as WV3 as asked, but
    said in one line naming the MS and both ratios, also in the report (before: silent); a sensor of the scene's
    ratio, and the generic one, say nothing."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    pan, ms = NAMING / "generic/site_pan.tif", NAMING / "generic/site_ms.tif"
    lines = {}
    for sensor in ("WorldView-3", "Landsat8", None):
        out = tmp_path / f"{sensor}.tif"
        result = CliRunner().invoke(app, ["--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "GSA",
                                          "--bands", "blue,green,red,nir", "--no-progress",
                                          *(["--sensor", sensor] if sensor else [])])
        assert result.exit_code == 0, result.output
        lines[sensor] = [line for line in result.output.splitlines() if "a ratio-" in line]
        warnings = json.loads(out.with_suffix(".json").read_text())["inputs"]["warnings"]
        assert [w for w in warnings if "a ratio-" in w] == [line.removeprefix("ddrf-run: ") for line in lines[sensor]]
    assert len(lines["WorldView-3"]) == 1 and lines["Landsat8"] == lines[None] == []
    said = lines["WorldView-3"][0]
    assert str(ms) in said and "ratio 2" in said and "WV3 is a ratio-4 sensor" in said, said


def test_sensor_option_gives_a_landsat_pair_its_zero_collar_as_nodata(tmp_path: Path) -> None:
    """pan.tif + ms.tif cut from the sample with a zero collar on the left (as Landsat scenes have, untagged): read as
    generic files the zeros are data and get fused; with --sensor Landsat8 they are nodata, as in the Landsat folder."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    pan = rewrite(SAMPLE / f"{SID}_B8.TIF", tmp_path / "pan.tif")
    with rasterio.open(pan, "r+") as dst:
        data = dst.read(1)
        data[:, :32] = 0
        dst.write(data, 1)
    with rasterio.open(SAMPLE / f"{SID}_B2.TIF") as src:
        profile = src.profile
    bands = []
    for n in (2, 3, 4, 5):
        with rasterio.open(SAMPLE / f"{SID}_B{n}.TIF") as src:
            band = src.read(1)
        band[:, :16] = 0
        bands.append(band)
    ms = tmp_path / "ms.tif"
    with rasterio.open(ms, "w", **{**profile, "count": 4}) as dst:
        dst.write(np.stack(bands))
    valid = {}
    for label, extra in (("generic", []), ("landsat", ["--sensor", "Landsat8"])):
        out = tmp_path / f"{label}.tif"
        result = CliRunner().invoke(app, ["--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "EXP",
                                          "--no-progress", *extra])
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as fused:
            valid[label] = fused.read_masks(1) > 0
    assert valid["generic"][:, :32].all()  # zeros taken as data
    assert not valid["landsat"][:, :32].any() and valid["landsat"][:, 40:].all()  # the collar is nodata


# ------------------------------------------------------------ alignment
def _lsq_corr(pan: np.ndarray, lms: np.ndarray) -> float:
    design = np.c_[lms.reshape(-1, lms.shape[-1]), np.ones(pan.size)]
    coef, *_ = np.linalg.lstsq(design, pan.ravel(), rcond=None)
    return float(np.corrcoef(design @ coef, pan.ravel())[0, 1])


def test_sample_alignment_peaks_at_zero_shift() -> None:
    """PAN vs a band-weighted interp23(MS): correlation is highest unshifted and the sub-pixel peak is near 0."""
    scene = Scene.from_directory(SAMPLE)
    assert (scene.height, scene.width, scene.rows.start, scene.rows.base, scene.rows.frac) == (256, 512, 0, 0, 0.0)
    pan, ms, valid = scene.read_pair(0, 0, 256, 256)
    assert valid.all()
    lms, m = interp23(ms, 2, border="symmetric"), 8
    corr = {(dy, dx): _lsq_corr(pan[m:-m, m:-m], lms[m + dy:256 - m + dy, m + dx:256 - m + dx])
            for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert max(corr, key=corr.get) == (0, 0) and corr[(0, 0)] > 0.9
    for lo, hi in ((corr[(-1, 0)], corr[(1, 0)]), (corr[(0, -1)], corr[(0, 1)])):
        peak = 0.5 * (lo - hi) / (lo - 2 * corr[(0, 0)] + hi)  # parabola through shifts -1, 0, +1
        assert abs(peak) < 0.25


def test_product_geometry_is_cropped_by_one_pan_pixel(tmp_path: Path) -> None:
    """A full Landsat product: PAN origin half a PAN pixel down-right of the MS origin, PAN 2N-1 wide."""
    scene_dir = copy_scene(tmp_path)
    pan_path = scene_dir / f"{SID}_B8.TIF"
    with rasterio.open(SAMPLE / f"{SID}_B8.TIF") as src:
        full, transform = src.read(1).astype(np.float64), src.transform
    rewrite(SAMPLE / f"{SID}_B8.TIF", pan_path, full[None, 1:, 1:].astype(np.uint16),
            height=255, width=511, transform=transform @ Affine.translation(1, 1))
    scene = Scene.from_directory(scene_dir)
    assert (scene.rows.start, scene.rows.base, scene.rows.frac, scene.height, scene.width) == (1, 1, 0.0, 254, 510)
    assert scene.transform == transform @ Affine.translation(2, 2)
    pan, ms, _ = scene.read_pair(0, 0, 128, 128)
    _, ms_orig, _ = Scene.from_directory(SAMPLE).read_pair(2, 2, 128, 128)
    np.testing.assert_array_equal(pan, full[2:130, 2:130])
    np.testing.assert_array_equal(ms, ms_orig)  # the same MS samples sit under the same PAN pixels


def test_windows_outside_the_scene_are_reflected_and_invalid() -> None:
    scene = Scene.from_directory(SAMPLE)
    pan, ms, valid = scene.read_pair(-16, 480, 64, 64)  # 16 rows above, 32 columns right of the grid
    assert pan.shape == (64, 64) and ms.shape == (32, 32, 4) and valid.shape == (64, 64)
    assert not valid[:16].any() and not valid[:, 32:].any() and valid[16:, :32].all()
    np.testing.assert_array_equal(pan[:16, :32], pan[31:15:-1, :32])  # half-sample mirror at the top edge
    inner_pan, inner_ms, _ = scene.read_pair(0, 480, 32, 32)
    np.testing.assert_array_equal(pan[16:48, :32], inner_pan)
    np.testing.assert_array_equal(ms[8:24, :16], inner_ms)
    far_pan, _, far_valid = scene.read_pair(1000, 2000, 8, 8)
    assert np.isfinite(far_pan).all() and not far_valid.any()
    with pytest.raises(ValueError, match="multiples of ratio 2"):
        scene.read_pair(1, 0, 8, 8)


def test_collar_nodata_and_fractional_alignment() -> None:
    """Real C1 crop with a 0 collar; its shrunk grid leaves a 0.26 MS-pixel offset, resampled by cubic convolution."""
    scene = Scene.from_directory(C1)
    assert scene.pan_nodata == 0 and scene.ms_nodata == 0
    assert scene.rows.start == 0 and scene.rows.base == 0 and scene.rows.frac == pytest.approx(0.258333, abs=1e-5)
    pan, ms, valid = scene.read_pair(0, 0, 48, 48)
    with rasterio.open(C1 / f"{C1_ID}_B8.TIF") as src:
        raw = src.read(1).astype(np.float64)
    assert not valid[raw[:48, :48] == 0].any()
    assert 0.2 < valid.mean() < 0.9
    assert (pan > 0).all() and (ms > 0).all()  # collar filled from valid neighbours, not left at 0
    np.testing.assert_array_equal(pan[valid], raw[:48, :48][valid])
    # Tiles agree away from nodata: a sub-window equals the same part of a larger read.
    sub_pan, sub_ms, sub_valid = scene.read_pair(24, 24, 24, 24)
    np.testing.assert_array_equal(sub_valid, valid[24:, 24:])
    np.testing.assert_allclose(sub_ms[2:-2, 2:-2], ms[14:-2, 14:-2], rtol=1e-12)


# ------------------------------------------------------------ bad inputs
def test_empty_and_missing_directories(tmp_path: Path) -> None:
    with pytest.raises(SceneError) as err:
        discover_scene(tmp_path)
    assert_one_line_naming(err, str(tmp_path))
    with pytest.raises(SceneError, match="no such directory"):
        discover_scene(tmp_path / "nope")


def test_crs_mismatch(tmp_path: Path) -> None:
    scene_dir = copy_scene(tmp_path)
    rewrite(SAMPLE / f"{SID}_B3.TIF", scene_dir / f"{SID}_B3.TIF", crs="EPSG:32617")
    with pytest.raises(SceneError) as err:
        Scene.from_directory(scene_dir)
    assert_one_line_naming(err, f"{SID}_B3.TIF")
    assert "32617" in str(err.value) and "32616" in str(err.value)


def test_truncated_and_unreadable_files(tmp_path: Path) -> None:
    scene_dir = copy_scene(tmp_path)
    band = scene_dir / f"{SID}_B8.TIF"
    band.write_bytes(band.read_bytes()[: band.stat().st_size // 2])
    with pytest.raises(SceneError) as err:
        Scene.from_directory(scene_dir)
    assert_one_line_naming(err, f"{SID}_B8.TIF")
    assert "truncated" in str(err.value)
    (scene_dir / f"{SID}_B4.TIF").write_bytes(b"not a tiff at all")
    shutil.copy(SAMPLE / f"{SID}_B8.TIF", band)
    with pytest.raises(SceneError) as err:
        Scene.from_directory(scene_dir)
    assert_one_line_naming(err, f"{SID}_B4.TIF")


def test_wrong_band_counts(tmp_path: Path) -> None:
    scene_dir = copy_scene(tmp_path)
    with rasterio.open(SAMPLE / f"{SID}_B2.TIF") as src:
        two = np.concatenate([src.read()] * 2)
    rewrite(SAMPLE / f"{SID}_B2.TIF", scene_dir / f"{SID}_B2.TIF", two)
    with pytest.raises(SceneError, match="Landsat band file has 2 bands, expected 1") as err:
        Scene.from_directory(scene_dir)
    assert_one_line_naming(err, f"{SID}_B2.TIF")
    gaofen = copy_scene(tmp_path, NAMING / "gaofen")
    mss = next(gaofen.glob("*MSS1*"))
    with rasterio.open(mss) as src:
        three = src.read()[:3]
    rewrite(NAMING / "gaofen" / mss.name, mss, three)
    with pytest.raises(SceneError, match="gaofen MS has 3 bands, expected 4") as err:
        discover_scene(gaofen)
    assert_one_line_naming(err, mss.name)


def test_pan_with_two_bands(tmp_path: Path) -> None:
    generic = copy_scene(tmp_path, NAMING / "generic")
    with rasterio.open(generic / "site_pan.tif") as src:
        two = np.concatenate([src.read()] * 2)
    rewrite(NAMING / "generic/site_pan.tif", generic / "site_pan.tif", two)
    with pytest.raises(SceneError, match="PAN file has 2 bands, expected 1") as err:
        discover_scene(generic)
    assert_one_line_naming(err, "site_pan.tif")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_rpc_only_inputs(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="RPC-only") as err:
        Scene.from_directory(NAMING / "maxar_l1b")
    assert_one_line_naming(err, "-P1BS-")
    generic = copy_scene(tmp_path, NAMING / "generic")
    with rasterio.open(generic / "site_ms.tif") as src:
        profile, data = src.profile, src.read()
    profile.update(crs=None, transform=Affine.identity())
    rpc = RPC(height_off=100, height_scale=500, lat_off=30.6, lat_scale=0.1, line_den_coeff=[1] + [0] * 19,
              line_num_coeff=[0, 0, -1] + [0] * 17, line_off=8, line_scale=8, long_off=-87.4, long_scale=0.1,
              samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18, samp_off=8, samp_scale=8)
    (generic / "site_ms.tif").unlink()
    with rasterio.open(generic / "site_ms.tif", "w", **profile) as dst:
        dst.write(data)
        dst.rpcs = rpc
    with pytest.raises(SceneError, match="RPC-only GeoTIFF") as err:
        Scene.from_directory(generic)
    assert_one_line_naming(err, "site_ms.tif")


def test_non_integer_ratio(tmp_path: Path) -> None:
    generic = copy_scene(tmp_path, NAMING / "generic")
    with rasterio.open(generic / "site_ms.tif") as src:
        t = src.transform
    rewrite(NAMING / "generic/site_ms.tif", generic / "site_ms.tif", transform=Affine(25, 0, t.c, 0, -25, t.f))
    with pytest.raises(SceneError, match="not one integer") as err:
        Scene.from_directory(generic)
    assert_one_line_naming(err, "site_ms.tif")


# ------------------------------------------------------------ one sensor vocabulary
RUNNABLE_FIXTURES = [C1, *(NAMING / s for s in ("maxar", "pleiades", "gaofen", "generic", "raster"))]


def test_every_sensor_discovery_names_is_in_the_sensor_table(tmp_path: Path) -> None:
    """Discovery only produces names the baselines, training and evaluation accept (get_sensor)."""
    from ddrf.sensors import get_sensor

    maxar = Path(shutil.copytree(NAMING / "maxar", tmp_path / "maxar"))
    for sat_id, expected in (("WV02", "WV2"), ("WV03", "WV3"), ("QB02", "QB"), ("GE01", "GeoEye-1"),
                             ("IK01", "IKONOS"), ("XX09", "generic")):
        (maxar / "scene.IMD").write_text(f'BEGIN_GROUP = IMAGE_1\n\tsatId = "{sat_id}";\nEND_GROUP = IMAGE_1\n')
        assert discover_scene(maxar).sensor == expected
    for directory in [SAMPLE, *RUNNABLE_FIXTURES]:
        name = discover_scene(directory).sensor
        assert get_sensor(name).name == name, directory


@pytest.mark.parametrize("method", ["EXP", "Brovey", "BT-H", "GSA", "BDSD-PC", "MTF-GLP-FS", "MTF-GLP-HPM",
                                    "GSA-gauss", "BDSD-PC-unitdc", "MTF-GLP-FS-unitdc", "MTF-GLP-HPM-robust"])
def test_every_discovery_fixture_runs_every_classical_method(method: str, tmp_path: Path) -> None:
    """`ddrf-run FIXTURES... --method M` fuses every fixture (once failed: "unknown sensor 'Pleiades'")."""
    from typer.testing import CliRunner

    from ddrf.baselines import ALL_METHODS
    from ddrf.scenes.command import app

    assert method in ALL_METHODS
    result = CliRunner().invoke(app, [*map(str, RUNNABLE_FIXTURES), "-o", str(tmp_path), "--method", method,
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "ddrf-run-summary.json").read_text())
    assert summary["counts"]["done"] == len(RUNNABLE_FIXTURES), summary
    for directory in RUNNABLE_FIXTURES:
        name = discover_scene(directory).name
        with rasterio.open(tmp_path / f"{name}.tif") as out:
            fused = out.read().astype(np.float64)
        assert fused.shape[0] == 4 and np.isfinite(fused).all() and fused.max() > 0, (method, name)


# ------------------------------------------------------------ one geometry for ddrf-run and training
def nested_copy(tmp_path: Path) -> Path:
    """The generic fixture with its MS origin moved onto the PAN origin (nested grids, as Maxar/Pleiades): the MS
    must then be resampled by a quarter MS pixel (half a PAN pixel) onto the interp23 grid."""
    scene_dir = Path(shutil.copytree(NAMING / "generic", tmp_path / "nested"))
    with rasterio.open(scene_dir / "site_pan.tif") as pan:
        pan_t = pan.transform
    ms_path = scene_dir / "site_ms.tif"
    with rasterio.open(ms_path) as ms:
        ms_t = ms.transform
    rewrite(ms_path, tmp_path / "moved.tif", transform=Affine(ms_t.a, 0, pan_t.c, 0, ms_t.e, pan_t.f))
    shutil.move(tmp_path / "moved.tif", ms_path)
    return scene_dir


@pytest.mark.parametrize("which", ["sample", "c1", "nested"])
def test_training_pair_and_ddrf_run_window_are_the_same_arrays(which: str, tmp_path: Path) -> None:
    """read_geotiff_pair (training, evaluation) and Scene.read_pair (ddrf-run) share ddrf.geometry: same pixels."""
    from ddrf.data import read_geotiff_pair

    directory = {"sample": SAMPLE, "c1": C1, "nested": None}[which] or nested_copy(tmp_path)
    files = discover_scene(directory)
    scene = Scene(files)
    ms_files = list(dict.fromkeys(p for p, _ in files.ms))
    pair = read_geotiff_pair(files.pan, ms_files, sensor=files.sensor, bits=16)
    pan, ms, _ = scene.read_pair(0, 0, *pair.pan.shape)
    np.testing.assert_array_equal(pair.pan, pan)
    np.testing.assert_array_equal(pair.ms, ms)
    assert pair.pan_transform == scene.transform
    assert pair.pan.shape == (scene.height - scene.height % 2, scene.width - scene.width % 2)
    if which == "nested":
        assert scene.rows.frac == scene.cols.frac == 0.25  # the resampled path, not an index shift
        with rasterio.open(ms_files[0]) as src:
            raw = src.read(1).astype(np.float64)
        assert not np.array_equal(pair.ms[..., 0], raw[: pair.ms.shape[0], : pair.ms.shape[1]])


def test_landsat_directories_expose_every_reflective_band_and_get_the_model_using_most(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """B1 (coastal) and B6/B7 (SWIR) beside B2-B5 and B8: discovery names all seven in band-number order, the bundled
    choice takes the six-band model (coastal has none), and the same folder without them still gets the four-band
    one. (The extra bands are copies of B2 on the same grid: only the names matter here.)"""
    from typer.testing import CliRunner

    from ddrf.bundled import FOLDER_VARIABLE
    from ddrf.scenes.command import app

    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    scene_dir = copy_scene(tmp_path)
    for extra in (1, 6, 7):
        shutil.copy(scene_dir / f"{SID}_B2.TIF", scene_dir / f"{SID}_B{extra}.TIF")
    files = discover_scene(scene_dir)
    assert files.band_names == ["coastal", *BGRN, "swir1", "swir2"]
    assert [p.name[-6:] for p, _ in files.ms] == [f"B{n}.TIF" for n in (1, 2, 3, 4, 5, 6, 7)]
    planned = CliRunner().invoke(app, [str(scene_dir), "-o", str(tmp_path / "out"), "--dry-run"])
    assert planned.exit_code == 0 and "model landsat_ratio2_band_wise" in planned.output, planned.output
    planned = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--dry-run"])
    assert planned.exit_code == 0 and "model landsat_ratio2 (" in planned.output, planned.output


def test_a_symlinked_sub_folder_is_followed_once(tmp_path: Path) -> None:
    """A staging area that links a delivery's folder into the scene folder: its files were not seen ('no raster
    files'). A link back up the tree is read once, not looped over."""
    real = copy_scene(tmp_path / "store")
    scene = tmp_path / "scene"
    scene.mkdir()
    (scene / "bands").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(scene, target_is_directory=True)
    files = discover_scene(scene)
    assert (files.scheme, files.sensor, files.band_names) == ("landsat-mtl", "Landsat8", BGRN)
    assert files.pan.parent == scene / "bands"


def test_bands_contradicting_the_scenes_own_band_names_are_refused(tmp_path: Path) -> None:
    """`--bands red,green,blue,nir` on a Landsat scene, whose MTL and file names say blue, green, red, nir: the
    output's bands were relabelled (blue data named red, with red's wavelength in the STAC Item, and fed to the
    model as red), silently. Refused with one line naming the file; names that agree still run."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    sample = Path(__file__).parents[1] / "ddrf/assets/sample_scene/LC80200392015216LGN00"
    args = [str(sample), "-o", str(tmp_path / "out"), "--method", "GSA", "--no-progress", "--bands"]
    result = CliRunner().invoke(app, [*args, "red,green,blue,nir"])
    assert result.exit_code == 1, result.output
    said = [line for line in result.output.splitlines() if "--bands names" in line]
    assert said and all(f"{sample.name}_B2.TIF: --bands names band 1 red, but its landsat-mtl naming and metadata "
                        "name it blue" in line for line in said), result.output
    assert not (tmp_path / "out" / f"{sample.name}.tif").exists()
    agreeing = CliRunner().invoke(app, [*args, "Blue,green,red,nir"])
    assert agreeing.exit_code == 0, agreeing.output
    with rasterio.open(tmp_path / "out" / f"{sample.name}.tif") as ds:
        assert ds.descriptions == ("blue", "green", "red", "nir")


@pytest.mark.parametrize("pan_crs", ["EPSG:32616", "EPSG:4326"], ids=["pan_in_metres", "pan_in_degrees"])
def test_a_folder_of_rasters_in_two_crss_says_so(tmp_path: Path, pan_crs: str) -> None:
    """Row 404: PAN and MS told apart by pixel size: a 15 m PAN beside an MS in degrees (0.00027) was `cannot tell
    PAN from MS`, the degrees taken for the finer grid; now the folder's two CRSs are named, whichever has the PAN."""
    grids = {"EPSG:32616": Affine(15, 0, 500000, 0, -15, 4000000),
             "EPSG:4326": Affine(0.000165, 0, -87, 0, -0.000135, 36.14)}
    ms_crs = next(crs for crs in grids if crs != pan_crs)
    for name, count, side, crs, transform in (("scene_a", 1, 64, pan_crs, grids[pan_crs]),
                                              ("scene_b", 4, 32, ms_crs, grids[ms_crs] @ Affine.scale(2))):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", height=side, width=side, count=count,
                           dtype="uint16", crs=crs, transform=transform) as dst:
            dst.write(np.full((count, side, side), 5000, dtype="uint16"))
    with pytest.raises(SceneError, match=rf"rasters are in different CRSs \(scene_a.tif {pan_crs}, scene_b.tif "
                                         rf"{ms_crs}\), so their pixel sizes cannot tell PAN from MS; warp") as err:
        discover_scene(tmp_path)
    assert_one_line_naming(err, tmp_path.name)
