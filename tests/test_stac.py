"""STAC out (an Item beside every GeoTIFF, valid against the STAC schemas offline; the static catalogue) and STAC in
(Landsat Collection 2 and Maxar-style Items whose COGs, made from the bundled sample scene, are served over HTTP
from 127.0.0.1 and read through /vsicurl/)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from typer.testing import CliRunner

from ddrf.scenes.command import app
from stac_fixtures import (SAMPLE, RangeHandler, http_server, landsat_item, make_cogs, maxar_item, no_network,
                           offline_validator, small_scene)

MODEL_CARD = Path(__file__).parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio2" / "card.json"


def cli(*args: str) -> "object":
    return CliRunner().invoke(app, [*args, "--no-progress"])


def validate(document: dict) -> list[str]:
    with no_network():
        return pystac.validation.validate_dict(document, validator=offline_validator())


def by_name(path: Path) -> dict[str, np.ndarray]:
    with rasterio.open(path) as ds:
        return {name: ds.read(i + 1) for i, name in enumerate(ds.descriptions)}


@pytest.fixture(scope="module")
def directory_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample scene directory through ddrf-run GSA, into a catalogue: the reference for the STAC tests."""
    root = tmp_path_factory.mktemp("dir_run")
    result = cli(str(SAMPLE), "-o", str(root / "out"), "--method", "GSA", "--stac-catalog", str(root / "catalog"))
    assert result.exit_code == 0, result.output
    return root


def test_item_beside_the_geotiff_is_valid_stac(directory_run: Path) -> None:
    raster = directory_run / "out" / f"{SAMPLE.name}.tif"
    item_file = raster.with_name(f"{SAMPLE.name}.item.json")
    document = json.loads(item_file.read_text())
    schemas = validate(document)
    assert any("item-spec/json-schema/item.json" in s for s in schemas)
    assert {s.split("/")[3] for s in schemas if "stac-extensions" in s} == {"projection", "eo", "processing"}
    props = document["properties"]
    with rasterio.open(raster) as ds:
        assert props["proj:epsg"] == ds.crs.to_epsg() == 32616
        assert props["proj:shape"] == [ds.height, ds.width] and props["proj:transform"][:6] == list(ds.transform)[:6]
        names, stats = list(ds.descriptions), ds.read(1, masked=True)
    bands = document["assets"]["data"]["bands"]
    assert [b["name"] for b in bands] == names == ["blue", "green", "red", "nir"]
    assert [b["eo:common_name"] for b in bands] == ["blue", "green", "red", "nir"]
    assert bands[0]["eo:center_wavelength"] == 0.482 and bands[3]["eo:full_width_half_max"] == 0.028  # OLI table
    assert bands[0]["data_type"] == "uint16" and bands[0]["statistics"]["maximum"] == float(stats.max())
    assert props["datetime"].startswith("2015-08-04T16:19:21")  # the MTL's acquisition time
    assert props["ddrf:datetime_source"] == "the acquisition time in the scene's metadata"
    with rasterio.open(raster) as ds:  # the footprint with its edges' bulge once in lon/lat: inside the bbox
        from rasterio.warp import transform_bounds

        footprint = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    assert all(abs(a - b) < 1e-7 for a, b in zip(document["bbox"], footprint))
    assert props["ddrf:method"] == "GSA" and props["processing:software"]["ddrf-edge"]
    assert any(p.endswith("_B8.TIF") for p in props["ddrf:inputs"])
    assert (item_file.parent / document["assets"]["data"]["href"]).resolve() == raster.resolve()
    assert (item_file.parent / document["assets"]["report"]["href"]).is_file()
    west, south, east, north = document["bbox"]
    assert -87.5 < west < east < -87.3 and 30.6 < south < north < 30.7  # the sample scene, near Pensacola

    document["assets"]["data"]["bands"][0]["eo:common_name"] = "ultraviolet"  # the check can fail
    with pytest.raises(pystac.errors.STACValidationError):
        validate(document)


