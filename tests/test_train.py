"""Training: datasets, a short real Landsat-7 run, checkpoints and cards, exact resume, DDP, hyperspectral, CLI."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")  # the train extra; the runtime-only install skips this module
from typer.testing import CliRunner

from ddrf.card import read_card
from ddrf.train.checkpoint import load_checkpoint, read_weights
from ddrf.train.command import app
from ddrf.train.config import TrainConfig, apply_overrides, load_config
from ddrf.train.datasets import WaldPatches, augment, draw_batch
from ddrf.train.loop import lr_lambda, train

torch.set_num_threads(1)
CONFIGS = Path(__file__).parents[1] / "configs"
TINY_MODEL = "model.overrides={base_width: 8, channel_mults: [1, 2], time_dim: 32, dropout: 0.0}"


def tiny(source: str, *extra: str) -> TrainConfig:
    """A seconds-long CPU config: width 8, two levels, 16x16 patches."""
    base = [f"data.source={source}", "data.patch=16", TINY_MODEL, "optim.batch=4", "optim.lr=2.0e-3",
            "optim.warmup=5", "optim.threads=1", "optim.device=cpu", "log.progress=false", "log.every=5",
            "log.checkpoint_every=1000"]
    return load_config(CONFIGS / "landsat7_small_cpu.yaml", base + list(extra))


@pytest.fixture(scope="module")
def fusebox(landsat7_dir: Path) -> str:
    return f"fusebox:{landsat7_dir}"


@pytest.fixture(scope="module")
def short_run(fusebox: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float], TrainConfig]:
    # residual=false: with residual learning the target (HRMS - LMS, ~0.01) starts at the zero-initialised output's
    # level and beating it takes real pansharpening, minutes not seconds; diffusing the HRMS itself shows within
    # seconds that the loop learns to use the condition.
    cfg = tiny(fusebox, "optim.steps=80", "optim.ema_start=10", "diffusion.residual=false")
    run = tmp_path_factory.mktemp("short") / "run"
    result = train(cfg, run, command="pytest short run")
    return run, result.losses, cfg


# -- configuration ---------------------------------------------------------------------------------------------
def test_config_overrides_and_errors(tmp_path: Path) -> None:
    d = apply_overrides({"optim": {"steps": 5}}, ["optim.steps=7", "model.overrides.base_width=8", "optim.lr=1e-4"])
    assert d["optim"]["steps"] == 7 and d["model"]["overrides"]["base_width"] == 8
    cfg = TrainConfig.from_dict(d)
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)  # YAML 1.1 reads 1e-4 as str
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"optim": {"stepz": 3}})
    # a value of the wrong type is one error naming the key (it used to end in a TypeError deep in training, or a
    # band list of letters)
    for override, message in (("optim.steps=abc", "steps must be int, got 'abc'"),
                              ("optim.batch=2.5", "batch must be int"),
                              ("optim.threads=abc", "threads must be int or null"),
                              ("data.bands=blue", "bands must be list\\[str\\] or null"),
                              ("optim.device=tpu", "optim.device must be auto, cpu or cuda"),
                              ("diffusion.sampling_steps=0", "sampling_steps must be >= 1")):
        with pytest.raises(ValueError, match=message):
            TrainConfig.from_dict(apply_overrides({}, [override]))
    assert TrainConfig.from_dict(apply_overrides({}, ["data.bands=[blue, nir]"])).data.bands == ["blue", "nir"]
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["optim.steps"])
    with pytest.raises(ValueError, match="target"):
        TrainConfig.from_dict({"diffusion": {"target": "score"}})
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "none.yaml")
    for path in CONFIGS.glob("*.yaml"):
        load_config(path)  # every shipped example parses and validates



def test_yaml_numbers_in_every_section_and_bad_values_are_one_line(tmp_path: Path) -> None:
    """YAML 1.1 reads `1e-4` (no dot) as a string: it is the number wherever the key takes one, in a file or on the
    command line, also in model.overrides (the network's) and model.serving (the card's); a value of the wrong type
    or range there, or a learning rate that is no finite number >= 0, is one error naming the key (before: `dropout:
    1e-1` ended in `TypeError: '<' not supported between 'str' and 'int'` inside torch, `base_width: abc` and
    `betas: [0.9]` in tracebacks, `model.serving.halo=abc` was written into the card, `optim.lr=nan` in torch's
    `Invalid learning rate: nan`, naming no key)."""
    config = tmp_path / "c.yaml"
    config.write_text("optim: {lr: 1e-4, betas: [0.9, 1e-3]}\nmodel: {overrides: {dropout: 1e-1, channel_mults: "
                      "[1, 2]}, serving: {spread_calibration: 5e0}}\n")
    cfg = load_config(config, ["optim.weight_decay=1e-2"])
    assert (cfg.optim.lr, cfg.optim.betas, cfg.optim.weight_decay) == (1e-4, [0.9, 1e-3], 1e-2)
    assert cfg.model.overrides == {"dropout": 0.1, "channel_mults": [1, 2]}
    assert cfg.model.serving == {"spread_calibration": 5.0}
    for override, message in (("model.overrides.base_width=abc", "model.overrides: base_width must be int, got 'abc'"),
                              ("model.overrides.widht=8", "model.overrides: unknown key\\(s\\) \\['widht'\\]"),
                              ("model.serving.halo=abc", "model.serving: halo must be int, got 'abc'"),
                              ("optim.betas=[0.9]", "optim.betas must be two numbers in \\[0, 1\\)"),
                              ("optim.lr=nan", "optim.lr, the learning rate, must be a finite number >= 0"),
                              ("optim.lr=-1", "optim.lr, the learning rate, must be a finite number >= 0")):
        with pytest.raises(ValueError, match=message):
            load_config(config, [override])



def test_scenes_listed_for_training_that_are_held_out_are_refused_not_dropped(fusebox: str, tmp_path: Path) -> None:
    """data.scenes=[1, 7] with P034R032 (scenes 1-6) held out: one line naming scene 1 and its acquisition, nothing
    trained (before: scene 1 was dropped without a word and the run trained on scene 7 alone)."""
    with pytest.raises(ValueError, match=r"data.scenes lists fusebox_1, of held-out acquisition P034R032 "
                                         r"\(data.test_acquisitions\)"):
        train(tiny(fusebox, "data.scenes=[1, 7]", "optim.steps=1"), tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists()



def test_a_held_out_acquisition_that_is_none_and_a_scene_given_twice_are_refused(fusebox: str, tmp_path: Path) -> None:
    """data.test_acquisitions=[P034R03] (a typo of P034R032) held nothing out, so the run trained on the benchmark's
    held-out images while its card said P034R03 was held out; data.source=scenes:A,A trained on A at double weight
    (ddrf-finetune already refused it). Both are one line now, before any training."""
    scene = Path(__file__).parent / "data/scenes/landsat8_c1/LC08_L1TP_016037_20170813_20170814_01_RT"
    with pytest.raises(ValueError, match=r"data.test_acquisitions: P034R03 is no FuseBox acquisition \(they are "
                                         r"P034R032, P090R083, "):
        train(tiny(fusebox, "data.test_acquisitions=[P034R03]", "optim.steps=1"), tmp_path / "a")
    with pytest.raises(ValueError, match=rf"{scene}/: given twice in data.source; name each once"):
        train(tiny(f"scenes:{scene},{scene}/", "data.test_acquisitions=[]", "data.bands=null", "optim.steps=1"),
              tmp_path / "b")
    assert not (tmp_path / "a" / "model.safetensors").exists() and not (tmp_path / "b" / "model.safetensors").exists()


def test_lr_schedule_warmup_then_cosine() -> None:
    f = lr_lambda(10, 110, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))


# -- datasets --------------------------------------------------------------------------------------------------
def test_wald_patches_are_normalised_aligned_and_exclude_test(landsat7_dir: Path) -> None:
    from ddrf.data import load_fusebox, split_by_acquisition

    train_pairs, test_pairs = split_by_acquisition(load_fusebox(landsat7_dir))
    assert {p.acquisition for p in test_pairs} == {"P034R032"}
    ds = WaldPatches(train_pairs, patch=16, multiple=2, augment=True)
    b = draw_batch(ds, np.random.default_rng(0), 32)
    assert b["lms"].shape == (32, 4, 16, 16) and b["pan"].shape == (32, 1, 16, 16) and b["gt"].shape == b["lms"].shape
    assert b["gt"].dtype == torch.float32
    for key in ("lms", "pan", "gt"):
        assert 0.0 <= float(b[key].min()) and float(b[key].max()) <= 1.0 + 1e-6
    # LMS is a (blurred) estimate of the reference on the same grid: far closer than a shuffled reference
    assert (b["gt"] - b["lms"]).abs().mean() < 0.3 * (b["gt"] - b["lms"].roll(1, 0)).abs().mean()
    # reduced resolution: the degraded pair is one ratio coarser than the stored pair
    assert ds.images[0]["gt"].shape[1:] == train_pairs[0].ms.shape[:2]
    with pytest.raises(ValueError, match="multiple"):
        WaldPatches(train_pairs, patch=18, multiple=4)


def test_a_teacher_gives_the_reference_and_the_undegraded_pairs_join(landsat7_dir: Path) -> None:
    from ddrf.data import load_fusebox, split_by_acquisition
    from ddrf.radiometry import scene_radiometry

    pairs, _ = split_by_acquisition(load_fusebox(landsat7_dir))
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def teacher(pan: np.ndarray, ms: np.ndarray) -> np.ndarray:  # any fusion will do: nearest, brightened
        fused = 1.1 * np.repeat(np.repeat(ms, 2, axis=0), 2, axis=1)
        seen.append((pan.copy(), ms.copy(), fused))
        return fused

    plain = WaldPatches(pairs, patch=16, multiple=2, augment=False, normalisation="scene")
    taught = WaldPatches(pairs, patch=16, multiple=2, augment=False, normalisation="scene", teacher=teacher,
                         full_resolution=True)
    n = len(pairs)
    assert len(taught.images) == len(seen) == 2 * n
    for own, image in zip(plain.images, taught.images):  # the same degraded inputs, another reference
        assert np.array_equal(own["lms"], image["lms"]) and np.array_equal(own["pan"], image["pan"])
        assert not np.allclose(own["gt"], image["gt"])
    for pair, (pan, ms, _) in zip(pairs, seen[:n]):  # first each pair degraded by Wald's protocol
        h, w = (d - d % 2 for d in pair.ms.shape[:2])
        assert pan.shape == (h, w) and ms.shape == (h // 2, w // 2, pair.ms.shape[2])
    for pair, (pan, ms, _) in zip(pairs, seen[n:]):  # then each pair at its own scale, as stored
        assert np.array_equal(pan, pair.pan) and np.array_equal(ms, pair.ms)
    for image, (pan, ms, fused) in zip(taught.images, seen):  # every reference: the teacher's output, normalised
        radiometry = scene_radiometry(taught.normalisation, ms, pan[..., None])
        np.testing.assert_allclose(image["gt"], radiometry.ms_to_model(fused).transpose(2, 0, 1), rtol=1e-6)
        assert image["pan"].shape[1:] == pan.shape
    with pytest.raises(ValueError, match="teacher"):
        WaldPatches(pairs, patch=16, multiple=2, full_resolution=True)


def test_distillation_from_the_bundled_model(fusebox: str, tmp_path: Path) -> None:
    from ddrf.assets import BUNDLED_MODELS
    from ddrf.train.sources import build_source

    teacher = BUNDLED_MODELS / "landsat_ratio2"
    cfg = tiny(fusebox, "optim.steps=2", f"data.teacher={teacher}", "data.normalisation=scene")
    taught, _ = build_source(cfg.data, 8)
    plain, _ = build_source(tiny(fusebox, "data.normalisation=scene").data, 8)
    for own, image in zip(plain.images, taught.images):
        # the teacher's fusion lies nearer the true reference than the LMS does (0.72x on these 8-bit crops, whose
        # quantisation is much of what is left); a misaligned or wrongly scaled output would not
        assert np.abs(image["gt"] - own["gt"]).mean() < 0.8 * np.abs(own["lms"] - own["gt"]).mean()
    result = train(cfg, tmp_path / "run")
    recorded = read_card(tmp_path / "run" / "card.json").training["teacher"]
    assert recorded["model"] == str(teacher) and recorded["graphs"] == read_card(teacher / "card.json").hashes
    assert result.end_step == 2
    with pytest.raises(ValueError, match="bands blue, green, red"):
        build_source(tiny(fusebox, f"data.teacher={teacher}", "data.bands=[blue, green, red]").data, 8)
    with pytest.raises(ValueError, match="needs data.teacher"):
        tiny(fusebox, "data.teacher_full_resolution=true")
    with pytest.raises(ValueError, match="takes PAN/MS pairs"):
        build_source(tiny(fusebox.replace("fusebox:", "pancollection:"), f"data.teacher={teacher}").data, 8)


def test_augment_applies_one_transform_to_all_arrays() -> None:
    a = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    seen = set()
    for seed in range(40):
        out = augment({"lms": a, "gt": a.copy(), "pan": a[:1].copy()}, np.random.default_rng(seed))
        assert np.array_equal(out["lms"], out["gt"]) and np.array_equal(out["lms"][:1], out["pan"])
        seen.add(out["lms"].tobytes())
    assert len(seen) == 8  # the dihedral group


# -- the short real run -----------------------------------------------------------------------------------------
def test_short_training_run_lowers_loss(short_run: tuple[Path, list[float], TrainConfig]) -> None:
    """On real Landsat-7 patches the loss falls clearly below where the zero-initialised output starts it."""
    run, losses, cfg = short_run
    assert len(losses) == 80 and all(np.isfinite(losses))
    first, last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
    assert last < 0.3 * first, (first, last)
    from ddrf.train.diffusion import Diffusion
    from ddrf.train.sources import build_source

    model, card = load_checkpoint(run, ema=False)
    source, _ = build_source(cfg.data, model.config.multiple)
    batch = draw_batch(source, np.random.default_rng(123), 16)  # a fixed batch, all noise levels
    diffusion = Diffusion(target=card.target, residual=card.residual)
    x0 = diffusion.clean_variable(batch["gt"], batch["lms"])
    t = torch.linspace(0, 999, 16).round().long()
    x_t, target = diffusion.training_pair(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        trained = float((model(x_t, t.float(), batch["lms"], batch["pan"]) - target).abs().mean())
    untrained = float(target.abs().mean())  # what the zero-initialised network scores
    assert trained < 0.3 * untrained, (trained, untrained)


def test_checkpoint_round_trip_and_card(short_run: tuple[Path, list[float], TrainConfig], landsat7_dir: Path) -> None:
    run, _, cfg = short_run
    model, card = load_checkpoint(run)
    model_state, ema_state, st_card = read_weights(run / "model.safetensors")
    assert st_card.to_dict() == read_card(run / "card.json").to_dict() == card.to_dict()
    assert any(not torch.equal(model_state[k], ema_state[k]) for k in model_state)  # EMA is its own copy
    assert card.bands == ["blue", "green", "red", "nir"] and card.ratio == 2 and card.sensor == "Landsat7"
    assert card.normalisation.kind == "bit_depth" and card.normalisation.bits == 8
    assert card.target == "x0" and not card.residual and card.schedule["num_timesteps"] == 1000
    t = card.training
    assert t["iterations"] == 80 and t["seed"] == 0 and t["command"] == "pytest short run"
    assert t["acquisitions_held_out"] == ["P034R032"] and "P034R032" not in t["acquisitions_used"]
    assert t["config"]["optim"]["steps"] == 80
    # the loaded model reproduces the EMA weights' outputs exactly
    from ddrf.model import DDRF, DDRFConfig

    ref = DDRF(DDRFConfig.from_dict(card.model)).eval()
    ref.load_state_dict(ema_state)
    g = torch.Generator().manual_seed(0)
    x, lms, pan = (torch.rand(1, c, 16, 16, generator=g) for c in (4, 4, 1))
    t_in = torch.tensor([500.0])
    with torch.no_grad():
        assert torch.equal(model(x, t_in, lms, pan), ref(x, t_in, lms, pan))
    rows = (run / "train_log.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,time" and len(rows) == 1 + 80 // 5



def test_card_beside_the_weights_is_the_card_of_record(short_run: tuple[Path, list[float], TrainConfig],
                                                       tmp_path: Path) -> None:
    """An export's card.json (halo, scene statistics, calibrated spread) wins over the training card in the weights'
    metadata; a card.json of another network is refused, naming it."""
    import shutil

    from ddrf.card import write_card

    run, _, _ = short_run
    folder = tmp_path / "exported"
    folder.mkdir()
    shutil.copy(run / "model.safetensors", folder / "model.safetensors")
    assert load_checkpoint(folder)[1].halo == read_weights(run)[2].halo == 32  # no card.json: the embedded card
    card = read_card(run / "card.json")
    card.halo, card.spread_calibration, card.scene_statistics = 64, 7.5, True
    write_card(card, folder / "card.json")
    for path in (folder, folder / "model.safetensors"):
        loaded = load_checkpoint(path)[1]
        assert (loaded.halo, loaded.spread_calibration, loaded.scene_statistics) == (64, 7.5, True)
    card.ratio = 4
    write_card(card, folder / "card.json")
    with pytest.raises(ValueError, match=r"card\.json: describes another network than model\.safetensors \(ratio"):
        read_weights(folder)


def test_trained_model_samples(short_run: tuple[Path, list[float], TrainConfig], landsat7_dir: Path) -> None:
    from ddrf.schedule import CosineSchedule
    from ddrf.train.diffusion import Diffusion

    run, _, _ = short_run
    model, card = load_checkpoint(run)
    diff = Diffusion(CosineSchedule.from_dict(card.schedule), card.target, card.residual)
    g = torch.Generator().manual_seed(0)
    lms, pan = torch.rand(2, 4, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    a = diff.sample(model, lms, pan, 2, generator=torch.Generator().manual_seed(1))
    b = diff.sample(model, lms, pan, 2, generator=torch.Generator().manual_seed(1))
    assert a.shape == lms.shape and torch.isfinite(a).all() and torch.equal(a, b)  # eta=0: seeded -> repeatable


def _weights(run: Path) -> dict[str, torch.Tensor]:
    model, ema, _ = read_weights(run)
    return {**{f"m.{k}": v for k, v in model.items()}, **{f"e.{k}": v for k, v in ema.items()}}


def test_resume_is_exact(fusebox: str, tmp_path: Path) -> None:
    extra = ["optim.steps=8", "optim.batch=2", "optim.ema_start=2", "model.overrides.dropout=0.2"]
    cfg = tiny(fusebox, *extra)
    train(cfg, tmp_path / "straight")
    first = train(cfg, tmp_path / "split", stop_at=4)
    assert first.end_step == 4
    with pytest.raises(ValueError, match="--resume or --overwrite"):
        train(cfg, tmp_path / "split")
    # the saved optimiser state keeps its learning rate: a new one was written into config.yaml but not used
    with pytest.raises(ValueError, match=r"optim.lr differs from the run being resumed \(the optimiser"):
        train(tiny(fusebox, *extra, "optim.lr=0.1"), tmp_path / "split", resume=True)
    second = train(cfg, tmp_path / "split", resume=True)
    assert second.start_step == 4 and second.end_step == 8
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = (tmp_path / "split" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["4", "5", "8"]  # every 5 steps + the end of each invocation


# -- DDP --------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, source: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from ddrf.train.loop import Trainer, cleanup_distributed

    params: dict[str, torch.Tensor] = {}
    original = Trainer.save

    def save_and_capture(self: Trainer) -> None:
        params.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        original(self)

    Trainer.save = save_and_capture  # type: ignore[method-assign]
    try:
        result = train(tiny(source, "optim.steps=3", "optim.batch=4"), Path(out) / "run")
        torch.save({"params": params, "losses": result.losses}, Path(out) / f"rank{rank}.pt")
    finally:
        cleanup_distributed()


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_replicas_identical(fusebox: str, tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), fusebox, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["params"].keys() == r1["params"].keys() and r0["params"]
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    assert r0["losses"] != r1["losses"]  # the ranks drew different batches
    card = read_card(tmp_path / "run" / "card.json")
    assert card.training["world_size"] == 2 and card.training["iterations"] == 3


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains(fusebox: str, tmp_path: Path, precision: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = tiny(fusebox, "optim.steps=20", "optim.device=cuda", f"optim.precision={precision}")
    result = train(cfg, tmp_path / "run")
    assert all(np.isfinite(result.losses)) and np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    model, _ = load_checkpoint(tmp_path / "run")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights


def test_geotiff_source_trains(landsat8_paths: tuple[Path, list[Path]], tmp_path: Path) -> None:
    pan, ms = landsat8_paths
    source = "geotiff:" + ",".join(str(p) for p in [pan, *ms])
    cfg = tiny(source, "optim.steps=2", "optim.batch=2", "data.sensor=landsat-8", "data.bands=[blue,green,red,nir]")
    result = train(cfg, tmp_path / "run")
    assert all(np.isfinite(result.losses))
    card = read_card(tmp_path / "run" / "card.json")
    assert card.sensor == "Landsat8" and card.normalisation.bits == 12 and card.ratio == 2
    assert card.training["acquisitions_used"] == ["l8_B8"]


def test_a_dead_band_is_said_once_at_start_up_as_ddrf_run_says_it(landsat8_paths: tuple[Path, list[Path]],
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A band file all 0 without a nodata tag trained silently while ddrf-run said it: now one line, by the same
    rule and words (ddrf.geometry.constant_files, constant_fact), before the first step."""
    import rasterio

    pan, ms = landsat8_paths
    red = tmp_path / ms[2].name
    with rasterio.open(ms[2]) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(red, "w", **{**profile, "nodata": None}) as dst:  # no tag: 0 is data
        dst.write(np.zeros_like(data))
    source = "geotiff:" + ",".join(str(p) for p in [pan, ms[0], ms[1], red, ms[3]])
    cfg = tiny(source, "optim.steps=1", "optim.batch=2", "data.sensor=generic", "data.bands=[blue,green,red,nir]")
    train(cfg, tmp_path / "run")
    said = [line for line in capsys.readouterr().err.splitlines() if "constant" in line]
    assert said == [f"{red}: band 1 (red) constant (every valid pixel is 0); training learns nothing of its red band "
                    "from this pair: check the file"]


