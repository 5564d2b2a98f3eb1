"""Without --model, ddrf-run (and ddrf.fuse / ddrf.fuse_scene) gives each scene the bundled model of its ratio and
bands, names it in the report and the log line, and refuses a scene no bundled model fits with one line naming what
would work. The bundled folder here is a temporary one (DDRF_BUNDLED_MODELS) holding the committed tiny model twice:
as it is (ratio 2) and with its cards saying ratio 4 (card.json and the card in each graph's metadata)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from ddrf.bundled import FOLDER_VARIABLE, BundledModel, NoFittingModel, bundled_models, choose_model
from ddrf.card import ModelCard, read_card
from ddrf.model_dir import CARD_METADATA_KEY, CARD_NAME, ModelDir, write_model_dir
from ddrf.scenes.command import SUMMARY_NAME, app
from ddrf.sensors import WV8
from scenes_fixtures import BANDS, TINY_MODEL

ROOT = Path(__file__).parents[1]
PAN_METRES = 15


def bundled_copy(folder: Path, name: str, ratio: int) -> Path:
    """The tiny model under `name`, its cards' ratio set to `ratio`: card.json's and each graph's own (the runtime
    refuses a card.json that contradicts its graphs)."""
    card = replace(read_card(TINY_MODEL / CARD_NAME), ratio=ratio, hashes={})
    graphs = {}
    for path in sorted(TINY_MODEL.glob("*.onnx")):
        graph = onnx.load(str(path))
        next(e for e in graph.metadata_props if e.key == CARD_METADATA_KEY).value = card.to_json()
        graphs[path.stem] = graph.SerializeToString()
    write_model_dir(folder / name, card, graphs)
    return folder / name


@pytest.fixture()
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bundled"
    bundled_copy(folder, "tiny_ratio2", 2)
    bundled_copy(folder, "tiny_ratio4", 4)
    (folder / "README.md").write_text("not a model\n")
    monkeypatch.setenv(FOLDER_VARIABLE, str(folder))
    return folder


def write_tif(path: Path, data: np.ndarray, metres: int) -> None:
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype="uint16", crs="EPSG:32616", transform=from_origin(500000, 4000000, metres, metres)) as dst:
        dst.write(data.astype("uint16"))


def scene(folder: Path, ratio: int, size: int = 48) -> Path:
    """A generic scene directory (pan.tif, ms.tif: 4 bands, assumed blue, green, red, nir) at `ratio`."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(ratio)
    write_tif(folder / "pan.tif", rng.uniform(4000, 16000, (size, size)), PAN_METRES)
    write_tif(folder / "ms.tif", rng.uniform(4000, 16000, (4, size // ratio, size // ratio)), PAN_METRES * ratio)
    return folder


def run(*args: str) -> "object":
    return CliRunner().invoke(app, [*args, "--no-progress", "--threads", "1", "--tile", "32", "--halo", "8"])


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


# ------------------------------------------------------------------ the choice itself
def test_the_ratio4_copy_is_a_valid_model_directory(bundled: Path) -> None:
    """Only card.json changed, and the card hashes the graphs only: the copy opens with its hashes checked."""
    model = ModelDir.open(bundled / "tiny_ratio4")
    assert model.card.ratio == 4
    model.graph("encoder"), model.graph("denoiser")  # sha256 checked against the card


def test_discovery_lists_model_directories_by_name(bundled: Path) -> None:
    assert [(m.name, m.card.ratio) for m in bundled_models()] == [("tiny_ratio2", 2), ("tiny_ratio4", 4)]
    assert bundled_models(bundled / "absent") == []


def test_choice_by_ratio_bands_and_sensor(bundled: Path) -> None:
    models = bundled_models()
    assert choose_model("s", 4, ["coastal", *BANDS, "swir1"], 6).name == "tiny_ratio4"  # a subset of the scene
    assert choose_model("s", 2, None, 4).name == "tiny_ratio2"  # unnamed arrays: by band count
    with pytest.raises(NoFittingModel, match="ratio 2, bands blue, green, red"):
        choose_model("s", 2, ["blue", "green", "red"], 3)  # the model needs nir
    with pytest.raises(NoFittingModel, match="3 unnamed bands"):
        choose_model("s", 2, None, 3)
    card = models[0].card
    other = BundledModel("a_other_sensor", Path("x"), ModelCard.from_dict({**card.to_dict(), "sensor": "Pleiades"}))
    three = BundledModel("b_three_bands", Path("y"), ModelCard.from_dict(
        {**card.to_dict(), "bands": BANDS[:3], "model": {**card.model, "ms_bands": 3}}))
    pool = [other, three, *models]
    assert choose_model("s", 2, BANDS, 4, "Landsat8", pool).name == "tiny_ratio2"  # the scene's sensor first
    assert choose_model("s", 2, BANDS, 4, "Pleiades", pool).name == "a_other_sensor"
    assert choose_model("s", 2, BANDS, 4, "WorldView3", [three, other]).name == "a_other_sensor"  # more bands


# ------------------------------------------------------------------ ddrf-run
def test_each_scene_of_a_batch_gets_the_model_of_its_ratio(bundled: Path, tmp_path: Path) -> None:
    """One run, a ratio-2 and a ratio-4 scene: each report and log line names its model, and the ratio-4 output is
    what --model with that directory makes."""
    two, four = scene(tmp_path / "in" / "two", 2), scene(tmp_path / "in" / "four", 4)
    out = tmp_path / "out"
    result = run(str(two), str(four), "-o", str(out))
    assert result.exit_code == 0, result.output
    for name, model in (("two", "tiny_ratio2"), ("four", "tiny_ratio4")):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["scene"]["ratio"] == int(model[-1])
        assert report["engine"]["model"]["name"] == model
        assert report["engine"]["model"]["path"] == str(bundled / model)
        assert report["engine"]["model"]["chosen_by"].startswith("bundled: fits ratio")
        assert f"{name}: done -> {out / name}.tif (model {model}, {bundled / model})" in result.output
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert [e["model"]["name"] for e in summary["scenes"]] == ["tiny_ratio2", "tiny_ratio4"]
    explicit = tmp_path / "explicit.tif"
    result = run("--pan", str(four / "pan.tif"), "--ms", str(four / "ms.tif"), "-o", str(explicit),
                 "--model", str(bundled / "tiny_ratio4"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read(explicit), read(out / "four.tif"))


def test_model_option_overrides_the_choice(bundled: Path, tmp_path: Path) -> None:
    four = scene(tmp_path / "four", 4)
    elsewhere = bundled_copy(tmp_path / "mine", "given", 4)
    out = tmp_path / "out"
    result = run(str(four), "-o", str(out), "--model", str(elsewhere))
    assert result.exit_code == 0, result.output
    model = json.loads((out / "four.json").read_text())["engine"]["model"]
    assert model == {"name": "given", "path": str(elsewhere), "chosen_by": "--model"}
    result = run(str(four), "-o", str(tmp_path / "out2"), "--model", str(bundled / "tiny_ratio2"))
    assert result.exit_code == 1 and "scene ratio 4 but the model fuses ratio 2" in result.output
    result = run(str(four), "-o", str(tmp_path / "out3"), "--model", "tiny_ratio4")  # a bundled model by name
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out3" / "four.json").read_text())["engine"]["model"]["path"] == str(
        bundled / "tiny_ratio4")
    result = run(str(four), "-o", str(tmp_path / "out4"), "--model", "tiny_ratio8")
    assert result.exit_code == 2 and "tiny_ratio8: not a model directory, nor a bundled model (tiny_ratio2, " \
        "tiny_ratio4)" in result.output and not (tmp_path / "out4").exists()


@pytest.mark.parametrize("spec", ["./tiny_ratio2", "sub/tiny_ratio2", ".tiny_ratio2"])
def test_a_model_given_as_a_path_is_never_taken_for_the_bundled_model_of_that_name(
        bundled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    """`--model ./NAME` (a slash, or a leading dot) is a folder: absent, it is refused, not served by the bundled
    model NAME (Typer's Path used to drop the './')."""
    two = scene(tmp_path / "two", 2)
    monkeypatch.chdir(tmp_path)
    result = run(str(two), "-o", str(tmp_path / "out"), "--model", spec, "--dry-run")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"ddrf-run: {spec}: no model folder there (a path, so not a "
                                                  "bundled model's name: tiny_ratio2, tiny_ratio4)"]


def test_the_report_names_every_path_absolute_so_it_reads_the_same_from_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative --model, --pan/--ms, --statistics-from and DDRF_BUNDLED_MODELS: the report, the run summary and the
    STAC Item name each as an absolute path (a report read later from another folder must still find them)."""
    monkeypatch.chdir(tmp_path)
    bundled_copy(tmp_path / "bundled", "tiny_ratio2", 2)
    monkeypatch.setenv(FOLDER_VARIABLE, "bundled")
    bundled_copy(tmp_path / "mine", "given", 2)
    scene(tmp_path / "two", 2)
    scene(tmp_path / "ref", 2)
    result = run("two", "-o", "out", "--model", "mine/given", "--statistics-from", "ref")
    assert result.exit_code == 0, result.output
    engine = json.loads((tmp_path / "out" / "two.json").read_text())["engine"]
    assert engine["model"]["path"] == engine["model_dir"] == str(tmp_path / "mine" / "given")
    assert engine["statistics_from"] == str(tmp_path / "ref")
    summary = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert summary["settings"]["model"] == str(tmp_path / "mine" / "given")
    assert summary["scenes"][0]["model"]["path"] == str(tmp_path / "mine" / "given")
    result = run("--pan", "two/pan.tif", "--ms", "two/ms.tif", "-o", "pair.tif")  # the bundled model, relative
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "pair.json").read_text())
    assert report["engine"]["model"]["path"] == str(tmp_path / "bundled" / "tiny_ratio2")
    assert report["inputs"]["pan"] == str(tmp_path / "two" / "pan.tif")


def test_a_scene_no_bundled_model_fits_fails_with_one_line_naming_what_would(bundled: Path, tmp_path: Path) -> None:
    three = scene(tmp_path / "three", 3)
    out = tmp_path / "out.tif"
    result = run("--pan", str(three / "pan.tif"), "--ms", str(three / "ms.tif"), "-o", str(out))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if "no bundled model fits" in line]
    assert len(lines) == 2  # the scene's line and the closing summary's
    line = lines[0]
    assert str(three / "pan.tif") in line and "ratio 3" in line and "bands blue, green, red, nir" in line
    assert "--method MTF-GLP-HPM-robust" in line and "ddrf-finetune" in line
    assert "tiny_ratio2 (ratio 2" in line and "tiny_ratio4 (ratio 4" in line
    assert "Traceback" not in result.output
    assert not any(tmp_path.glob("out*")), "nothing written"


def test_dry_run_names_each_scenes_model(bundled: Path, tmp_path: Path) -> None:
    two, three = scene(tmp_path / "two", 2), scene(tmp_path / "three", 3)
    result = run(str(two), str(three), "-o", str(tmp_path / "out"), "--dry-run")
    assert result.exit_code == 1
    assert f"model tiny_ratio2 ({bundled / 'tiny_ratio2'})" in result.output
    assert "three: no bundled model fits" in result.output
    assert not (tmp_path / "out").exists()


def test_tile_rounding_names_the_model_it_is_for(bundled: Path, tmp_path: Path) -> None:
    """Without --model each scene's bundled model is loaded before the run, and rounds --tile its own way: each note
    says whose it is. A model no scene gets is not loaded, and says nothing."""
    def notes(*scenes: Path) -> list[str]:
        result = CliRunner().invoke(app, [*map(str, scenes), "-o", str(tmp_path / "out"), "--tile", "197", "--halo",
                                          "0", "--dry-run", "--no-progress"])
        return sorted(line for line in result.output.splitlines() if "--tile 197 --halo 0 run as" in line)

    two, four = scene(tmp_path / "two", 2), scene(tmp_path / "four", 4)
    both = notes(two, four)
    assert len(both) == 2 and " with tiny_ratio2 (" in both[0] and " with tiny_ratio4 (" in both[1], both
    assert notes(two) == both[:1]


def test_only_the_bundled_models_the_scenes_get_are_loaded(bundled: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A model no scene gets costs no load (ONNX Runtime sessions: time and memory), and a scene no model fits
    fails on its own line while the others run. A batch longer than PICKED_BEFORE_THE_RUN loads every one."""
    from ddrf.scenes import command, engines

    scenes = [str(scene(tmp_path / "two", 2)), str(scene(tmp_path / "three", 3))]
    for limit, expected in ((2, {"tiny_ratio2"}), (1, {"tiny_ratio2", "tiny_ratio4"})):
        monkeypatch.setattr(command, "PICKED_BEFORE_THE_RUN", limit)
        engines._FUSERS.clear()
        result = run(*scenes, "-o", str(tmp_path / f"out{limit}"))
        assert result.exit_code == 1 and "no bundled model fits" in result.output, result.output
        loaded = {Path(key.model).name for key in engines._FUSERS}
        assert loaded == expected, (limit, loaded)
        out = tmp_path / f"out{limit}"
        assert (out / "two.tif").is_file() and not (out / "three.tif").exists()


def test_no_bundled_model_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path / "empty"))
    result = run(str(scene(tmp_path / "two", 2)), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "no bundled model there; pass --model DIR or --method NAME" in result.output


# ------------------------------------------------------------------ the Python API
def test_api_chooses_by_ratio_and_refuses_a_ratio_without_model(bundled: Path, tmp_path: Path) -> None:
    import ddrf

    rng = np.random.default_rng(0)
    pan, ms = rng.uniform(4000, 16000, (32, 32)), rng.uniform(4000, 16000, (8, 8, 4))
    np.testing.assert_array_equal(ddrf.fuse(pan, ms), ddrf.fuse(pan, ms, model=bundled / "tiny_ratio4"))
    with pytest.raises(ValueError, match="no bundled model fits.*ratio 3.*--method"):
        ddrf.fuse(pan[:24, :24], ms)
    path = ddrf.fuse_scene(scene(tmp_path / "four", 4), tmp_path / "out")
    assert json.loads(path.with_suffix(".json").read_text())["engine"]["model"]["name"] == "tiny_ratio4"


# ------------------------------------------------------------------ the real bundled folder
def test_the_package_bundles_the_ratio2_landsat_model_and_documents_every_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    models = bundled_models()
    assert models[0].path.parent == ROOT / "ddrf" / "assets" / "models"
    assert ("landsat_ratio2", 2) in [(m.name, m.card.ratio) for m in models]
    for model in models:
        assert (model.path / "README.md").is_file(), f"{model.path}: add a README saying how it was trained"


@pytest.mark.parametrize("bands, sensor, expected", [
    (["blue", "green", "red"], None, "landsat_ratio2_band_wise"),
    (["blue", "green", "red", "nir"], "Landsat8", "landsat_ratio2"),
    (["red", "green", "blue", "nir", "swir1", "swir2"], "Landsat7", "landsat_ratio2_band_wise"),
    (["coastal", "blue", "green", "red", "nir", "swir1", "swir2"], "Landsat8", "landsat_ratio2_band_wise"),
])
@pytest.mark.parametrize("ratio", [2, 4])
def test_the_bundled_band_sets_each_get_their_model(bands: list[str], sensor: str | None, expected: str, ratio: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """At each ratio blue, green, red and NIR get the four-band model trained for them; three visible bands,
    Landsat-7's six reflective bands and Landsat-8's seven (coastal included) the band-wise model, which fuses every
    band."""
    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    chosen = choose_model("s", ratio, bands, len(bands), sensor)
    assert chosen.name == expected.replace("ratio2", f"ratio{ratio}") and chosen.card.ratio == ratio
    assert chosen.card.band_wise or set(chosen.card.bands) <= set(bands)


def test_an_eight_band_worldview_scene_gets_the_ratio4_band_wise_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    assert choose_model("s", 4, list(WV8), 8, "WorldView3").name == "landsat_ratio4_band_wise"
    with pytest.raises(NoFittingModel, match="no bundled model fits"):
        choose_model("s", 3, list(WV8), 8, "WorldView3")  # no ratio-3 model


def test_a_three_band_scene_is_fused_by_the_bundled_band_wise_model(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A pan.tif + three-band ms.tif (band descriptions blue, green, red) of real Landsat-8 content: three fused
    bands, in the scene's order, by the bundled band-wise model, named in the report."""
    from scenes_fixtures import SAMPLE

    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    folder = tmp_path / "rgb"
    folder.mkdir()
    stem = SAMPLE.name
    shutil.copy(SAMPLE / f"{stem}_B8.TIF", folder / "pan.tif")
    with rasterio.open(SAMPLE / f"{stem}_B2.TIF") as ds:
        profile = {**ds.profile, "count": 3}
    with rasterio.open(folder / "ms.tif", "w", **profile) as dst:
        for k, number in enumerate((2, 3, 4), start=1):
            with rasterio.open(SAMPLE / f"{stem}_B{number}.TIF") as ds:
                dst.write(ds.read(1), k)
        dst.descriptions = ("blue", "green", "red")
    result = CliRunner().invoke(app, [str(folder), "-o", str(tmp_path / "out"), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "rgb.json").read_text())
    assert report["engine"]["model"]["name"] == "landsat_ratio2_band_wise"
    fused = read(tmp_path / "out" / "rgb.tif")
    assert fused.shape[0] == 3 and fused.std() > 0


def test_an_eight_band_worldview_file_at_ratio_4_is_fused_by_the_bundled_ratio4_band_wise_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pan.tif + an eight-band ms.tif named by WorldView-3's bands (descriptions), at ratio 4, of real Landsat-8
    content (the sample's blue, green, red, NIR averaged 2 x 2 to four PAN pixels, each written twice): ddrf-run
    without --model picks landsat_ratio4_band_wise and writes eight bands, and two bands made from the same data come
    out the same (one network per band, the same noise)."""
    from scenes_fixtures import SAMPLE

    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    stem, size = SAMPLE.name, 128
    folder = tmp_path / "wv"
    folder.mkdir()
    with rasterio.open(SAMPLE / f"{stem}_B8.TIF") as ds:
        pan, profile, transform = ds.read(1)[:size, :size], ds.profile, ds.transform
    bands = []
    for number in (2, 3, 4, 5):
        with rasterio.open(SAMPLE / f"{stem}_B{number}.TIF") as ds:
            ms = ds.read(1)[:size // 2, :size // 2].astype(np.float64)
        bands.append(ms.reshape(size // 4, 2, size // 4, 2).mean(axis=(1, 3)))
    eight = np.stack(bands + bands).round().astype("uint16")
    common = {k: v for k, v in profile.items() if k not in ("width", "height", "count", "transform", "blockxsize",
                                                             "blockysize", "tiled")}
    with rasterio.open(folder / "pan.tif", "w", **{**common, "width": size, "height": size, "count": 1,
                                                  "transform": transform}) as dst:
        dst.write(pan, 1)
    ms_transform = transform @ transform.scale(4)
    with rasterio.open(folder / "ms.tif", "w", **{**common, "width": size // 4, "height": size // 4, "count": 8,
                                                 "transform": ms_transform}) as dst:
        dst.write(eight)
        dst.descriptions = tuple(WV8)
    result = CliRunner().invoke(app, [str(folder), "-o", str(tmp_path / "out"), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "wv.json").read_text())
    assert report["engine"]["model"]["name"] == "landsat_ratio4_band_wise"
    fused = read(tmp_path / "out" / "wv.tif").astype(np.int64)
    assert fused.shape == (8, size, size) and all(band.std() > 0 for band in fused)
    assert np.abs(fused[:4] - fused[4:]).max() <= 1  # rounding at most
