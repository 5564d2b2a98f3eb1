"""Issue 13: the unrolled sampler leaves uncomputed the window border that ddrf-run's blend gives no weight.

With no statistic spanning the window (v2, or v1 replaying a scene's), the decoder is local, so a prediction without
its outer margin is exactly the interior of the whole one (ddrf.model.DDRF.decoder_crops). The card's
output_margin says how wide that border is; the runtime fills it with zeros, or widens inputs whose caller keeps
more than the margin allows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from test_scene_statistics import card_of, textured_scene, v1_model  # noqa: E402  (the same tiny v1 network)

from ddrf.card import ModelCard, unweighted_border  # noqa: E402
from ddrf.export.onnx_export import output_margin  # noqa: E402
from ddrf.model import DDRFConfig  # noqa: E402
from ddrf.model.scene import recorded, replayed  # noqa: E402
from ddrf.model_dir import ModelDir  # noqa: E402
from ddrf.runtime.fuser import Fuser  # noqa: E402
from ddrf.scenes.arrays import fuse_arrays  # noqa: E402
from ddrf.scenes.engines import ModelEngine  # noqa: E402
from ddrf.scenes.tiling import axis_weights  # noqa: E402
from ddrf.train.tiled import random_model  # noqa: E402

SIZE = 96


def inputs(seed: int, size: int = SIZE, batch: int = 1) -> tuple[torch.Tensor, ...]:
    rng = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, c, size, size, generator=rng) for c in (4, 4, 1))  # x_t, lms, pan


@pytest.mark.parametrize("margin", [3, 5, 12, 17, 30])
def test_a_cropped_prediction_is_the_interior_of_the_whole_one(margin: int) -> None:
    """v1 replaying scene statistics and v2: equal to float rounding at margins that crop one, two or three levels;
    the crops at those margins are not all zero (the decoder really does less)."""
    x, lms, pan = inputs(0)
    t = torch.full((1,), 600.0)
    v1 = v1_model()
    v2_config = DDRFConfig(4, 1, arch="v2", base_width=8, channel_mults=(1, 2), enc_blocks=1, dec_blocks=2,
                           attn_levels=(), heads=2, dropout=0.0, wave_heads=2, time_dim=32)
    v2 = random_model(v2_config, seed=4)
    folded = random_model(DDRFConfig.from_dict({**v2_config.to_dict(), "space_to_depth": 2}), seed=5)
    inner = (Ellipsis, slice(margin, -margin), slice(margin, -margin))
    with torch.no_grad():
        stats, tokens = recorded(v1.scene_tape, lambda: v1(*inputs(1, 64, 2)[:1], torch.full((2,), 600.0),
                                                           *inputs(1, 64, 2)[1:]))
        runs = {"v1": lambda m: replayed(v1.scene_tape, stats, tokens,
                                         lambda: v1.denoise(x, t, *v1.encode(lms, pan), margin=m)),
                "v2": lambda m: v2.denoise(x, t, *v2.encode(lms, pan), margin=m),
                # odd margins too: the network crops whole folded pixels, the rest goes after the unfold
                "v2 folded": lambda m: folded.denoise(x, t, *folded.encode(lms, pan), margin=m)}
        for name, run in runs.items():
            whole, cropped = run(0), run(margin)
            assert cropped.shape[-2:] == (SIZE - 2 * margin,) * 2, name
            assert float((cropped - whole[inner]).abs().max()) < 1e-5 * float(whole.abs().max()), name
    assert any(v1.decoder_crops(margin)) == (margin > 2 * v1.config.dec_blocks + 1)


def test_window_statistics_refuse_a_margin() -> None:
    """With GroupNorm over the window, a crop would change every pixel: not allowed."""
    model = v1_model()
    x, lms, pan = inputs(0, 32)
    with pytest.raises(ValueError, match="statistics that do not span the window"):
        model.denoise(x, torch.full((1,), 600.0), *model.encode(lms, pan), margin=12)


@pytest.mark.parametrize("halo", [0, 1, 2, 3, 7, 24, 32, 48, 96, 97])
def test_the_blend_gives_no_weight_to_exactly_the_unweighted_border(halo: int) -> None:
    weights = axis_weights(2 * halo + 40, halo, True, True)
    border = unweighted_border(halo)
    assert not weights[:border].any() and not weights[len(weights) - border:].any()
    assert (weights[border:len(weights) - border] > 0).all()


def test_margins_on_the_card() -> None:
    model = v1_model()
    card = card_of(model, True, halo=48)
    assert output_margin(card) == 36  # 3/4 of 48, a multiple of the margin step (2 for three levels)
    assert output_margin(card_of(model, True, halo=44)) == 32  # 33 rounded down to whole steps
    assert output_margin(card_of(model, False, halo=48)) == 0  # window statistics span every window
    card.output_margin = 36
    assert ModelCard.from_json(card.to_json()).output_margin == 36
    old = card.to_dict()
    del old["output_margin"]
    assert ModelCard.from_dict(old).output_margin == 0  # cards before the field: whole outputs
    with pytest.raises(ValueError, match="output_margin must be a multiple of 2"):
        ModelCard.from_dict({**card.to_dict(), "output_margin": 7})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """The v1 network exported by ddrf-export with scene statistics (its output margin is the default)."""
    from ddrf.export.command import app
    from ddrf.train.checkpoint import save_weights

    model, root = v1_model(), tmp_path_factory.mktemp("margins")
    (root / "run").mkdir()
    save_weights(root / "run", model.state_dict(), model.state_dict(), card_of(model, False, halo=48))
    result = CliRunner().invoke(app, ["onnx", str(root / "run"), "-o", str(root / "model"), "--no-fp16",
                                      "--unrolled", "1", "--scene-statistics"])
    assert result.exit_code == 0, result.output
    assert ModelDir.open(root / "model").card.output_margin == 36  # 3/4 of the 48-pixel halo
    return model, root / "model"


def test_the_runtime_fills_the_margin_or_widens_the_inputs(exported: tuple[object, Path]) -> None:
    """Against the torch network computing whole windows with the same scene statistics: the interior agrees, the
    margin comes back as zeros, and a caller keeping more gets inputs widened by reflection."""
    from ddrf.train.diffusion import Diffusion

    model, out = exported
    fuser = Fuser(out, threads=1)
    rng = np.random.default_rng(2)
    lms, pan = (rng.uniform(0.05, 0.6, (1, c, 160, 160)).astype(np.float32) for c in (4, 1))
    noise = rng.standard_normal((1, 4, 160, 160)).astype(np.float32)
    context = fuser.scene_context(lms, pan, noise)
    diffusion = Diffusion(target="x0", residual=True)

    def whole(lms: np.ndarray, pan: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """torch, every pixel computed, with the runtime's scene statistics."""
        def run() -> torch.Tensor:
            return diffusion.sample(model, torch.from_numpy(lms), torch.from_numpy(pan), 1,
                                    noise=torch.from_numpy(noise))

        with torch.no_grad():
            return replayed(model.scene_tape, torch.from_numpy(context["scene_stats"]),
                            torch.from_numpy(context["scene_tokens"]), run).numpy()

    want = whole(lms, pan, noise)
    scale = float(np.abs(want).max())
    for border in (36, 48):
        got = fuser.fuse_normalised(lms, pan, noise, context=context, border=border)
        assert got.shape == want.shape and not got[..., :36, :].any() and not got[..., -36:].any()
        assert np.abs(got[..., 36:-36, 36:-36] - want[..., 36:-36, 36:-36]).max() < 1e-4 * scale, border
    for border in (0, 20):  # a whole image, or a halo below the card's
        widen = 36 - border
        padded = [np.pad(a, ((0, 0), (0, 0), (widen, widen), (widen, widen)), mode="reflect")
                  for a in (lms, pan, noise)]
        got = fuser.fuse_normalised(lms, pan, noise, context=context, border=border)
        keep = (Ellipsis, slice(border, 160 - border), slice(border, 160 - border))
        expected = whole(*padded)[..., widen:-widen, widen:-widen]
        assert np.abs(got[keep] - expected[keep]).max() < 1e-4 * scale, border