def test_an_item_without_an_acquisition_time_says_whose_time_it_carries(tmp_path: Path) -> None:
    """A --pan/--ms pair without metadata: STAC needs a datetime, and it is the output file's; the Item says so
    (it looked like an acquisition time). The band files are copied without their MTL, which would date them."""
    import shutil

    (tmp_path / "in").mkdir()
    bands = [Path(shutil.copy(next(SAMPLE.glob(f"*_B{b}.TIF")), tmp_path / "in")) for b in (2, 3, 4, 5)]
    pan = shutil.copy(next(SAMPLE.glob("*_B8.TIF")), tmp_path / "in")
    result = cli("--pan", str(pan), *(a for b in bands for a in ("--ms", str(b))), "-o",
                 str(tmp_path / "pair.tif"), "--method", "GSA")
    assert result.exit_code == 0, result.output
    props = json.loads((tmp_path / "pair.item.json").read_text())["properties"]
    assert props["ddrf:datetime_source"] == "the output file's time: the inputs give no acquisition time"


@pytest.mark.parametrize("crs, pan_size", [("EPSG:4326", 0.000135), ("EPSG:2236", 15 / 0.3048006096012192)],
                         ids=["degrees", "us_feet"])
def test_the_items_gsd_is_in_metres_whatever_the_crs_unit(tmp_path: Path, crs: str, pan_size: float) -> None:
    """STAC's gsd is in metres; it was the pixel width in the CRS's unit: 0.000135 for a 15 m PAN in degrees,
    49.2 for one in US feet."""
    rng = np.random.default_rng(0)
    for name, count, side, size in (("pan", 1, 64, pan_size), ("ms", 4, 32, 2 * pan_size)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", height=side, width=side, count=count,
                           dtype="uint16", crs=crs,
                           transform=rasterio.transform.from_origin(-80.1, 26.5, size, size) if crs == "EPSG:4326"
                           else rasterio.transform.from_origin(900000, 800000, size, size)) as ds:
            ds.write(rng.uniform(4000, 16000, (count, side, side)).astype("uint16"))
    result = cli("--pan", str(tmp_path / "pan.tif"), "--ms", str(tmp_path / "ms.tif"), "-o", str(tmp_path / "x.tif"),
                 "--method", "GSA")
    assert result.exit_code == 0, result.output
    gsd = json.loads((tmp_path / "x.item.json").read_text())["properties"]["gsd"]
    assert gsd == pytest.approx(15.0, rel=0.01), gsd


