"""ddrf-finetune end to end on a tiny real scene: discovery, Wald pairs, warm start, time budget, export, ddrf-run."""
from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import rasterio

torch = pytest.importorskip("torch")  # the train extra
from typer.testing import CliRunner

from ddrf.card import read_card
from ddrf.finetune.command import app
from ddrf.train.checkpoint import read_weights
from ddrf.train.config import load_config
from ddrf.train.loop import train

torch.set_num_threads(1)
ROOT = Path(__file__).parents[1]
SCENE = ROOT / "tests/data/scenes/landsat8_c1/LC08_L1TP_016037_20170813_20170814_01_RT"


@pytest.fixture(scope="module")
def base_run(landsat7_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seconds-long Landsat-7 model with per-scene normalisation, like the bundled ones."""
    cfg = load_config(ROOT / "configs/landsat7_small_cpu.yaml", [
        f"data.source=fusebox:{landsat7_dir}", "data.patch=16", "data.normalisation=scene",
        "model.overrides={base_width: 8, channel_mults: [1, 2], time_dim: 32, dropout: 0.0}", "optim.batch=4",
        "optim.steps=4", "optim.warmup=1", "optim.threads=1", "optim.device=cpu", "log.progress=false"])
    run = tmp_path_factory.mktemp("base") / "run"
    train(cfg, run)
    return run


def test_finetune_trains_on_a_scene_directory_and_writes_a_model_ddrf_run_accepts(base_run: Path,
                                                                                  tmp_path: Path) -> None:
    out = tmp_path / "ft"
    result = CliRunner().invoke(app, [str(SCENE), "--out", str(out), "--model", str(base_run), "--steps", "3",
                                      "--patch", "16", "--batch", "2", "--threads", "1", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    card = read_card(out / "model" / "card.json")
    base = read_card(base_run / "card.json")
    assert card.bands == base.bands and card.ratio == 2 and card.sensor == "Landsat8"
    assert card.training["iterations"] == 3 and card.training["acquisitions_used"] == [SCENE.name]
    assert card.training["config"]["model"]["init"] == str(base_run / "model.safetensors")
    _, before, _ = read_weights(base_run)
    _, after, _ = read_weights(out / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained from the base...
    assert set(before) == set(after)  # ...the same network
    from ddrf.scenes.command import app as run_app

    fused = tmp_path / "fused"
    ran = CliRunner().invoke(run_app, [str(SCENE), "-o", str(fused), "--model", str(out / "model"), "--tile", "128"])
    assert ran.exit_code == 0, ran.output
    with rasterio.open(next(fused.glob("*.tif"))) as src:
        image = src.read()
    assert image.shape[0] == 4 and np.isfinite(image).all() and image.std() > 0
    report = json.loads(next(fused.glob("*.tif")).with_suffix(".json").read_text())
    assert report["engine"]["unrolled"] is True  # the export ships the card's 1-step sampler as one graph


def test_base_mean_exports_the_mean_of_the_finetuned_and_the_base_weights(base_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    result = CliRunner().invoke(app, [str(SCENE), "--out", str(out), "--model", str(base_run), "--steps", "2",
                                      "--patch", "16", "--batch", "2", "--threads", "1", "--lr", "1e-3", "--base-mean"])
    assert result.exit_code == 0, result.output
    _, base, _ = read_weights(base_run)
    _, tuned, _ = read_weights(out / "model" / "model.safetensors")
    _, mean, card = read_weights(out / "mean" / "model" / "model.safetensors")
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    assert all(torch.equal(mean[k], torch.stack([base[k].double(), tuned[k].double()]).mean(0).to(mean[k].dtype))
               for k in base)
    assert card.scene_statistics == read_card(out / "model" / "card.json").scene_statistics
    assert [s["path"] for s in card.training["averaged_from"]] == [str(out / "model.safetensors"),
                                                                   str(base_run / "model.safetensors")]
    graphs = sorted(p.name for p in (out / "model").glob("*.onnx"))
    assert graphs and sorted(p.name for p in (out / "mean" / "model").glob("*.onnx")) == graphs


def test_overwrite_never_clears_the_base_model_or_a_scene(base_run: Path, tmp_path: Path) -> None:
    """`--model M --out M --overwrite` used to delete M's weights before reading them."""
    import shutil

    base = Path(shutil.copytree(base_run, tmp_path / "base"))
    before = sorted((p.name, p.read_bytes()) for p in base.iterdir() if p.is_file())
    result = CliRunner().invoke(app, [str(SCENE), "--out", str(base), "--model", str(base), "--steps", "2",
                                      "--patch", "16", "--batch", "2", "--threads", "1", "--overwrite"])
    assert result.exit_code == 2 and "which --overwrite clears" in result.output
    assert sorted((p.name, p.read_bytes()) for p in base.iterdir() if p.is_file()) == before


def test_an_output_folder_that_is_no_folder_is_refused_before_training_or_named_after_it(base_run: Path,
                                                                                          tmp_path: Path) -> None:
    common = ["--model", str(base_run), "--steps", "2", "--patch", "16", "--batch", "2", "--threads", "1",
              "--base-mean"]
    out = tmp_path / "file"
    out.mkdir()
    (out / "mean").write_text("not a model folder")
    refused = CliRunner().invoke(app, [str(SCENE), "--out", str(out), *common, "--overwrite"])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert f"{out / 'mean'}: exists and is not a directory" in refused.output
    assert not (out / "model.safetensors").exists()  # no training time spent
    # a dangling link passes the check and fails only when the mean is written: the line says what was written
    out = tmp_path / "link"
    out.mkdir()
    (out / "mean").symlink_to(tmp_path / "nowhere")
    failed = CliRunner().invoke(app, [str(SCENE), "--out", str(out), *common, "--overwrite"])
    assert failed.exit_code == 2 and len(failed.output.strip().splitlines()) == 1, failed.output
    assert "the mean with the base was not written" in failed.output
    assert f"the fine-tuned model is in {out / 'model'}" in failed.output
    assert (out / "model" / "model.safetensors").is_file()


def test_finetune_time_budget_ends_early_and_resume_continues(base_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    common = [str(SCENE), "--out", str(out), "--model", str(base_run), "--patch", "16", "--batch", "2",
              "--threads", "1"]
    first = CliRunner().invoke(app, [*common, "--steps", "10000", "--minutes", "0.01"])
    assert first.exit_code == 0, first.output
    stopped = read_card(out / "card.json").training["iterations"]
    assert 1 <= stopped < 10000
    again = CliRunner().invoke(app, [*common, "--steps", str(stopped + 2), "--resume"])
    assert again.exit_code == 0, again.output
    assert read_card(out / "model" / "card.json").training["iterations"] == stopped + 2


def test_finetune_refuses_unknown_models_and_held_out_scenes_in_one_line(base_run: Path, tmp_path: Path) -> None:
    unknown = CliRunner().invoke(app, [str(SCENE), "--out", str(tmp_path / "a"), "--model", "no_such_model"])
    assert unknown.exit_code == 2 and "no_such_model" in unknown.output
    held = CliRunner().invoke(app, [str(SCENE), "--out", str(tmp_path / "b"), "--model", str(base_run),
                                    "--hold-out", SCENE.name, "--steps", "1", "--patch", "16"])
    assert held.exit_code == 2 and "held out" in held.output and len(held.output.strip().splitlines()) == 1
    assert not (tmp_path / "b" / "model").exists()
    twice = CliRunner().invoke(app, [str(SCENE), f"{SCENE}/", "--out", str(tmp_path / "c"), "--model", str(base_run)])
    assert twice.exit_code == 2 and "given twice" in twice.output and not (tmp_path / "c").exists()


def test_finetuned_model_keeps_the_base_models_serving_options(base_run: Path, tmp_path: Path) -> None:
    """A v1 base served with scene statistics and a wide halo (as the bundled ratio-2 model): the fine-tuned export
    keeps both (else its output would depend on the tile) and inherits the spread calibrations (seeds and
    views), saying so."""
    import shutil

    from ddrf.card import write_card

    base = tmp_path / "served"
    base.mkdir()
    shutil.copy(base_run / "model.safetensors", base / "model.safetensors")
    card = read_card(base_run / "card.json")
    card.scene_statistics, card.halo, card.spread_calibration, card.spread_calibration_samples = True, 48, 9.5, 8
    card.staged = {"split": 1, "encoder_halo": 16, "deep_halo": 16, "decoder_halo": 16}  # --tile 64 runs staged
    card.spread_calibration_views = [{"c": 6.5, "samples": 4, "steps": card.sampling_steps}]
    write_card(card, base / "card.json")
    out = tmp_path / "ft"
    result = CliRunner().invoke(app, [str(SCENE), "--out", str(out), "--model", str(base), "--steps", "2",
                                      "--patch", "16", "--batch", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    tuned = read_card(out / "model" / "card.json")
    assert (tuned.scene_statistics, tuned.halo) == (True, 48)
    assert tuned.output_margin == 36  # the 48-pixel halo's unweighted border, skipped as ddrf-export does
    assert (out / "model" / f"scene_k{tuned.sampling_steps}.onnx").is_file()  # the scene pass is exported
    assert tuned.staged == card.staged and (out / "model" / "staged_decoder_k1.onnx").is_file()  # and staged
    assert (tuned.spread_calibration, tuned.spread_calibration_samples) == (9.5, 8)
    assert tuned.spread_calibration_steps == card.sampling_steps  # the K the base's factor was fitted at
    assert tuned.spread_problem(card.sampling_steps) is None
    assert tuned.spread_calibration_views == card.spread_calibration_views  # --ensemble 4 --uncertainty 4 too
    assert tuned.spread_problem(card.sampling_steps, views=4) is None
    assert "inherited" in tuned.training["spread_calibration"]
    # the run's own card serves as the base too, so `ddrf-export onnx RUN` exports what RUN/model is (it used to
    # export halo 32 with window statistics: an output that depends on the tile)
    from ddrf.export.command import app as export_app

    run_card = read_card(out / "card.json")
    assert (run_card.scene_statistics, run_card.halo, run_card.spread_calibration) == (True, 48, 9.5)
    unrolled = ",".join(sorted({str(card.sampling_steps), "1"}))  # the staged graphs are the 1-step sampler's
    again = CliRunner().invoke(export_app, ["onnx", str(out), "-o", str(tmp_path / "again"), "--unrolled",
                                            unrolled, "--no-fp16"])
    assert again.exit_code == 0, again.output
    exported = read_card(tmp_path / "again" / "card.json")
    assert (exported.scene_statistics, exported.halo, exported.spread_calibration_views, exported.staged) == (
        True, 48, card.spread_calibration_views, card.staged)


def test_a_diverging_learning_rate_ends_in_one_line_not_a_traceback(base_run: Path, tmp_path: Path) -> None:
    """--lr 1e9 makes the loss NaN: ddrf-finetune says so in one line, exit 2, as ddrf-train does (before: a
    FloatingPointError traceback)."""
    result = CliRunner().invoke(app, [str(SCENE), "--out", str(tmp_path / "ft"), "--model", str(base_run), "--steps",
                                      "3", "--patch", "16", "--batch", "2", "--threads", "1", "--lr", "1e9"])
    assert result.exit_code == 2, result.output
    assert "ddrf-finetune: error: loss is nan" in result.output and len(result.output.strip().splitlines()) == 1
    assert "ddrf-finetune --lr" in result.output  # the option it takes, not only the config key optim.lr
    assert not (tmp_path / "ft" / "model").exists()


def test_resume_and_overwrite_together_are_refused(base_run: Path, tmp_path: Path) -> None:
    """ddrf-finetune --resume --overwrite: one line, the run untouched, as ddrf-train (before: --overwrite was ignored
    and the run resumed)."""
    run = tmp_path / "run"
    common = [str(SCENE), "--out", str(run), "--model", str(base_run), "--patch", "16", "--batch", "2", "--threads", "1"]
    assert CliRunner().invoke(app, [*common, "--steps", "1"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = CliRunner().invoke(app, [*common, "--steps", "2", "--resume", "--overwrite"])
    assert result.exit_code == 2 and "--resume and --overwrite exclude each other" in result.output
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_patch_larger_than_the_scene_is_stated_on_one_grid_naming_the_file(tmp_path: Path) -> None:
    """--patch is on the training pairs' PAN grid, which Wald's protocol makes the scene's MS grid: the refusal gives
    the scene's size on that grid (and its PAN's), its file and the largest patch that fits (before: `pair
    'landsat8_c1': MS (24, 24) is smaller than patch 4096`, which read as a PAN-grid patch against MS pixels)."""
    result = CliRunner().invoke(app, [str(SCENE), "--out", str(tmp_path / "ft"), "--model", "landsat_ratio2",
                                      "--patch", "4096", "--steps", "1"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    pan = next(SCENE.glob("*_B8.TIF"))
    assert (f"{pan}: patch 4096 is larger than the training pair: Wald's protocol degrades the PAN by the ratio 2, so "
            "patches are cut on the scene's MS grid, where it is 24x24 (its PAN 48x48); at most patch 24") in text
    assert not (tmp_path / "ft").exists()


def test_resuming_a_finished_run_says_so_and_keeps_its_model(tmp_path: Path) -> None:
    """--resume of a run already at --steps trains nothing: it says so and leaves RUN/model as it is, so a spread
    calibration fitted into it since (ddrf-eval --fit-spread) stays (before: `trained steps 1->1`, and the model was
    exported again over it, the fitted calibration lost without a word)."""
    from ddrf.evaluate.spread import store_factor

    out = tmp_path / "ft"
    common = [str(SCENE), "--out", str(out), "--model", "landsat_ratio2", "--steps", "1", "--patch", "16"]
    assert CliRunner().invoke(app, common).exit_code == 0
    store_factor(out / "model", 3.5, 8, read_card(out / "model/card.json").sampling_steps)
    card = (out / "model/card.json").read_text()
    again = CliRunner().invoke(app, [*common, "--resume"])
    assert again.exit_code == 0, again.output
    assert f"nothing to train: the run in {out} is at step 1 of --steps 1; its model {out / 'model'} is kept" in \
        " ".join(again.output.split())
    assert (out / "model/card.json").read_text() == card and read_card(out / "model/card.json").spread_calibration == 3.5