def test_ddrf_run_output_does_not_change_with_the_margin(exported: tuple[object, Path]) -> None:
    """Through ddrf-run's windows and blend: the cropping graphs give what the torch network computing whole windows
    gives (float rounding between the two libraries only)."""
    from ddrf.train.tiled import TorchEngine, fuse_tiled

    model, out = exported
    scene, card = textured_scene(2, 256), ModelDir.open(out).card
    for tile in (160, 256):
        onnx = fuse_arrays(ModelEngine(Fuser(out, threads=1)), scene, tile)
        reference = fuse_tiled(TorchEngine(model, card, steps=1, crop=False), scene, tile)
        assert np.abs(onnx - reference).max() <= 0.05, tile  # DN of a 12-bit scene
        cropped = fuse_tiled(TorchEngine(model, card, steps=1), scene, tile)  # the torch path's own margin
        assert np.abs(cropped - reference).max() <= 1e-3, tile


class ProfiledMarginEngine(ModelEngine):
    """The margin model on ONNX Runtime, with the fixed window profile a TensorRT plan of it would have (64..256 px,
    batch 4): what check_tile must hold a widened window to."""

    def window_limits(self) -> tuple[int, int, int]:
        return 64, 256, 4


def test_a_halo_below_the_cards_is_checked_against_the_profile_at_its_widened_side(
        exported: tuple[object, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """--halo 16 keeps all but 12 px of each edge while the graph leaves 36 uncomputed: the Fuser widens each window
    by 24 px a side, so a 256 window runs at 304, past the profile; at the card's halo it runs at 256."""
    import typer

    from ddrf.scenes.preflight import check_tile

    engine = ProfiledMarginEngine(Fuser(exported[1], threads=1))
    assert engine.window_side(256, 16) == 304 and engine.window_side(256, 48) == 256
    with pytest.raises(typer.Exit) as raised:
        check_tile(256, 16, engine)
    err = capsys.readouterr().err
    assert raised.value.exit_code == 2 and len(err.strip().splitlines()) == 1
    assert "--halo 16 below the model's 48 widens each 256 px window to 304 px" in err and "at most 208" in err
    check_tile(208, 16, engine)  # widened to 256: inside the profile
    check_tile(256, 48, engine)
