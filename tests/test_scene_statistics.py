"""Issue 9, item 1 for v1 networks: statistics taken once per scene (ddrf.model.scene) instead of per window.

A v1 network's GroupNorm moments, wavelet-attention contexts and self-attention keys span its window, so a tiled
scene changed with the tile. With scene statistics the network records them once over the scene's context windows
and replays them in every window: the output is then a function of the scene, not of the tiling.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the train extra; the torch-free checks are in test_tile_invariance.py

from ddrf.card import ModelCard, Normalisation
from ddrf.export.onnx_export import export_model
from ddrf.model import DDRF, DDRFConfig
from ddrf.model.scene import recorded, replayed
from ddrf.model_dir import MissingGraph, ModelDir
from ddrf.runtime.fuser import Fuser
from ddrf.scenes.arrays import ArrayScene, tile_differences
from ddrf.scenes.engines import ModelEngine
from ddrf.train.diffusion import Diffusion
from ddrf.train.tiled import TorchEngine, fuse_tiled, random_model

BOUND = {"p99": 0.005, "max": 0.02}  # issue 9: of each band's standard deviation


def v1_model() -> DDRF:
    """A random three-level v1 network with middle self-attention: every kind of window statistic."""
    config = DDRFConfig(4, 1, base_width=8, channel_mults=(1, 2, 2), enc_blocks=1, dec_blocks=2, attn_levels=(),
                        heads=2, dropout=0.0, wave_heads=2, time_dim=32, norm_groups=4)
    return random_model(config, seed=3)


def card_of(model: DDRF, scene_statistics: bool, halo: int = 32, steps: int = 1) -> ModelCard:
    return ModelCard(model=model.config.to_dict(), bands=["blue", "green", "red", "nir"], ratio=2,
                     sensor="Landsat8", normalisation=Normalisation(kind="bit_depth", bits=12), sampling_steps=steps,
                     scene_statistics=scene_statistics, halo=halo)


def textured_scene(seed: int = 0, size: int = 320) -> ArrayScene:
    """Smooth random fields with edges, 12-bit: enough structure for window statistics to differ between tiles."""
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter

    pan = gaussian_filter(rng.standard_normal((size, size)), 3) * 2500 + 1800
    pan[size // 3:, : size // 2] += 900  # a field edge: windows on either side see different statistics
    ms = np.stack([pan.reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3)) * g for g in (0.8, 0.9, 1.0, 1.2)], -1)
    return ArrayScene(np.clip(pan, 0, 4095), np.clip(ms, 0, 4095), 2)


def test_replaying_what_one_image_recorded_is_that_image_with_window_statistics() -> None:
    model = v1_model()
    rng = torch.Generator().manual_seed(0)
    x, lms, pan = (torch.randn(1, c, 32, 32, generator=rng) for c in (4, 4, 1))
    t = torch.full((1,), 700.0)
    with torch.no_grad():
        window = model(x, t, lms, pan)
        stats, tokens = recorded(model.scene_tape, lambda: model(x, t, lms, pan))
        replay = replayed(model.scene_tape, stats, tokens, lambda: model(x, t, lms, pan))
        other = replayed(model.scene_tape, stats * 1.1, tokens, lambda: model(x, t, lms, pan))
    assert float((replay - window).abs().max()) < 1e-5
    assert float((other - window).abs().max()) > 1e-3  # the replayed statistics are what the network uses
    assert model.scene_tape.mode == "window"


def test_scene_statistics_make_a_v1_network_tile_invariant() -> None:
    """Through ddrf-run's windows and blend (torch engine): with window statistics the tiled output breaks issue
    9's bound; with scene statistics the same weights meet it."""
    model, scene, tile = v1_model(), textured_scene(), 192
    figures = {}
    for scene_statistics in (False, True):
        engine = TorchEngine(model, card_of(model, scene_statistics, halo=48), steps=1)
        whole = fuse_tiled(engine, scene, tile=1024)
        figures[scene_statistics] = tile_differences({tile: fuse_tiled(engine, scene, tile)}, whole)[tile]
    assert figures[False]["p99"] > BOUND["p99"] or figures[False]["max"] > BOUND["max"], figures
    assert figures[True]["p99"] <= BOUND["p99"] and figures[True]["max"] <= BOUND["max"], figures


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[DDRF, Path]:
    model = v1_model()
    out = tmp_path_factory.mktemp("scene_model")
    # two steps: the denoiser's statistics are recorded and replayed per step, in order
    export_model(model, card_of(model, True, halo=48, steps=2), out, unrolled_steps=(2,), fp16=True)
    return model, out