def test_catalogue_links_every_output_once(directory_run: Path, tmp_path: Path) -> None:
    catalog_dir = directory_run / "catalog"
    other = small_scene(tmp_path / "small")
    for _ in range(2):  # the second run skips the finished scene and must not duplicate its link
        result = cli(str(SAMPLE), str(other), "-o", str(directory_run / "out"), "--method", "GSA",
                     "--stac-catalog", str(catalog_dir))
        assert result.exit_code == 0, result.output
    document = json.loads((catalog_dir / "catalog.json").read_text())
    validate(document)
    catalog = pystac.Catalog.from_file(str(catalog_dir / "catalog.json"))
    items = sorted(catalog.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == [SAMPLE.name, "small"]
    assert items[0].assets["data"].get_absolute_href() == str(directory_run / "out" / f"{SAMPLE.name}.tif")


def test_model_run_item_names_the_model(tmp_path: Path) -> None:
    scene = small_scene(tmp_path / "scene")
    result = cli(str(scene), "-o", str(tmp_path / "out"), "--tile", "256", "--threads", "1")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "scene.item.json").read_text())
    validate(document)
    props = document["properties"]
    assert props["ddrf:method"] == "ddrf" and props["ddrf:steps"] == json.loads(MODEL_CARD.read_text())[
        "sampling_steps"]
    assert props["ddrf:model_card_sha256"] == hashlib.sha256(MODEL_CARD.read_bytes()).hexdigest()
    staged = {f"staged_{stage}_k1.onnx" for stage in ("entry", "deep", "decoder")}  # the card's, run or not
    assert set(props["ddrf:model_hashes"]) == {"scene_k1.onnx", "sampler_k1.onnx", *staged}  # scene statistics
    assert "DDRF" in props["processing:lineage"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    cogs = make_cogs(root)
    with http_server(root) as base:
        (root / "landsat.json").write_text(json.dumps(landsat_item(cogs, ".")))  # hrefs relative to the Item URL
        (root / "maxar.json").write_text(json.dumps(maxar_item(cogs, base)))
        yield root, base


def test_stac_items_over_http_fuse_like_the_scene_directory(served, directory_run: Path, tmp_path: Path) -> None:
    """A Landsat C2 Item by URL and a Maxar-style Item by local path (its assets on the HTTP server) give, band by
    band, exactly the directory run's pixels: band identity came from eo:bands, not asset keys or order."""
    root, base = served
    RangeHandler.requests.clear()
    result = cli(f"{base}/landsat.json", str(root / "maxar.json"), "-o", str(tmp_path / "out"), "--method", "GSA")
    assert result.exit_code == 0, result.output
    reference = by_name(directory_run / "out" / f"{SAMPLE.name}.tif")
    for name in ("LC08_L1TP_020039_20150804", "maxar-style"):
        fused = by_name(tmp_path / "out" / f"{name}.tif")
        assert list(fused) == ["blue", "green", "red", "nir"]
        for band, values in reference.items():
            np.testing.assert_array_equal(fused[band], values)
    ranged = {path for path, code in RangeHandler.requests if code == "206"}  # partial reads: /vsicurl/ ranges
    assert {"/LC08_B8.TIF", "/LC08_B5.TIF", "/maxar-M1BS.tif"} <= ranged
    assert not any(p.suffix == ".TIF" for p in (tmp_path / "out").rglob("*"))  # read remotely, not downloaded
    document = json.loads((tmp_path / "out" / "LC08_L1TP_020039_20150804.item.json").read_text())
    validate(document)
    assert document["properties"]["datetime"].startswith("2015-08-04T16:19:21")
    assert document["properties"]["platform"] == "LANDSAT_8"
    assert {"rel": "derived_from", "href": f"{base}/landsat.json", "type": "application/geo+json"} in \
        document["links"]
    assert str(tmp_path / "out" / "maxar-style.tif") in result.output  # the run names its outputs


def test_a_local_item_with_encoded_hrefs_qa_nodata_and_a_time_span(tmp_path: Path) -> None:
    """Three things a real Item has that went wrong: hrefs are URIs (a space is %20; file://localhost is local), a
    QA asset declares a nodata that is not the data's (it was taken for every band), and an acquisition given as
    start_datetime/end_datetime with datetime null (the output carried its file time instead)."""
    cogs = make_cogs(tmp_path / "sp ace")
    document = landsat_item(cogs, (tmp_path / "sp ace").as_uri())
    document["assets"]["red"]["href"] = document["assets"]["red"]["href"].replace("file://", "file://localhost", 1)
    document["assets"] = {"qa_pixel": {**document["assets"].pop("qa_pixel"), "raster:bands": [{"nodata": 1}]},
                          **{k: {**a, "raster:bands": [{"nodata": 0}]} for k, a in document["assets"].items()}}
    document["properties"].update(datetime=None, start_datetime="2015-08-04T16:19:00Z",
                                  end_datetime="2015-08-04T16:20:00Z")
    item = tmp_path / "item.json"
    item.write_text(json.dumps(document))
    assert "%20" in document["assets"]["blue"]["href"]
    result = cli(str(item), "-o", str(tmp_path / "out"), "--method", "GSA")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / f"{document['id']}.tif") as ds:
        assert ds.nodata == 0  # the data bands' own declaration, not the QA band's 1
    props = json.loads((tmp_path / "out" / f"{document['id']}.item.json").read_text())["properties"]
    assert props["start_datetime"].startswith("2015-08-04T16:19:00") and props["end_datetime"].startswith(
        "2015-08-04T16:20:00")
    assert props["ddrf:datetime_source"] == "the source STAC Item's start_datetime"


def test_item_without_pan_is_a_usage_error(served, tmp_path: Path) -> None:
    root, _ = served
    item = json.loads((root / "maxar.json").read_text())
    del item["assets"]["pan_analytic"]
    path = tmp_path / "nopan.json"
    path.write_text(json.dumps(item))
    result = cli(str(path), "-o", str(tmp_path / "out"), "--method", "GSA")
    assert result.exit_code == 2 and f"{path}: no asset whose only band is pan" in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tif"))


