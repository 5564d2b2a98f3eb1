"""A band-wise model (issue 10): one band in and out, the same weights for every band, so one model fuses any band
set. Trained for seconds on the committed Landsat-7 crops (six bands, one random band per patch), exported, then run
through ddrf-run's tiled path on band sets it was never given as a set, and offered by the bundled choice."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

torch = pytest.importorskip("torch")  # the train extra
from typer.testing import CliRunner

from ddrf.bundled import BundledModel, choose_model
from ddrf.card import ModelCard, read_card, write_card
from ddrf.export.command import app as export_app
from ddrf.model_dir import ModelDirError
from ddrf.runtime.fuser import Fuser
from ddrf.scenes.command import app as run_app
from ddrf.sensors import WV8
from ddrf.train.config import load_config
from ddrf.train.datasets import OneBandPatches
from ddrf.train.loop import train
from ddrf.train.sources import build_source

torch.set_num_threads(1)
ROOT = Path(__file__).parents[1]
SIX = ["blue", "green", "red", "nir", "swir1", "swir2"]
SCENE = ROOT / "tests/data/scenes/landsat8_c1/LC08_L1TP_016037_20170813_20170814_01_RT"


def band_wise_config(landsat7_dir: Path, steps: int = 3) -> object:
    return load_config(ROOT / "configs/landsat7_band_wise.yaml", [
        f"data.source=fusebox:{landsat7_dir}", "data.patch=16",
        "model.overrides={base_width: 8, time_dim: 32, dropout: 0.0}", "optim.batch=4", f"optim.steps={steps}",
        "optim.warmup=1", "optim.ema_start=0", "optim.threads=1", "diffusion.scale_patches=16", "log.progress=false"])


@pytest.fixture(scope="module")
def band_wise_model(landsat7_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("band_wise") / "run"
    train(band_wise_config(landsat7_dir), run)
    out = run.parent / "model"
    result = CliRunner().invoke(export_app, ["onnx", str(run), "-o", str(out), "--no-fp16", "--unrolled", "1",
                                             "--steps", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_each_training_patch_is_one_band_of_the_six(landsat7_dir: Path) -> None:
    cfg = band_wise_config(landsat7_dir)
    source, info = build_source(cfg.data, 2)
    assert isinstance(source, OneBandPatches) and source.ms_bands == 1 and info.band_names == SIX
    draws = [source.source.draw(np.random.default_rng(s)) for s in range(12)]  # the same draws, all bands
    ones = [source.draw(np.random.default_rng(s)) for s in range(12)]
    chosen = set()
    for full, one in zip(draws, ones):
        assert one["lms"].shape[0] == one["gt"].shape[0] == 1 and np.array_equal(one["pan"], full["pan"])
        band = [b for b in range(6) if np.array_equal(full["gt"][b], one["gt"][0])]
        assert band and np.array_equal(full["lms"][band[0]], one["lms"][0])  # LMS and reference of the same band
        chosen.add(band[0])
    assert len(chosen) >= 3  # random bands, not always the first


def test_the_card_says_band_wise_and_the_graphs_take_one_band(band_wise_model: Path, tmp_path: Path) -> None:
    card = read_card(band_wise_model / "card.json")
    assert card.band_wise and card.bands == SIX and card.model["ms_bands"] == 1 and card.graph_bands == 1
    edited = Path(shutil.copytree(band_wise_model, tmp_path / "edited"))  # a card that contradicts its graphs
    write_card(ModelCard.from_dict({**card.to_dict(), "band_wise": False}), edited / "card.json")
    with pytest.raises(ModelDirError, match="input lms has 1 channels, but .* lists 6"):
        Fuser(edited, unrolled=True)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_ddrf_run_fuses_any_band_set_and_each_band_does_not_depend_on_the_others(band_wise_model: Path,
                                                                                  tmp_path: Path) -> None:
    """The Landsat-8 scene's four bands, then three of them alone, then all four twice as an eight-band file: the
    same band comes out identical in every set, through ddrf-run's tiled path."""
    pan = next(SCENE.glob("*_B8.TIF"))
    ms = [next(SCENE.glob(f"*_B{b}.TIF")) for b in (2, 3, 4, 5)]
    options = ["--model", str(band_wise_model), "--tile", "96", "--no-progress", "--threads", "1"]
    four = CliRunner().invoke(run_app, [str(SCENE), "-o", str(tmp_path / "four"), *options])
    assert four.exit_code == 0, four.output
    three = CliRunner().invoke(run_app, ["--pan", str(pan), *sum((["--ms", str(p)] for p in ms[1:]), []),
                                         "--bands", "green,red,nir", "-o", str(tmp_path / "three.tif"), *options])
    assert three.exit_code == 0, three.output
    eight = tmp_path / "eight.tif"  # a WorldView-like eight-band file: the four bands twice, named as WorldView's
    with rasterio.open(ms[0]) as ds:
        profile = {**ds.profile, "count": 8, "nodata": 0}  # Landsat fill, as discovery takes it for Landsat files
    with rasterio.open(eight, "w", **profile) as dst:
        for k, path in enumerate(ms + ms, start=1):
            dst.write(read(path)[0], k)
        dst.descriptions = WV8
    eights = CliRunner().invoke(run_app, ["--pan", str(pan), "--ms", str(eight), "-o", str(tmp_path / "fused8.tif"),
                                          *options])
    assert eights.exit_code == 0, eights.output
    fused4, fused3 = read(next((tmp_path / "four").glob("*.tif"))), read(tmp_path / "three.tif")
    fused8 = read(tmp_path / "fused8.tif")
    assert fused4.shape[0] == 4 and fused3.shape[0] == 3 and fused8.shape[0] == 8
    np.testing.assert_allclose(fused3.astype(float), fused4[1:].astype(float), atol=1)
    # the generic file's PAN takes no Landsat fill rule, so compare where the Landsat run has data
    inside = (fused4 > 0).all(axis=0)
    np.testing.assert_allclose(fused8[:, inside].astype(float), np.concatenate([fused4, fused4])[:, inside], atol=1)
    assert all(fused4[b].std() > 0 for b in range(4))


def test_the_bundled_choice_prefers_a_dedicated_model_and_falls_back_to_the_band_wise_one(
        band_wise_model: Path) -> None:
    card = read_card(band_wise_model / "card.json")
    band_wise = BundledModel("band_wise", band_wise_model, card)
    four = BundledModel("four", Path("x"), ModelCard.from_dict(
        {**card.to_dict(), "band_wise": False, "bands": SIX[:4], "model": {**card.model, "ms_bands": 4}}))
    pool = [band_wise, four]
    assert choose_model("s", 2, SIX[:4], 4, models=pool).name == "four"  # same bands used: the dedicated one
    assert choose_model("s", 2, ["coastal", *SIX], 7, models=pool).name == "band_wise"  # it uses all seven
    assert choose_model("s", 2, ["blue", "green", "red"], 3, models=pool).name == "band_wise"  # four needs nir
    assert choose_model("s", 2, None, 8, models=pool).name == "band_wise"  # eight unnamed bands
    with pytest.raises(ValueError, match="no bundled model"):
        choose_model("s", 4, SIX, 6, models=pool)  # still only its own ratio