# -- hyperspectral ----------------------------------------------------------------------------------------------
def _hyperspectral_h5(path: Path, landsat7_dir: Path, bands: int = 102, ratio: int = 4) -> None:
    """An MHIF-schema file (GT, LRHSI, RGB, HSI_up in [0, 1]) made from real Landsat-7 crops: the 4 measured
    bands are interpolated to `bands` spectral samples; RGB is the red/green/blue bands; LRHSI a block mean."""
    from ddrf.data import load_fusebox

    pairs = load_fusebox(landsat7_dir, scenes=[7, 13])
    gts, rgbs = [], []
    for p in pairs:
        ms = p.ms[:64, :64] / p.max_value  # (64, 64, 4): blue, green, red, nir
        grid = np.linspace(0, 3, bands)
        cube = np.stack([np.interp(grid, np.arange(4), px) for px in ms.reshape(-1, 4)]).reshape(64, 64, bands)
        for y in (0, 32):
            gts.append(cube[y:y + 32, :32].transpose(2, 0, 1))
            rgbs.append(ms[y:y + 32, :32, [2, 1, 0]].transpose(2, 0, 1))
    gt = np.stack(gts).astype(np.float32)
    n, c, h, w = gt.shape
    lr = gt.reshape(n, c, h // ratio, ratio, w // ratio, ratio).mean(axis=(3, 5))
    with h5py.File(path, "w") as f:
        f["GT"], f["RGB"], f["LRHSI"] = gt, np.stack(rgbs).astype(np.float32), lr
        f["HSI_up"] = np.repeat(np.repeat(lr, ratio, axis=2), ratio, axis=3)


def test_hyperspectral_mode_trains(landsat7_dir: Path, tmp_path: Path) -> None:
    h5 = tmp_path / "mhif.h5"
    _hyperspectral_h5(h5, landsat7_dir)
    cfg = tiny(f"pancollection:{h5}", "data.patch=16", "optim.steps=3", "optim.batch=2", "data.bands=null")
    result = train(cfg, tmp_path / "run")
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    card = read_card(tmp_path / "run" / "card.json")
    assert len(card.bands) == 102 and card.guide_bands == ["guide1", "guide2", "guide3"] and card.ratio == 4
    assert card.model["ms_bands"] == 102 and card.model["guide_bands"] == 3
    assert card.normalisation.kind == "fixed" and card.normalisation.ms_scale == [1.0] * 102


# -- command line -----------------------------------------------------------------------------------------------
def test_cli_refuses_overwrite_and_reports_missing_data(fusebox: str, tmp_path: Path) -> None:
    runner = CliRunner()
    cfg = str(CONFIGS / "landsat7_small_cpu.yaml")
    run = tmp_path / "run"
    run.mkdir()
    (run / "card.json").write_text("{}")
    res = runner.invoke(app, [cfg, f"data.source={fusebox}", "--out", str(run)])
    assert res.exit_code != 0 and "--overwrite" in res.output and (run / "card.json").read_text() == "{}"
    missing = tmp_path / "nowhere"
    res = runner.invoke(app, [cfg, f"data.source=fusebox:{missing}", "--out", str(tmp_path / "new")])
    assert res.exit_code != 0 and str(missing) in res.output and "does not exist" in res.output
    res = runner.invoke(app, [cfg, "data.source=hdf5:x.h5", "--out", str(tmp_path / "new")])
    assert res.exit_code != 0 and "pancollection:PATH" in res.output
    res = runner.invoke(app, [cfg, f"data.source={fusebox}", "--out", str(tmp_path / "new2"), "--resume"])
    assert res.exit_code != 0 and "nothing to resume" in res.output
    assert json.loads((run / "card.json").read_text()) == {}


def test_overwrite_clears_a_run_only_once_the_new_one_has_started_and_never_its_own_inputs(
        fusebox: str, short_run: tuple[Path, list[float], TrainConfig], tmp_path: Path) -> None:
    """--overwrite used to delete the run in --out first: a bad option then left it empty, and an init (or the
    config) inside --out was deleted before it was read. Now both are refused with the earlier run untouched."""
    import shutil

    run = Path(shutil.copytree(short_run[0], tmp_path / "run"))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    cfg = str(CONFIGS / "landsat7_small_cpu.yaml")
    common = [f"data.source={fusebox}", "data.patch=16", TINY_MODEL, "optim.steps=2", "optim.batch=2",
              "optim.threads=1", "log.progress=false"]
    runner = CliRunner()
    bad_lr = runner.invoke(app, [cfg, *common, "optim.lr=-1", "--out", str(run), "--overwrite"])
    assert bad_lr.exit_code == 2 and "learning rate" in bad_lr.output.lower()
    from_itself = runner.invoke(app, [cfg, *common, f"model.init={run}", "--out", str(run), "--overwrite"])
    assert from_itself.exit_code == 2 and "which --overwrite clears" in from_itself.output
    config = Path(shutil.copy(cfg, run / "mine.yaml"))
    in_run = runner.invoke(app, [str(config), *common, "--out", str(run), "--overwrite"])
    assert in_run.exit_code == 2 and "mine.yaml" in in_run.output
    config.unlink()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    elsewhere = runner.invoke(app, [cfg, *common, f"model.init={run}", "--out", str(tmp_path / "next")])
    assert elsewhere.exit_code == 0, elsewhere.output
    again = runner.invoke(app, [cfg, *common, "--out", str(run), "--overwrite"])
    assert again.exit_code == 0 and (run / "model.safetensors").read_bytes() != before["model.safetensors"]


def test_resume_check_accepts_the_same_data_by_another_path_and_names_what_differs(fusebox: str,
                                                                                   tmp_path: Path) -> None:
    """A run started with an absolute data path resumes with a relative one to the same folder; a real change is
    refused naming the key."""
    from ddrf.train.loop import CONFIG, _check_resume_config

    cfg = tiny(fusebox)
    (tmp_path / CONFIG).write_text(yaml.safe_dump(cfg.to_dict()))
    relative = "fusebox:" + os.path.relpath(fusebox.partition(":")[2])
    _check_resume_config(tmp_path, tiny(relative))
    with pytest.raises(ValueError, match=r"data\.patch differs"):
        _check_resume_config(tmp_path, tiny(relative, "data.patch=32"))


def test_warm_start_continues_from_the_init_weights_and_refuses_another_topology(
        short_run: tuple[Path, list[float], TrainConfig], fusebox: str, tmp_path: Path) -> None:
    init, losses, _ = short_run
    _, init_ema, init_card = read_weights(init)
    # zero LR: the weights cannot move, so they must equal the init's EMA after the run
    cfg = tiny(fusebox, "optim.steps=3", "optim.lr=0.0", "diffusion.residual=false", f"model.init={init}")
    result = train(cfg, tmp_path / "warm")
    model, ema, card = read_weights(tmp_path / "warm")
    assert all(torch.equal(model[k], init_ema[k]) for k in init_ema)
    assert card.model == init_card.model
    # a fresh start at the same settings starts from the untrained loss, the warm start near the trained one
    fresh = train(tiny(fusebox, "optim.steps=3", "optim.lr=0.0", "diffusion.residual=false"), tmp_path / "fresh")
    assert np.mean(result.losses) < np.mean(fresh.losses)
    wider = tiny(fusebox, "optim.steps=1", f"model.init={init}", "model.overrides.base_width=16")
    with pytest.raises(ValueError, match="different topology.*base_width"):
        train(wider, tmp_path / "wider")


def test_warm_start_into_another_residual_scale_keeps_the_one_step_sample(fusebox: str, tmp_path: Path) -> None:
    """An unscaled residual model warm-started at residual_scale 4 (zero LR): its output layer is rescaled, so one
    step from pure noise fuses the same image as the init, while every other weight is the init's."""
    from ddrf.schedule import CosineSchedule
    from ddrf.train.diffusion import Diffusion

    init = tmp_path / "init"
    train(tiny(fusebox, "optim.steps=6", "optim.ema_start=0"), init)  # the zero output layer moves off zero
    warm = tmp_path / "warm"
    train(tiny(fusebox, "optim.steps=2", "optim.lr=0.0", "diffusion.residual_scale=4.0", f"model.init={init}"), warm)
    (_, init_ema, _), (_, warm_ema, card) = read_weights(init), read_weights(warm)
    assert card.residual_scale == 4.0
    scaled = {k for k in init_ema if not torch.equal(init_ema[k], warm_ema[k])}
    assert scaled == {"out.2.weight", "out.2.bias"} and init_ema["out.2.weight"].abs().max() > 0
    torch.testing.assert_close(warm_ema["out.2.weight"], 4 * init_ema["out.2.weight"])
    generator = torch.Generator().manual_seed(0)
    lms, pan = torch.rand(1, 4, 32, 32, generator=generator), torch.rand(1, 1, 32, 32, generator=generator)
    noise = torch.randn(1, 4, 32, 32, generator=generator)
    fused = []
    for run in (init, warm):
        model, run_card = load_checkpoint(run)
        diffusion = Diffusion(CosineSchedule.from_dict(run_card.schedule), run_card.target, run_card.residual,
                              run_card.residual_scale)
        with torch.no_grad():
            fused.append(diffusion.sample(model, lms, pan, 1, noise=noise))
    assert not torch.equal(fused[0], lms)
    torch.testing.assert_close(fused[1], fused[0], rtol=1e-5, atol=1e-6)


def test_pairs_of_two_band_sets_are_refused_naming_both() -> None:
    """The refusal said only 'ratio/bands differ': which of the two, and what each pair has, is what a user needs."""
    from ddrf.data.pair import Pair

    def pair(name: str, bands: tuple[str, ...], ratio: int = 2) -> Pair:
        return Pair(name, name, np.ones((32, 32)), np.ones((32 // ratio, 32 // ratio, len(bands))), ratio,
                    "generic", 11, bands)

    four = pair("a", ("blue", "green", "red", "nir"))
    with pytest.raises(ValueError, match=r"pair 'b': bands blue,green,red,nir,swir1, pair 'a' bands "
                                         r"blue,green,red,nir: one run trains one band set"):
        WaldPatches([four, pair("b", ("blue", "green", "red", "nir", "swir1"))], patch=16)
    with pytest.raises(ValueError, match=r"pair 'c': ratio 4, pair 'a' ratio 2"):
        WaldPatches([four, pair("c", ("blue", "green", "red", "nir"), ratio=4)], patch=16)


def test_resume_that_would_train_nothing_says_so(fusebox: str, tmp_path: Path) -> None:
    """--resume --stop-at a step the run has passed is refused before config.yaml is rewritten (before: exit 0,
    nothing trained, config.yaml saying the new optim.steps); a finished run resumed says there is nothing to train
    (before: no line at all)."""
    cfg = str(CONFIGS / "landsat7_small_cpu.yaml")
    common = [f"data.source={fusebox}", "data.patch=16", TINY_MODEL, "optim.batch=2", "optim.warmup=1",
              "optim.threads=1", "optim.device=cpu", "log.progress=false"]
    run = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(app, [cfg, *common, "optim.steps=4", "--stop-at", "2", "--out", str(run)]).exit_code == 0
    config = (run / "config.yaml").read_text()
    late = runner.invoke(app, [cfg, *common, "optim.steps=8", "--stop-at", "1", "--out", str(run), "--resume"])
    assert late.exit_code == 2 and f"--stop-at 1: the run in {run} is already at step 2" in late.output
    assert (run / "config.yaml").read_text() == config
    assert runner.invoke(app, [cfg, *common, "optim.steps=4", "--out", str(run), "--resume"]).exit_code == 0
    done = runner.invoke(app, [cfg, *common, "optim.steps=4", "--out", str(run), "--resume"])
    assert done.exit_code == 0 and f"nothing to train: the run in {run} is at step 4 of optim.steps 4" in done.output