def test_band_identity_from_stac_1_1_bands_and_eight_band_maxar() -> None:
    """STAC 1.1 `bands` with eo:common_name; an 8-band MS asset: two NIR bands become nir1/nir2 (WorldView names),
    bands come out in spectral order whatever their order in the file; non-VNIR bands are left out."""
    from ddrf.scenes.stac_in import band_sources

    commons = ["nir09", "coastal", "blue", "green", "yellow", "red", "rededge", "nir08", "swir16"]
    item = pystac.Item.from_dict({
        "type": "Feature", "stac_version": "1.1.0", "id": "wv3", "geometry": None, "properties":
        {"datetime": "2020-01-01T00:00:00Z"}, "links": [], "stac_extensions": [],
        "assets": {"pan": {"href": "https://example.invalid/P.tif", "bands": [{"name": "P", "eo:common_name": "pan"}]},
                   "ms": {"href": "https://example.invalid/M.tif",
                          "bands": [{"name": f"b{i}", "eo:common_name": c} for i, c in enumerate(commons)]}}})
    pan, ms = band_sources(item, "wv3.json")
    assert pan.href == "/vsicurl/https://example.invalid/P.tif" and pan.band == 1
    assert [b.name for b in ms] == ["coastal", "blue", "green", "yellow", "red", "red_edge", "nir1", "nir2"]
    assert [b.band for b in ms] == [2, 3, 4, 5, 6, 7, 8, 1]


def test_dry_run_on_an_item_writes_nothing_under_the_output(served, tmp_path: Path) -> None:
    """--dry-run prints the plan of an Item's scene; its band wrappers (VRTs) go to a temporary folder, not to
    OUT/.ddrf-stac, so OUT stays as it was."""
    root, _ = served
    out = tmp_path / "out"
    out.mkdir()
    result = cli(str(root / "maxar.json"), "-o", str(out), "--method", "GSA", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "maxar-style" in result.output and "1 window of" in result.output
    assert list(out.iterdir()) == []


def test_an_items_lineage_says_how_many_samples_or_views_were_averaged() -> None:
    """An --uncertainty 2 or --ensemble output's Item read like a single sample's ('1 steps')."""
    from ddrf.scenes.stac_out import processing_properties

    engine = {"kind": "model", "steps": 1, "backend": "ort-cpu", "seed": 0, "model_dir": None}
    one = processing_properties({"engine": {**engine, "samples": 1, "views": None}})
    views = processing_properties({"engine": {**engine, "samples": 4, "views": [0, 1, 2, 3]}})
    seeds = processing_properties({"engine": {**engine, "samples": 8, "views": None}})
    assert "mean" not in one["processing:lineage"] and one["ddrf:samples"] == 1
    assert "the mean of 4 views" in views["processing:lineage"] and views["ddrf:views"] == [0, 1, 2, 3]
    assert "the mean of 8 samples" in seeds["processing:lineage"] and seeds["ddrf:samples"] == 8


def test_an_items_processing_names_the_statistics_scene() -> None:
    """--statistics-from gives other pixels than the scene's own statistics: the Item says which scene's (None: its
    own), as the report does (before: absent, so the Item described the run without it)."""
    from ddrf.scenes.stac_out import processing_properties

    engine = {"kind": "model", "steps": 1, "backend": "ort-cpu", "seed": 0, "model_dir": None, "samples": 1}
    shared = processing_properties({"engine": {**engine, "statistics_from": "/data/row33"}})
    own = processing_properties({"engine": {**engine, "statistics_from": None}})
    assert shared["ddrf:statistics_from"] == "/data/row33" and own["ddrf:statistics_from"] is None
    assert "statistics of /data/row33" in shared["processing:lineage"]
    assert "statistics" not in own["processing:lineage"]


def test_an_items_spread_says_whether_it_is_calibrated(tmp_path: Path) -> None:
    """The spread map of a model whose card fits no spread (or fits it at other steps) is the raw spread, no 1-sigma
    error: the Item's spread asset and properties say which (before: 'per-pixel spread' either way, the factor and
    the calibration only in the report)."""
    from scenes_fixtures import TINY_MODEL
    from test_bad_inputs import pair

    from ddrf.scenes.stac_out import processing_properties

    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out" / "x.tif"
    result = cli("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--model", str(TINY_MODEL), "--uncertainty",
                 "2", "--threads", "1")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "x.item.json").read_text())
    validate(document)
    spread = document["assets"]["spread"]
    assert "not calibrated" in spread["description"] and "2 samples" in spread["description"], spread
    assert document["properties"]["ddrf:spread_calibrated"] is False
    assert document["properties"]["ddrf:spread_factor"] == 1.0
    with rasterio.open(tmp_path / "out" / "x_spread.tif") as ds:  # described as the data asset is (it was not)
        assert [b["name"] for b in spread["bands"]] == list(ds.descriptions) == ["blue spread", "green spread",
                                                                                   "red spread", "nir spread"]
        assert all(b["data_type"] == "float32" and b["nodata"] == "nan" for b in spread["bands"])
        assert spread["bands"][0]["statistics"]["maximum"] == float(ds.read(1, masked=True).max())
        assert not any("eo:common_name" in b for b in spread["bands"])  # a spread is no blue reflectance
    report = {"engine": {"kind": "model", "samples": 8, "views": None, "spread_factor": 18.24,
                         "spread_fitted": True}, "outputs": {"spread": "/o/x_spread.tif"}}
    assert processing_properties(report)["ddrf:spread_calibrated"] is True
    assert "ddrf:spread_factor" not in processing_properties({"engine": {"kind": "model"}, "outputs": {}})