def test_export_writes_the_scene_pass_and_sampler_only(exported: tuple[DDRF, Path]) -> None:
    _, out = exported
    assert sorted(p.name for p in out.glob("*.onnx")) == sorted(
        f"{stem}{tail}.onnx" for stem in ("scene_k2", "sampler_k2") for tail in ("", "_fp16"))
    card = ModelDir.open(out).card
    assert card.scene_statistics and card.halo == 48
    with pytest.raises(ValueError, match="unrolled samplers only"):
        export_model(exported[0], card_of(exported[0], True), out / "again", unrolled_steps=())


def test_runtime_scene_graphs_match_pytorch(exported: tuple[DDRF, Path]) -> None:
    """The ONNX scene pass over two context windows and the sampler over a third window replay what torch does."""
    model, out = exported
    steps, rng = 2, np.random.default_rng(5)
    context = [rng.uniform(0.05, 0.6, (2, c, 48, 48)).astype(np.float32) for c in (4, 1)]
    context.append(rng.standard_normal((2, 4, 48, 48)).astype(np.float32))
    window = [a[:1, :, :32, :32].copy() + 0.01 for a in context]
    diffusion = Diffusion(target="x0", residual=True)

    def run(lms: np.ndarray, pan: np.ndarray, noise: np.ndarray) -> torch.Tensor:
        return diffusion.sample(model, torch.from_numpy(lms), torch.from_numpy(pan), steps,
                                noise=torch.from_numpy(noise))

    with torch.no_grad():
        stats, tokens = recorded(model.scene_tape, lambda: run(*context))
        want = replayed(model.scene_tape, stats, tokens, lambda: run(*window)).numpy()
    for precision, tolerance in (("fp32", 1e-4), ("fp16", 2e-2)):
        fuser = Fuser(out, steps=steps, precision=precision)
        scene = fuser.scene_context(*context)
        got = fuser.fuse_normalised(*window, context=scene)
        assert float(np.abs(got - want).max() / np.abs(want).max()) < tolerance, precision
    assert np.allclose(scene["scene_stats"], stats.numpy(), atol=1e-3)


def test_runtime_tiles_agree_through_the_model_engine(exported: tuple[DDRF, Path]) -> None:
    from ddrf.scenes.arrays import fuse_arrays

    _, out = exported
    engine, scene = ModelEngine(Fuser(out, threads=1)), textured_scene(1, 256)
    whole = fuse_arrays(engine, scene, 1024)
    for tile, batch in ((128, 1), (192, 3)):
        figures = tile_differences({tile: fuse_arrays(engine, scene, tile, batch=batch)}, whole)[tile]
        assert figures["p99"] <= BOUND["p99"] and figures["max"] <= BOUND["max"], (tile, batch, figures)


def test_a_scene_statistics_model_needs_its_unrolled_graphs(exported: tuple[DDRF, Path]) -> None:
    _, out = exported
    with pytest.raises(MissingGraph, match=r"_k4.onnx: missing.*--scene-statistics --unrolled 4"):
        Fuser(out, steps=4)
    with pytest.raises(ValueError, match="deterministically"):
        Fuser(out, eta=1.0)
    assert Fuser(out, unrolled=False).unrolled  # the window-statistics graphs are never what runs


def test_card_fields_round_trip_and_old_cards_read_with_the_old_behaviour() -> None:
    model = v1_model()
    card = card_of(model, True, halo=80)
    again = ModelCard.from_json(card.to_json())
    assert again.scene_statistics and again.halo == 80
    old = card.to_dict()
    del old["scene_statistics"], old["halo"]
    legacy = ModelCard.from_dict(old)
    assert not legacy.scene_statistics and legacy.halo == 32
    with pytest.raises(ValueError, match="v1 networks"):
        ModelCard.from_dict({**card.to_dict(), "model": {**card.model, "arch": "v2"}})
    with pytest.raises(ValueError, match="halo"):
        ModelCard.from_dict({**card.to_dict(), "halo": -1})


def test_ddrf_export_refuses_scene_statistics_it_cannot_serve(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ddrf.export.command import app

    weights = Path(__file__).parents[1] / "ddrf" / "assets" / "models"
    runner = CliRunner()
    no_steps = runner.invoke(app, ["onnx", str(weights / "landsat_ratio2" / "model.safetensors"), "-o",
                                   str(tmp_path / "a"), "--no-fp16", "--scene-statistics"])
    assert no_steps.exit_code == 1 and "unrolled samplers only" in no_steps.output
    v2 = runner.invoke(app, ["onnx", str(weights / "landsat_ratio4" / "model.safetensors"), "-o",
                             str(tmp_path / "b"), "--no-fp16", "--scene-statistics", "--unrolled", "1"])
    assert v2.exit_code == 1 and "v1 networks" in v2.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
