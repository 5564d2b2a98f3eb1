"""ddrf-eval fuses DDRF through ddrf-run's tiled path (windows, halo, blend, keyed noise) unless --whole-image, and
simulates a ratio-4 sensor from ratio-2 pairs; on a real Landsat-7 crop with the committed tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from ddrf.baselines import fuse
from ddrf.data import load_fusebox
from ddrf.evaluate.command import app as eval_app
from ddrf.evaluate.datasets import Sample, open_dataset
from ddrf.evaluate.methods import OnnxDDRF, Tiling
from ddrf.evaluate.runner import score
from ddrf.filters import wald_simulate_ratio
from ddrf.scenes.command import app as run_app

ROOT = Path(__file__).parents[1]
TINY_MODEL = ROOT / "tests/data/tiny_model/model"
LANDSAT7 = ROOT / "tests/data/landsat7"
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def crop() -> Sample:
    """192 x 160 PAN px of FuseBox scene 1 (+1 DN, so no pixel reads as nodata), full resolution."""
    pair = load_fusebox(LANDSAT7, scenes=[1])[0]
    return Sample("crop", "full", pair.pan[:192, :160] + 1, pair.ms[:96, :80] + 1, None, 2, "generic",
                  pair.band_names)


def write_pair(folder: Path, pan: np.ndarray, ms: np.ndarray) -> tuple[Path, Path]:
    """Float32 GeoTIFFs, the MS origin half a PAN pixel down-right (MS pixel j centred on PAN pixel 2j+1), the PAN
    at its CRS's origin: ddrf-run keys the noise to the CRS pixel lattice, and there that is the arrays' own rows
    and columns, as the evaluation keys them."""
    folder.mkdir(parents=True, exist_ok=True)
    common = {"driver": "GTiff", "crs": "EPSG:32616", "dtype": "float32"}
    paths = folder / "crop_pan.tif", folder / "crop_ms.tif"
    with rasterio.open(paths[0], "w", height=pan.shape[0], width=pan.shape[1], count=1,
                       transform=from_origin(0.0, 0.0, 15.0, 15.0), **common) as dst:
        dst.write(pan.astype(np.float32)[None])
    with rasterio.open(paths[1], "w", height=ms.shape[0], width=ms.shape[1], count=ms.shape[2],
                       transform=from_origin(7.5, -7.5, 30.0, 30.0), **common) as dst:
        dst.write(np.moveaxis(ms.astype(np.float32), -1, 0))
    return paths


def test_tiled_evaluation_is_what_ddrf_run_writes(crop: Sample, tmp_path: Path) -> None:
    pan_path, ms_path = write_pair(tmp_path / "pair", crop.pan, crop.ms)
    out = tmp_path / "fused.tif"
    result = RUNNER.invoke(run_app, ["--pan", str(pan_path), "--ms", str(ms_path), "-o", str(out), "--model",
                                     str(TINY_MODEL), "--tile", "96", "--seed", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        written = np.moveaxis(src.read(), 0, -1).astype(np.float64)
    tiled = OnnxDDRF(TINY_MODEL, seed=3, tiling=Tiling(tile=96)).fuse(crop)
    np.testing.assert_allclose(tiled, written, rtol=1e-5, atol=1e-3)  # float32 GeoTIFF
    whole = OnnxDDRF(TINY_MODEL, seed=3, tiling=Tiling(whole_image=True)).fuse(crop)
    assert whole.shape == tiled.shape and np.isfinite(whole).all()
    # the tiny v1-style model has window statistics (GroupNorm), so the two paths are not the same product
    assert np.abs(whole - written).max() > 1.0


def test_samples_are_the_seeds_ddrf_run_draws(crop: Sample) -> None:
    small = Sample("small", "full", crop.pan[:64, :96], crop.ms[:32, :48], None, 2, "generic", crop.band_names)
    method = OnnxDDRF(TINY_MODEL, samples=2, seed=3, tiling=Tiling(tile=80))
    first, second = method.fuse_samples(small)
    np.testing.assert_array_equal(first, OnnxDDRF(TINY_MODEL, seed=3, tiling=Tiling(tile=80)).fuse(small))
    assert np.abs(first - second).max() > 0  # another seed, another draw
    np.testing.assert_allclose(method.fuse(small), (first + second) / 2)


def test_cli_records_the_tiling_and_refuses_tile_with_whole_image(tmp_path: Path) -> None:
    def run(*extra: str) -> tuple[int, str, dict]:
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.json"
        result = RUNNER.invoke(eval_app, [f"fusebox:{LANDSAT7}", "--methods", f"EXP,ddrf:{TINY_MODEL}", "--json",
                                          str(out), *extra])
        return result.exit_code, result.output, json.loads(out.read_text()) if out.exists() else {}

    code, text, tiled = run("--tile", "96")
    assert code == 0, text
    ddrf = tiled["settings"]["methods"]["DDRF[model]"]
    assert (ddrf["tile"], ddrf["halo"], ddrf["fusion_path"].split(",")[0]) == (96, 32, "tiled")
    code, text, default = run()
    assert code == 0 and default["settings"]["methods"]["DDRF[model]"]["tile"] == 256  # ddrf-run's CPU default
    code, text, whole = run("--whole-image")
    assert code == 0 and whole["settings"]["methods"]["DDRF[model]"]["fusion_path"].startswith("whole image")
    scores = [r["SAM"] for d in (tiled, whole) for r in d["images"] if r["method"] == "DDRF[model]"]
    assert all(np.isfinite(scores)) and scores[0] != scores[1]
    code, text, _ = run("--tile", "96", "--whole-image")
    assert code == 2 and "exclude each other" in text


def test_checkpoint_tiled_matches_its_onnx_export(crop: Sample, tmp_path: Path) -> None:
    """Both tiled paths (torch engine for ckpt:, runtime ModelEngine for ddrf:) give the same product."""
    torch = pytest.importorskip("torch")
    from ddrf.card import ModelCard, Normalisation
    from ddrf.evaluate.methods import CheckpointDDRF
    from ddrf.export.onnx_export import export_model
    from ddrf.model import DDRFConfig
    from ddrf.train.checkpoint import save_weights
    from ddrf.train.tiled import random_model

    cfg = DDRFConfig(4, base_width=8, channel_mults=(1, 2), enc_blocks=1, dec_blocks=2, attn_levels=(), heads=2,
                     wave_heads=2, ffn_mult=1, time_dim=16, norm_groups=4, dropout=0.0)
    model = random_model(cfg)
    card = ModelCard(model=cfg.to_dict(), bands=["blue", "green", "red", "nir"], ratio=2, sensor="Landsat7",
                     normalisation=Normalisation(kind="bit_depth", bits=8), sampling_steps=2)
    (tmp_path / "run").mkdir()
    save_weights(tmp_path / "run", model.state_dict(), model.state_dict(), card)
    export_model(model, card, tmp_path / "onnx", fp16=False)
    small = Sample("small", "full", crop.pan[:64, :96], crop.ms[:32, :48], None, 2, "generic", crop.band_names)
    tiling = Tiling(tile=96)  # 2 x 3 windows
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: threads only wait for each other on a shared machine
    try:
        torch_out = CheckpointDDRF(tmp_path / "run", seed=1, tiling=tiling).fuse(small)
        whole = CheckpointDDRF(tmp_path / "run", seed=1, tiling=Tiling(whole_image=True)).fuse(small)
    finally:
        torch.set_num_threads(threads)
    onnx_out = OnnxDDRF(tmp_path / "onnx", seed=1, tiling=tiling).fuse(small)
    scale = float(np.abs(onnx_out).mean())
    assert np.abs(torch_out - onnx_out).max() < 1e-3 * scale
    assert np.abs(whole - torch_out).max() > 0
    settings = CheckpointDDRF(tmp_path / "run", tiling=tiling).settings()
    assert settings["path"] == str(tmp_path / "run") and settings["fusion_path"].startswith("tiled")


# -- ratio 4 simulated from ratio-2 pairs -----------------------------------------------------------------------
def test_simulated_ratio_4_samples_are_trainings_simulation() -> None:
    data = open_dataset(f"fusebox:{LANDSAT7}", "all", simulate_ratio=4)
    assert data.protocols("auto") == ["reduced"] and data.settings["ratio"] == 4
    samples = list(data.samples("reduced"))
    pairs = load_fusebox(LANDSAT7, scenes=[1, 7, 13])
    assert len(samples) == 3
    for sample, pair in zip(samples, pairs):
        assert (sample.ratio, sample.pan.shape, sample.ms.shape, sample.ref.shape) == (4, (128, 128), (32, 32, 4),
                                                                                     (128, 128, 4))
        pan, ms, ref = wald_simulate_ratio(pair.pan, pair.ms, "Landsat7", 4)
        np.testing.assert_array_equal(sample.pan, pan)
        np.testing.assert_array_equal(sample.ms, ms)
        np.testing.assert_array_equal(sample.ref, pair.ms)  # the original MS is the reference
    scores = {m: score(samples[0], fuse(m, samples[0].pan, samples[0].ms, 4, "Landsat7"), 0)
              for m in ("EXP", "MTF-GLP-HPM")}
    assert all(np.isfinite([s["SAM"], s["ERGAS"], s["Q2n"]]).all() for s in scores.values())
    assert scores["MTF-GLP-HPM"]["ERGAS"] < scores["EXP"]["ERGAS"]  # detail injection at ratio 4 helps


def test_simulated_ratio_cli_records_it_and_refuses_full_resolution(tmp_path: Path) -> None:
    out = tmp_path / "r4.json"
    result = RUNNER.invoke(eval_app, [f"fusebox:{LANDSAT7}", "--methods", "EXP,MTF-GLP-HPM", "--simulate-ratio", "4",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["ratio"] == 4 and report["settings"]["data"]["simulate_ratio"] == 4
    assert {r["ratio"] for r in report["images"]} == {4}
    refused = RUNNER.invoke(eval_app, [f"fusebox:{LANDSAT7}", "--methods", "EXP", "--simulate-ratio", "4",
                                       "--mode", "full"])
    assert refused.exit_code == 2 and "only the reduced protocol" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    model = RUNNER.invoke(eval_app, [f"fusebox:{LANDSAT7}", "--methods", f"ddrf:{TINY_MODEL}", "--simulate-ratio",
                                     "4"])
    assert model.exit_code == 2 and "ratio 2" in model.output  # a ratio-2 model is refused at ratio 4