def test_a_cog_output_is_a_cog_in_its_item(directory_run: Path, tmp_path: Path) -> None:
    """`--cog` writes Cloud Optimized GeoTIFFs, but the Item called them plain GeoTIFFs: STAC browsers and tile
    servers read an asset in place by range requests only when its type carries `profile=cloud-optimized`."""
    result = cli(str(SAMPLE), "-o", str(tmp_path / "out"), "--method", "GSA", "--cog")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / f"{SAMPLE.name}.item.json").read_text())
    validate(document)
    with rasterio.open(tmp_path / "out" / f"{SAMPLE.name}.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert document["assets"]["data"]["type"] == pystac.MediaType.COG
    plain = json.loads((directory_run / "out" / f"{SAMPLE.name}.item.json").read_text())  # no --cog: no COG said
    assert plain["assets"]["data"]["type"] == pystac.MediaType.GEOTIFF


@pytest.mark.parametrize("name, text, expected", [
    ("scene.IMD", 'BEGIN_GROUP = IMAGE_1\n\tsatId = "WV03";\n\tfirstLineTime = 2016-04-20T18:30:12.123456Z;\n'
                  "END_GROUP = IMAGE_1\n", "2016-04-20T18:30:12.123456+00:00"),
    ("DIM_PHR1A_MS_201305141054315_SEN_1.XML",
     "<Dimap_Document><Source_Identification><Strip_Source><MISSION>PLEIADES</MISSION>"
     "<IMAGING_DATE>2013-05-14</IMAGING_DATE><IMAGING_TIME>10:54:31.5Z</IMAGING_TIME></Strip_Source>"
     "</Source_Identification></Dimap_Document>", "2013-05-14T10:54:31.500000+00:00"),
    ("LC08_L1TP_020039_20150804_20200908_02_T1_MTL.xml",
     "<LANDSAT_METADATA_FILE><IMAGE_ATTRIBUTES><DATE_ACQUIRED>2015-08-04</DATE_ACQUIRED>"
     "<SCENE_CENTER_TIME>16:19:21.7917420Z</SCENE_CENTER_TIME></IMAGE_ATTRIBUTES></LANDSAT_METADATA_FILE>",
     "2015-08-04T16:19:21.791742+00:00"),
    ("LC08_L1TP_020039_20150804_20200908_02_T1_MTL.json",
     '{"LANDSAT_METADATA_FILE": {"IMAGE_ATTRIBUTES": {"DATE_ACQUIRED": "2015-08-04", '
     '"SCENE_CENTER_TIME": "16:19:21.7917420Z"}}}', "2015-08-04T16:19:21.791742+00:00"),
])
def test_the_items_datetime_is_the_acquisition_time_of_any_metadata_read(tmp_path: Path, name: str, text: str,
                                                                         expected: str) -> None:
    """The Item's datetime came from a Landsat MTL in text form only: a Maxar scene (its .IMD), a Pleiades or SPOT
    scene (its DIMAP) or a Collection 2 MTL in XML or JSON got the output file's time, said to be because the inputs
    give none, though discovery had read that very file (the report's `inputs.metadata`)."""
    from ddrf.scenes.stac_out import acquired

    metadata = tmp_path / name
    metadata.write_text(text)
    assert acquired({"inputs": {"metadata": str(metadata)}}).isoformat() == expected


def test_a_crs_without_an_epsg_code_is_given_as_wkt2(tmp_path: Path) -> None:
    """An output in a CRS with no EPSG code (a local transverse Mercator) has its CRS in the Item's `proj:wkt2`,
    which the projection extension defines as WKT2; it held GDAL's WKT1 (`PROJCS[...]`), which WKT2 readers refuse."""
    from test_bad_inputs import pair

    crs = rasterio.crs.CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=-87.3 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 "
                                      "+units=m +no_defs")
    pan, ms = pair(tmp_path / "in")
    for path in (pan, ms):
        with rasterio.open(path, "r+") as dst:
            dst.crs = crs
    result = cli("--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "out" / "x.tif"), "--method", "GSA")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "x.item.json").read_text())
    validate(document)
    props = document["properties"]
    assert props["proj:epsg"] is None and props["proj:wkt2"].startswith("PROJCRS[")
    with rasterio.open(tmp_path / "out" / "x.tif") as ds:
        assert rasterio.crs.CRS.from_wkt(props["proj:wkt2"]) == ds.crs == crs


def test_an_item_of_unnamed_bands_is_valid_stac(tmp_path: Path) -> None:
    """A scene whose bands nothing names (a hyperspectral cube, a generic MS of five bands) has no eo field on any
    band, but its Item declared the eo extension, whose schema requires one: the Item failed validation."""
    from test_bad_inputs import pair

    pan, ms = pair(tmp_path / "in", bands=5)
    result = cli("--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "out" / "x.tif"), "--method", "GSA")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "x.item.json").read_text())
    assert not any(k.startswith("eo:") for band in document["assets"]["data"]["bands"] for k in band)
    schemas = validate(document)
    assert {s.split("/")[3] for s in schemas if "stac-extensions" in s} == {"projection", "processing"}


def test_landsat_band_files_given_as_a_pair_are_dated_by_their_mtl(tmp_path: Path) -> None:
    """Landsat band files given as `--pan X_B8.TIF --ms X_B2.TIF ...`, their MTL beside them: the Item was dated by
    the output file's time, said to be because the inputs give no acquisition time."""
    bands = [SAMPLE / f"{SAMPLE.name}_B{b}.TIF" for b in (2, 3, 4, 5)]
    result = cli("--pan", str(SAMPLE / f"{SAMPLE.name}_B8.TIF"), *(a for b in bands for a in ("--ms", str(b))),
                 "-o", str(tmp_path / "x.tif"), "--method", "GSA")
    assert result.exit_code == 0, result.output
    props = json.loads((tmp_path / "x.item.json").read_text())["properties"]
    assert props["datetime"].startswith("2015-08-04T16:19:21")  # the MTL's acquisition time
    assert props["ddrf:datetime_source"] == "the acquisition time in the scene's metadata"


@pytest.mark.parametrize("crs, left, top, size", [("EPSG:4326", 179.9, 10.0, 0.2 / 128),
                                                  ("EPSG:32660", 700000, 5600000, 150),
                                                  ("EPSG:3413", -832000, 832000, 1000),
                                                  ("EPSG:3031", -64000, 64000, 1000)],
                         ids=["degrees_past_180", "utm_zone_60", "arctic_polar_stereographic", "south_pole"])
def test_an_item_across_the_antimeridian_or_a_pole_is_rfc_7946(tmp_path: Path, crs: str, left: float, top: float,
                                                                size: float) -> None:
    """RFC 7946 and STAC: longitudes in -180..180, a footprint across the antimeridian split there, its bbox with
    west > east. A geographic scene from 179.9 to 180.1 gave a footprint and bbox past 180, a UTM zone 60 scene
    split at 180 a bbox of -180..180 (every longitude), a polar stereographic scene across 180 near 80 N one ring
    jumping from -180 to 179.8; a scene around the south pole keeps its full-circle bbox and a footprint to -90."""
    rng = np.random.default_rng(0)
    for name, count, side, pixel in (("pan", 1, 128, size), ("ms", 4, 64, 2 * size)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", height=side, width=side, count=count,
                           dtype="uint16", crs=crs,
                           transform=rasterio.transform.from_origin(left, top, pixel, pixel)) as ds:
            ds.write(rng.uniform(4000, 16000, (count, side, side)).astype("uint16"))
    result = cli("--pan", str(tmp_path / "pan.tif"), "--ms", str(tmp_path / "ms.tif"), "-o", str(tmp_path / "x.tif"),
                 "--method", "GSA")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "x.item.json").read_text())
    assert validate(document)
    west, south, east, north = document["bbox"]
    geometry = document["geometry"]
    parts = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    points = np.array([point for part in parts for ring in part for point in ring])
    assert (np.abs(points[:, 0]) <= 180).all() and (np.abs(points[:, 1]) <= 90).all()
    if crs == "EPSG:3031":
        assert [west, south, east] == [-180, -90, 180] and -89.3 < north < -89 and points[:, 1].min() == -90
        return
    assert geometry["type"] == "MultiPolygon" and 175 < west < 180 and -180 < east < -175, document["bbox"]
    assert all(ring[0] == ring[-1] and len({p[0] > 0 for p in ring if abs(p[0]) != 180}) == 1
               for part in parts for ring in part)  # each part on one side of 180
    assert points[:, 0].max() == 180 and points[:, 0].min() == -180  # split at the antimeridian
    assert west == pytest.approx(points[points[:, 0] > 0, 0].min()) and east == pytest.approx(
        points[points[:, 0] < 0, 0].max())


