"""`ddrf-export` end to end on a real (briefly trained) checkpoint: ONNX graphs, the TensorRT op check, and the engine
command's refusal where TensorRT or a GPU is missing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")  # the train extra; the runtime-only install skips this module
from typer.testing import CliRunner

from ddrf.engines.probe import cuda_device_count
from ddrf.export.command import app
from ddrf.train.config import load_config
from ddrf.train.loop import train

CONFIGS = Path(__file__).parents[1] / "configs"
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(landsat7_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(CONFIGS / "landsat7_small_cpu.yaml", [
        f"data.source=fusebox:{landsat7_dir}", "data.patch=16", "optim.steps=3", "optim.batch=2",
        "optim.threads=1", "optim.device=cpu", "log.progress=false", "log.checkpoint_every=1000",
        "model.overrides={base_width: 8, channel_mults: [1, 2], time_dim: 32, dropout: 0.0}"])
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(cfg, run, command="pytest")
    return run


def test_export_onnx_and_op_check(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--unrolled", "2", "--steps", "2",
                                 "--weights"])
    assert result.exit_code == 0, result.output
    from ddrf.train.checkpoint import load_checkpoint, read_weights

    model_state, ema_state, _ = read_weights(out / "model.safetensors")
    assert not model_state and ema_state  # inference weights only
    trained, _ = load_checkpoint(checkpoint)
    shipped, _ = load_checkpoint(out / "model.safetensors", ema=False)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), shipped.state_dict().values()))
    names = sorted(p.name for p in out.glob("*.onnx"))
    assert names == ["denoiser.onnx", "denoiser_fp16.onnx", "encoder.onnx", "encoder_fp16.onnx",
                     "sampler_k2.onnx", "sampler_k2_fp16.onnx"]
    card = json.loads((out / "card.json").read_text())
    assert card["sampling_steps"] == 2 and card["training"]["iterations"] == 3
    check = runner.invoke(app, ["check", str(out)])
    assert check.exit_code == 0, check.output  # every operator parses on TensorRT 8.6 and 10
    assert check.output.count(": ok") == len(names)
    again = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_an_export_over_another_leaves_none_of_its_graphs(checkpoint: Path, tmp_path: Path) -> None:
    """`--overwrite` with fewer graphs used to leave the earlier export's sampler_k1.onnx, which the card no longer
    listed and the runtime still ran. Now it is removed; one copied back by hand is refused by name."""
    import shutil

    from ddrf.model_dir import ModelDir, ModelDirError

    out = tmp_path / "model"
    first = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--unrolled", "1", "--no-fp16"])
    assert first.exit_code == 0, first.output
    stale = Path(shutil.copy(out / "sampler_k1.onnx", tmp_path / "sampler_k1.onnx"))
    (out / "notes.onnx").write_text("a file of the user's, not of the layout")
    second = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--no-fp16", "--overwrite"])
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in out.glob("*.onnx")) == ["denoiser.onnx", "encoder.onnx", "notes.onnx"]
    assert set(json.loads((out / "card.json").read_text())["hashes"]) == {"denoiser.onnx", "encoder.onnx"}
    shutil.copy(stale, out / "sampler_k1.onnx")
    with pytest.raises(ModelDirError, match="sampler_k1.onnx: not one of the graphs"):
        ModelDir.open(out).graph("sampler", steps=1)


def test_an_export_over_another_removes_the_engines_built_from_it(checkpoint: Path, tmp_path: Path) -> None:
    """TensorRT engines built from an earlier export's graphs stayed through `--overwrite`, and ModelDir handed them
    to the tensorrt backend with the new card (no hash covers a plan): the old network run as the new one."""
    from ddrf.model_dir import ModelDir, MissingGraph

    out = tmp_path / "model"
    assert runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--no-fp16"]).exit_code == 0
    engines = [out / "encoder_fp16.plan", out / "encoder_fp16.plan.json", out / "denoiser_fp16.plan",
               out / "denoiser_fp16.plan.json"]
    for engine in engines:  # what `ddrf-export engine` writes, here without TensorRT
        engine.write_text("an engine of the first export's graphs")
    (out / "notes.plan").write_text("not of the layout: kept")
    unasked = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--no-fp16", "--halo", "48"])
    assert unasked.exit_code == 1 and "already exists" in unasked.output
    assert all(engine.exists() for engine in engines)
    again = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--no-fp16", "--halo", "48", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert not any(engine.exists() for engine in engines) and (out / "notes.plan").exists()
    with pytest.raises(MissingGraph, match="encoder_fp16.plan: missing"):
        ModelDir.open(out).graph("encoder", "fp16", suffix=".plan")


def test_export_records_a_sampling_shift_and_keeps_it_by_default(checkpoint: Path, tmp_path: Path) -> None:
    """`--sampling-shift` goes into the card's schedule (the runtime's steps), and a re-export of that model folder
    keeps it unless told otherwise."""
    from ddrf.runtime.fuser import Fuser

    out = tmp_path / "model"
    result = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--unrolled", "2", "--no-fp16", "--weights",
                                 "--sampling-shift", "-2.7726"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "card.json").read_text())["schedule"]["sampling_shift"] == -2.7726
    assert Fuser(out, steps=2, unrolled=True).plan.timesteps.tolist() == [999, 844]
    again = runner.invoke(app, ["onnx", str(out / "model.safetensors"), "-o", str(tmp_path / "again"), "--no-fp16"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "card.json").read_text())["schedule"]["sampling_shift"] == -2.7726


def test_a_sampling_shift_past_the_schedules_ends_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    """A shift asking for a log-SNR the schedule does not reach put the steps on its ends: --sampling-shift 1e6 ran
    the 2-step sampler at timesteps 0, 0 (pure noise taken for a clean image: noise out), -20 at 999, 999 (the
    second step a no-op); both were exported and recorded without a word."""
    for shift, timesteps in (("1e6", "0, 0"), ("-20", "999, 999")):
        out = tmp_path / f"shift{shift}"
        result = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--no-fp16", "--steps", "2",
                                     "--unrolled", "2", "--sampling-shift", shift])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert f"the 2-step sampler's timesteps {timesteps}" in lines[0] and "--sampling-shift" in lines[0], lines
        assert not out.exists()
    kept = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(tmp_path / "kept"), "--no-fp16", "--steps", "2",
                               "--sampling-shift", "4.65"])  # docs/EVALUATION.md's 2 log 10.22: 998, 55
    assert kept.exit_code == 0, kept.output


def test_a_scene_statistics_export_serves_its_own_default_step_count(checkpoint: Path, tmp_path: Path) -> None:
    """The checkpoint's card says 2 steps; with scene statistics only the unrolled graphs run, and `--unrolled 1`
    wrote a model whose default run (ddrf-run without --steps) was refused for want of sampler_k2.onnx."""
    refused = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(tmp_path / "a"), "--no-fp16",
                                  "--scene-statistics", "--unrolled", "1"])
    lines = refused.output.strip().splitlines()
    assert refused.exit_code == 1 and len(lines) == 1, refused.output
    assert "runs 2 steps by default" in lines[0] and "--unrolled 1,2" in lines[0] and "--steps 1" in lines[0]
    assert not (tmp_path / "a").exists()
    served = runner.invoke(app, ["onnx", str(checkpoint), "-o", str(tmp_path / "b"), "--no-fp16",
                                 "--scene-statistics", "--unrolled", "1", "--steps", "1"])
    assert served.exit_code == 0, served.output
    from ddrf.runtime.fuser import Fuser

    assert Fuser(tmp_path / "b").steps == 1  # the default run finds its graphs


def test_export_refuses_what_no_card_can_hold_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    """--steps -3 was written into the card (and --steps 0 quietly meant the default); a huge --halo ended in a
    57-line traceback after trying to allocate 90 GB; -o an existing file gave a raw [Errno 17]."""
    import subprocess
    import sys

    code = "import sys; sys.argv[0] = 'ddrf-export'; from ddrf.cli import export_app; export_app()"
    a_file = tmp_path / "file"
    a_file.write_text("")
    for args, message in ((["--steps", "-3"], "--steps"), (["--steps", "0"], "--steps"),
                          (["--unrolled", "0"], "--unrolled step counts must be >= 1"),
                          (["--halo", "100000"], "halo must be 0..1024"),
                          (["-o", str(a_file)], "exists and is not a directory")):
        out = ["-o", str(tmp_path / "m")] if "-o" not in args else []
        result = subprocess.run([sys.executable, "-c", code, "onnx", str(checkpoint), *out, *args],
                                capture_output=True, text=True, timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode in (1, 2) and len(lines) == 1, result.stderr
        assert lines[0].startswith("ddrf-export: error: ") and message in lines[0], lines
    assert not (tmp_path / "m").exists()


def test_weights_never_replace_the_checkpoint_nor_a_file_unasked(checkpoint: Path, tmp_path: Path) -> None:
    """`--weights` wrote OUT/model.safetensors (EMA weights only) with no check: exported into its own run folder
    with --overwrite (which names graphs), the run's training weights were replaced, and without --overwrite another
    model's weights in OUT were too."""
    import shutil

    run = Path(shutil.copytree(checkpoint, tmp_path / "run"))
    before = (run / "model.safetensors").read_bytes()
    itself = runner.invoke(app, ["onnx", str(run), "-o", str(run), "--no-fp16", "--overwrite", "--weights"])
    assert itself.exit_code == 1 and "is the checkpoint this export reads" in itself.output, itself.output
    assert (run / "model.safetensors").read_bytes() == before and not list(run.glob("*.onnx"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"someone else's weights")
    unasked = runner.invoke(app, ["onnx", str(run), "-o", str(other), "--no-fp16", "--weights"])
    assert unasked.exit_code == 1 and "model.safetensors: already exists" in unasked.output, unasked.output
    assert (other / "model.safetensors").read_bytes() == b"someone else's weights"
    assert sorted(p.name for p in other.iterdir()) == ["model.safetensors"]
    asked = runner.invoke(app, ["onnx", str(run), "-o", str(other), "--no-fp16", "--weights", "--overwrite"])
    assert asked.exit_code == 0 and (other / "model.safetensors").read_bytes() != b"someone else's weights"


def test_an_export_over_another_leaves_none_of_its_weights(checkpoint: Path, tmp_path: Path) -> None:
    """`--overwrite` without `--weights` kept the replaced model's model.safetensors beside the new graphs and card,
    where `ddrf-finetune --model OUT`, `ddrf-export onnx OUT` and `ddrf-profile --backend torch` read it as this
    model's weights."""
    from safetensors.torch import load_file, save_file

    from ddrf.model_dir import CARD_METADATA_KEY

    out = tmp_path / "model"
    assert runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--no-fp16", "--weights"]).exit_code == 0
    tensors = {k: v + 1 if v.is_floating_point() else v
               for k, v in load_file(str(checkpoint / "model.safetensors")).items()}
    later = tmp_path / "later.safetensors"  # the same network, trained on
    save_file(tensors, str(later), metadata={CARD_METADATA_KEY: (checkpoint / "card.json").read_text()})
    again = runner.invoke(app, ["onnx", str(later), "-o", str(out), "--no-fp16", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert not (out / "model.safetensors").exists() and "model.safetensors" in again.output


def test_weights_that_are_no_checkpoint_of_their_card_are_one_line(checkpoint: Path, tmp_path: Path) -> None:
    """A .safetensors whose metadata card is no card ended in a TypeError traceback, and one whose card describes
    another network (a bundled model's card on these tensors) in a size-mismatch RuntimeError traceback."""
    from safetensors.torch import load_file, save_file

    from ddrf.model_dir import CARD_METADATA_KEY

    tensors = load_file(str(checkpoint / "model.safetensors"))
    bundled_card = (Path(__file__).parents[1] / "ddrf/assets/models/landsat_ratio4/card.json").read_text()
    cases = {"no_card": ('{"x": 1}', "not a ddrf checkpoint"),
             "other_card": (bundled_card, "its tensors do not fit the network its card describes")}
    for name, (card, problem) in cases.items():
        weights = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(weights), metadata={CARD_METADATA_KEY: card})
        result = runner.invoke(app, ["onnx", str(weights), "-o", str(tmp_path / name), "--no-fp16"])
        assert result.exit_code == 1 and isinstance(result.exception, (SystemExit, type(None)))
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"ddrf-export: error: {weights}: {problem}"), result.output
        assert not (tmp_path / name).exists()


def test_export_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["onnx", str(tmp_path / "nothing"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "nothing: no model folder there" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made_is_one_line_naming_it(checkpoint: Path, tmp_path: Path) -> None:
    """`-o` under a regular file or in /proc (where no folder can be made): one line naming the output and the OS's
    reason, before the export or the average (before: `[Errno 2] No such file or directory: '/proc/x'` after the
    whole export, naming no command's output)."""
    (tmp_path / "file").write_text("not a folder")
    cases = [(tmp_path / "file" / "x", f"Not a directory: {tmp_path / 'file'} is a file")]
    if Path("/proc/self").is_dir():
        cases.append((Path("/proc/x"), "No such file or directory"))
    for out, reason in cases:
        for args in (["onnx", str(checkpoint)], ["average", str(checkpoint), str(checkpoint / "model.safetensors")]):
            result = runner.invoke(app, [*args, "-o", str(out)])
            assert result.exit_code == 1, result.output
            assert result.output.strip() == f"ddrf-export: error: {out}: cannot write the output here ({reason})"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_onnx_takes_a_bundled_models_name(checkpoint: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`ddrf-export onnx NAME` exports the bundled model NAME, as `ddrf-export average NAME` reads it and as the README
    asks for more steps (before: `NAME: checkpoint weights not found`)."""
    import shutil

    from ddrf.bundled import FOLDER_VARIABLE

    shutil.copytree(checkpoint, tmp_path / "bundled" / "tiny")
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path / "bundled"))
    monkeypatch.chdir(tmp_path)  # no folder named tiny here: the name is the bundled model's
    result = runner.invoke(app, ["onnx", "tiny", "-o", str(tmp_path / "out"), "--no-fp16", "--unrolled", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "sampler_k2.onnx").is_file()
    path_like = runner.invoke(app, ["onnx", "./tiny", "-o", str(tmp_path / "no")])
    assert path_like.exit_code == 1 and "./tiny: no model folder there" in path_like.output


@pytest.mark.skipif(cuda_device_count() > 0, reason="a GPU is present: the refusal path does not apply")
def test_engine_without_tensorrt_or_gpu_refuses_and_writes_nothing(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--no-fp16"]).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    result = runner.invoke(app, ["engine", str(out), "--timing-cache", str(tmp_path / "timing.cache")])
    assert result.exit_code == 1
    assert "TensorRT" in result.output or "GPU" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before and not (tmp_path / "timing.cache").exists()


def test_average_is_the_mean_of_the_ema_weights_and_exports(checkpoint: Path, landsat7_dir: Path,
                                                             tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from ddrf.card import ModelCard
    from ddrf.model_dir import CARD_METADATA_KEY
    from ddrf.train.checkpoint import read_weights

    cfg = load_config(CONFIGS / "landsat7_small_cpu.yaml", [
        f"data.source=fusebox:{landsat7_dir}", "data.patch=16", "optim.steps=2", "optim.batch=2", "optim.seed=5",
        "optim.threads=1", "optim.device=cpu", "log.progress=false", "log.checkpoint_every=1000",
        f"model.init={checkpoint}",
        "model.overrides={base_width: 8, channel_mults: [1, 2], time_dim: 32, dropout: 0.0}"])
    continued = tmp_path / "continued"
    train(cfg, continued, command="pytest")
    out = tmp_path / "mean"
    result = runner.invoke(app, ["average", str(checkpoint), str(continued), "-o", str(out)])
    assert result.exit_code == 0, result.output
    _, first, _ = read_weights(checkpoint)
    _, second, _ = read_weights(continued)
    model_state, mean, card = read_weights(out)
    assert not model_state and mean.keys() == first.keys()
    assert any(not torch.equal(first[k], second[k]) for k in first)  # the average is not trivially either input
    for k, v in mean.items():
        assert torch.allclose(v, (first[k].double() + second[k].double()).div(2).to(v.dtype), atol=0, rtol=0)
    sources = card.training["averaged_from"]
    assert [s["path"] for s in sources] == [str(checkpoint / "model.safetensors"), str(continued / "model.safetensors")]
    assert sources[1]["command"] == "pytest" and all(len(s["sha256"]) == 64 for s in sources)
    assert runner.invoke(app, ["onnx", str(out), "-o", str(tmp_path / "exported"), "--no-fp16"]).exit_code == 0

    again = runner.invoke(app, ["average", str(checkpoint), str(continued), "-o", str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    doubled = runner.invoke(app, ["average", str(checkpoint), str(checkpoint / "model.safetensors"), "-o",
                                  str(tmp_path / "doubled")])
    assert doubled.exit_code == 1 and "given twice" in doubled.output and not (tmp_path / "doubled").exists()
    into_input = runner.invoke(app, ["average", str(checkpoint), str(continued), "-o", str(continued), "--overwrite"])
    assert into_input.exit_code == 1 and "is one of the checkpoints" in into_input.output
    bundled = runner.invoke(app, ["average", str(checkpoint), "landsat_ratio2", "-o", str(tmp_path / "refused")])
    assert bundled.exit_code == 1 and "landsat_ratio2/model.safetensors: another network" in bundled.output
    alone = runner.invoke(app, ["average", str(checkpoint), "-o", str(tmp_path / "alone")])
    assert alone.exit_code == 1 and "at least two" in alone.output
    other_card = ModelCard.from_json(card.to_json())
    other_card.bands = ["red", "green", "blue", "nir"]
    other = tmp_path / "other_bands.safetensors"
    save_file({f"ema.{k}": v for k, v in mean.items()}, str(other), metadata={CARD_METADATA_KEY: other_card.to_json()})
    refused = runner.invoke(app, ["average", str(checkpoint), str(other), "-o", str(tmp_path / "refused")])
    assert refused.exit_code == 1 and "another network" in refused.output and "bands" in refused.output
    assert not (tmp_path / "refused").exists() and not (tmp_path / "alone").exists()
    # bits describe the data only where the normalisation is by bit depth (a scene-normalised model fine-tuned on
    # 12-bit data maps values as its 8-bit base did)
    for kind, bits, accepted in (("bit_depth", 12, False), ("scene", 8, True), ("scene", 12, True)):
        other_card = ModelCard.from_json(card.to_json())
        other_card.normalisation.kind, other_card.normalisation.bits = kind, bits
        other = tmp_path / f"{kind}_{bits}.safetensors"
        save_file({f"ema.{k}": v for k, v in mean.items()}, str(other),
                  metadata={CARD_METADATA_KEY: other_card.to_json()})
    assert card.normalisation.kind == "bit_depth" and card.normalisation.bits == 8
    refused = runner.invoke(app, ["average", str(checkpoint), str(tmp_path / "bit_depth_12.safetensors"), "-o",
                                  str(tmp_path / "refused")])
    assert refused.exit_code == 1 and "(normalisation differ)" in refused.output
    scenes = runner.invoke(app, ["average", str(tmp_path / "scene_8.safetensors"),
                                 str(tmp_path / "scene_12.safetensors"), "-o", str(tmp_path / "scenes")])
    assert scenes.exit_code == 0, scenes.output
    # a band-wise network's bands are the ones it was trained on: fine-tuning on a scene adds its bands
    for name, bands in (("bw_a", ["blue", "green", "red", "nir"]), ("bw_b", ["coastal", "blue", "green", "red"])):
        bw_card = ModelCard.from_json(card.to_json())
        bw_card.band_wise, bw_card.bands = True, bands
        save_file({f"ema.{k}": v for k, v in mean.items()}, str(tmp_path / f"{name}.safetensors"),
                  metadata={CARD_METADATA_KEY: bw_card.to_json()})
    band_wise = runner.invoke(app, ["average", str(tmp_path / "bw_a.safetensors"), str(tmp_path / "bw_b.safetensors"),
                                    "-o", str(tmp_path / "bw")])
    assert band_wise.exit_code == 0, band_wise.output
    calibrated_card = ModelCard.from_json(card.to_json())
    calibrated_card.spread_calibration, calibrated_card.spread_calibration_samples = 7.5, 8
    calibrated = tmp_path / "calibrated.safetensors"
    save_file({f"ema.{k}": v for k, v in mean.items()}, str(calibrated),
              metadata={CARD_METADATA_KEY: calibrated_card.to_json()})
    assert runner.invoke(app, ["average", str(calibrated), str(continued), "-o", str(tmp_path / "c")]).exit_code == 0
    _, _, uncalibrated = read_weights(tmp_path / "c")
    assert (uncalibrated.spread_calibration, uncalibrated.spread_calibration_samples) == (1.0, None)


def test_check_names_an_unreadable_graph_in_one_line_and_takes_one_graph(tmp_path: Path) -> None:
    """Before: a 75-line DecodeError traceback for a truncated graph, an IsADirectoryError traceback for a folder
    named like a graph, and 'no ONNX graphs' for a graph's own path."""
    import shutil

    model = Path(shutil.copytree(Path(__file__).parents[1] / "ddrf/assets/models/landsat_ratio4", tmp_path / "md",
                                 ignore=shutil.ignore_patterns("*.safetensors")))
    one = runner.invoke(app, ["check", str(model / "encoder.onnx")])
    assert one.exit_code == 0 and one.output.strip() == "encoder.onnx: ok", one.output
    (model / "scene_k1.onnx").mkdir()
    refusals = [(model, "scene_k1.onnx: not a readable ONNX graph (Is a directory)"),
                (model / "sampler_k1.onnx", "sampler_k1.onnx: not a readable ONNX graph (truncated"),
                (model / "card.json", "card.json: not a model directory nor an .onnx graph")]
    for target, problem in refusals:
        if target.name == "sampler_k1.onnx":
            with open(target, "r+b") as graph:
                graph.truncate(1000)
        result = runner.invoke(app, ["check", str(target)])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith(f"ddrf-export: error: {model}/{problem}")


@pytest.mark.parametrize("option, value", [("--batch", "0"), ("--max-batch", "0"), ("--workspace-mb", "-1")])
def test_engine_options_out_of_range_are_usage_errors(option: str, value: str, tmp_path: Path) -> None:
    """Before: exit 1, as if the engine build had failed (a negative workspace got as far as TensorRT's builder)."""
    model = Path(__file__).parents[1] / "ddrf/assets/models/landsat_ratio4"
    result = runner.invoke(app, ["engine", str(model), option, value, "--timing-cache", str(tmp_path / "t.cache")])
    assert result.exit_code == 2 and option in result.output, result.output
    assert not (tmp_path / "t.cache").exists()


def _opens(paths: list[Path], action: Any) -> dict[Path, int]:
    """How many times each file is opened while `action` runs, by any code (Python or a native library), as Linux's
    inotify reports it (IN_OPEN; IN_CLOSE too, so that two opens in a row are never merged into one event)."""
    import ctypes
    import os
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK) if hasattr(libc, "inotify_init1") else -1
    if fd < 0:
        pytest.skip("no inotify on this system")
    try:
        watches = {libc.inotify_add_watch(fd, str(p).encode(), 0x20 | 0x08 | 0x10): p for p in paths}
        action()
        counts = dict.fromkeys(paths, 0)
        data = b""
        try:
            while chunk := os.read(fd, 65536):
                data += chunk
        except BlockingIOError:
            pass
        offset = 0
        while offset < len(data):
            wd, mask, _, length = struct.unpack_from("iIII", data, offset)
            counts[watches[wd]] += bool(mask & 0x20)
            offset += 16 + length
        return counts
    finally:
        os.close(fd)


def test_average_reads_each_checkpoint_once(checkpoint: Path, tmp_path: Path) -> None:
    """The mean's record names each input with the SHA-256 of the very bytes averaged: one read per file (before: the
    weights were read, then the file again for its hash, so a file replaced in between was recorded wrongly)."""
    import hashlib
    import shutil

    from ddrf.train.checkpoint import read_weights

    files = [checkpoint / "model.safetensors", tmp_path / "copy.safetensors"]
    shutil.copy(files[0], files[1])
    out = tmp_path / "mean"
    opened = _opens(files, lambda: runner.invoke(app, ["average", *map(str, files), "-o", str(out)]))
    assert opened == dict.fromkeys(files, 1)
    sources = read_weights(out)[2].training["averaged_from"]
    assert [s["sha256"] for s in sources] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]


def test_a_timing_cache_that_cannot_be_written_is_refused_before_any_build(checkpoint: Path, tmp_path: Path) -> None:
    """The timing cache is written after the first engine is built: under a file that ended in a bare '[Errno 17]
    File exists', onto a folder in an IsADirectoryError traceback, each once TensorRT had built the engine (read
    from the code; no TensorRT here). Now refused before TensorRT is loaded, so here too."""
    out = tmp_path / "model"
    assert runner.invoke(app, ["onnx", str(checkpoint), "-o", str(out), "--no-fp16"]).exit_code == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for cache, problem in ((a_file / "timing.cache", "Not a directory"), (tmp_path, "is a directory")):
        result = runner.invoke(app, ["engine", str(out), "--timing-cache", str(cache)])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith(f"ddrf-export: error: {cache}: --timing-cache cannot be written") \
            and problem in lines[0], lines
    assert not list(out.glob("*.plan"))


def test_average_into_a_file_says_so_in_one_line(tmp_path: Path) -> None:
    """`ddrf-export average A B -o AFILE`, AFILE an existing file: a bare `cannot write (File exists)` after reading
    every checkpoint. Now one line naming AFILE, that a directory is written and what --overwrite does; AFILE kept."""
    import shutil

    weights = Path(__file__).parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio2" / "model.safetensors"
    copies = [shutil.copy(weights, tmp_path / name) for name in ("a.safetensors", "b.safetensors")]
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["average", *map(str, copies), "-o", str(afile), *extra])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert str(afile) in lines[0] and "not a directory" in lines[0] and "--overwrite" in lines[0], lines[0]
        assert afile.read_text() == "mine\n"