def test_the_items_gsd_of_a_web_mercator_scene_is_its_ground_size(tmp_path: Path) -> None:
    """Row 408: a Web Mercator (EPSG:3857) pixel of 30 CRS metres at 60 N covers 15 m of ground (Mercator stretches
    by 1 / cos(latitude)); the Item's gsd said 30."""
    rng = np.random.default_rng(0)
    north = 6378137 * np.log(np.tan(np.radians(45 + 30)))  # 60 N in Web Mercator
    for name, count, side, size in (("pan", 1, 64, 30), ("ms", 4, 32, 60)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", height=side, width=side, count=count,
                           dtype="uint16", crs="EPSG:3857",
                           transform=rasterio.transform.from_origin(1000000, north + 960, size, size)) as ds:
            ds.write(rng.uniform(4000, 16000, (count, side, side)).astype("uint16"))
    result = cli("--pan", str(tmp_path / "pan.tif"), "--ms", str(tmp_path / "ms.tif"), "-o", str(tmp_path / "x.tif"),
                 "--method", "GSA")
    assert result.exit_code == 0, result.output
    gsd = json.loads((tmp_path / "x.item.json").read_text())["properties"]["gsd"]
    assert gsd == pytest.approx(15.0, rel=1e-4), gsd


def test_the_item_records_the_tile_sensor_and_bands_the_run_used(tmp_path: Path) -> None:
    """The JSON report said with which --tile, --halo, --sensor and --bands a product was made, the STAC Item did not,
    so a catalogue user could not tell two products of one scene apart. Now the Item's properties say them too."""
    from ddrf.sensors import find_sensor
    from test_bad_inputs import pair

    pan, ms = pair(tmp_path / "in")
    bands = ["nir", "red", "green", "blue"]
    result = cli("--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "b.tif"), "--method", "Brovey",
                 "--bands", ",".join(bands), "--sensor", "WorldView-3", "--tile", "48", "--halo", "8")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "b.item.json").read_text())
    report, props = json.loads((tmp_path / "b.json").read_text()), document["properties"]
    assert props["ddrf:sensor"] == find_sensor("WorldView-3").name == report["scene"]["sensor"]
    assert props["ddrf:bands"] == bands and props["ddrf:band_identity"] == "--bands"
    assert props["ddrf:tile"] == report["tiling"]["tile"] and max(props["ddrf:tile"]) <= 48
    assert props["ddrf:halo"] == 8
    validate(document)  # raises where the Item breaks a schema
