"""Model v2: tile invariance through the runtime's tiling, residual scaling, the ratio-4 Wald simulation."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

torch = pytest.importorskip("torch")  # the train extra; the runtime-only install skips this module

from ddrf.card import ModelCard, Normalisation
from ddrf.model import DDRF, DDRFConfig
from ddrf.filters import PROTOCOL_UNIT_DC, mtf_kernel, wald_simulate_ratio
from ddrf.sensors import get_sensor, ms_mtf_gains
from ddrf.train.diffusion import Diffusion
from ddrf.scenes.arrays import ArrayScene, tile_differences
from ddrf.train.tiled import TorchEngine, fuse_tiled, random_model


def smooth_scene(size: int = 192, bands: int = 4) -> ArrayScene:
    rng = np.random.default_rng(0)
    pan = gaussian_filter(rng.random((size, size)), 2) * 1000
    ms = np.stack([gaussian_filter(rng.random((size // 2, size // 2)), 1.5) * 800 + 100 * b for b in range(bands)], -1)
    return ArrayScene(pan, ms, ratio=2)


def tile_figures(cfg: DDRFConfig, scene: ArrayScene, tiles: tuple[int, ...]) -> dict[int, dict[str, float]]:
    card = ModelCard(model=cfg.to_dict(), bands=[f"b{i}" for i in range(4)], ratio=2,
                     normalisation=Normalisation(kind="scene"))
    engine = TorchEngine(random_model(cfg), card, steps=1)
    whole = fuse_tiled(engine, scene, tile=4096)  # one window: the whole scene plus its reflected halo
    return tile_differences({t: fuse_tiled(engine, scene, tile=t) for t in tiles}, whole)


def narrow(cfg: DDRFConfig) -> DDRFConfig:
    """Same topology (so the same receptive field), fewer channels: seconds on a CPU."""
    return DDRFConfig.from_dict({**cfg.to_dict(), "base_width": 8, "time_dim": 32, "heads": 2, "norm_groups": 4})


def folded(cfg: DDRFConfig) -> DDRFConfig:
    """The same network run at half resolution on 2 x 2 blocks folded into channels."""
    return DDRFConfig.from_dict({**cfg.to_dict(), "space_to_depth": 2})


V2_NETWORKS = {"small_v2": narrow(DDRFConfig.small_v2(4)), "small_v2 folded": folded(narrow(DDRFConfig.small_v2(4)))}


def test_v2_is_local_and_v1_is_not() -> None:
    """Away from the edges, v2 computed on a crop equals v2 computed on the whole input (no statistic spans the
    window); v1 does not (GroupNorm, window-wide attention contexts, middle self-attention)."""
    torch.manual_seed(1)
    x, lms, pan = torch.randn(1, 4, 192, 192), torch.rand(1, 4, 192, 192), torch.rand(1, 1, 192, 192)
    t = torch.tensor([400.0])
    for cfg, local in [(v2, True) for v2 in V2_NETWORKS.values()] + [(narrow(DDRFConfig.small(4)), False)]:
        model = random_model(cfg)
        with torch.no_grad():
            whole = model(x, t, lms, pan)[..., 80:112, 80:112]
            crop = model(x[..., 16:176, 16:176], t, lms[..., 16:176, 16:176], pan[..., 16:176, 16:176])
        error = float((crop[..., 64:96, 64:96] - whole).abs().max() / whole.std())
        assert (error < 1e-5) if local else (error > 1e-2), (cfg.arch, error)


def test_tiles_through_the_runtime_tiling() -> None:
    """ddrf-run's windows, halo 32 and feathered blend, tiles of 128 against one window over the whole image.

    With random weights (no training shrinks what a pixel listens to) v2 stays near the issue's bounds (measured:
    p99 0.52 %, max 1.5 % of a band's std) and v1 is off by far more; the bounds themselves (p99 <= 0.5 %,
    max <= 2 %) are measured on trained models by benchmarks/design_runs.py."""
    scene = smooth_scene(128)
    v2 = tile_figures(narrow(DDRFConfig.small_v2(4)), scene, (128,))[128]
    v1 = tile_figures(narrow(DDRFConfig.small(4)), scene, (128,))[128]
    assert v2["p99"] <= 0.01 and v2["max"] <= 0.02, v2
    assert v1["p99"] > 5 * v2["p99"] and v1["max"] > 5 * v2["max"], (v1, v2)


def test_v2_has_no_window_statistics() -> None:
    model = DDRF(DDRFConfig.small_v2(4))
    kinds = {type(m).__name__ for m in model.modules()}
    assert not kinds & {"GroupNorm", "SelfAttention", "WaveletAttention"}, kinds
    with pytest.raises(ValueError, match="self-attention"):
        DDRFConfig.from_dict({**DDRFConfig.small_v2(4).to_dict(), "attn_levels": [1]})


def test_v1_config_without_new_keys_still_loads() -> None:
    """Cards written before v2 lack arch/wave_radius/wave_key_dim: they must build the v1 network."""
    old = {k: v for k, v in DDRFConfig.small(4).to_dict().items() if k not in ("arch", "wave_radius", "wave_key_dim")}
    cfg = DDRFConfig.from_dict(old)
    assert cfg.arch == "v1"
    assert any(isinstance(m, torch.nn.GroupNorm) for m in DDRF(cfg).modules())


def test_residual_scale_round_trip() -> None:
    diffusion = Diffusion(residual_scale=12.5)
    gt, lms = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    x0 = diffusion.clean_variable(gt, lms)
    assert torch.allclose(x0, (gt - lms) * 12.5)
    assert torch.allclose(diffusion.fused(x0, lms), gt, atol=1e-6)
    card = ModelCard(model={}, bands=["a"], residual_scale=12.5)
    assert ModelCard.from_json(card.to_json()).residual_scale == 12.5
    assert ModelCard.from_dict({"model": {}, "bands": ["a"]}).residual_scale == 1.0  # older cards: unscaled
    with pytest.raises(ValueError, match="residual_scale"):
        ModelCard(model={}, bands=["a"], residual_scale=0.0).validate()


def _correlate_at(image: np.ndarray, kernel: np.ndarray, row: int, col: int) -> float:
    """One output sample of a replicate-border correlation, written out as the sum it is."""
    half = kernel.shape[0] // 2
    padded = np.pad(image, half, mode="edge")
    return float(np.sum(padded[row:row + kernel.shape[0], col:col + kernel.shape[1]] * kernel))


def test_wald_ratio4_simulation_by_hand() -> None:
    rng = np.random.default_rng(3)
    ms = rng.random((18, 22, 2)) * 200  # cropped to 16 x 20 (multiples of 4)
    pan = rng.random((36, 44)) * 200
    sensor = get_sensor("Landsat7")
    pan_on_ms, ms_lr, reference = wald_simulate_ratio(pan, ms, "Landsat7", 4)
    assert pan_on_ms.shape == (16, 20) and ms_lr.shape == (4, 5, 2) and reference.shape == (16, 20, 2)
    np.testing.assert_array_equal(reference, ms[:16, :20])
    # MS pixel i sits on PAN pixel 2i + 1 (ratio 2) and on the 4x-reduced grid sample j sits on MS pixel 4j + 2
    k_pan = mtf_kernel(sensor.pan_mtf, 2, unit_dc=PROTOCOL_UNIT_DC)
    for i, j in [(0, 0), (5, 7), (15, 19)]:
        assert pan_on_ms[i, j] == pytest.approx(_correlate_at(pan[:32, :40], k_pan, 2 * i + 1, 2 * j + 1), rel=1e-9)
    gains = ms_mtf_gains(sensor, 2)
    for b in range(2):
        k_ms = mtf_kernel(float(gains[b]), 4, unit_dc=PROTOCOL_UNIT_DC)
        for i, j in [(0, 0), (2, 3), (3, 4)]:
            expected = _correlate_at(ms[:16, :20, b], k_ms, 4 * i + 2, 4 * j + 2)
            assert ms_lr[i, j, b] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="ratio 2"):
        wald_simulate_ratio(pan[:30, :44], ms, "Landsat7", 4)


@pytest.mark.parametrize("network", V2_NETWORKS)
def test_v2_scaled_export_matches_torch(tmp_path, network: str) -> None:
    """A v2 model with a residual scale: ONNX export (FP32, stepwise and unrolled) through the torch-free Fuser
    equals the torch sampler, so the runtime divides by the card's scale exactly where training multiplied (and
    folds and unfolds a folded network's pixels as torch does)."""
    from ddrf.export.onnx_export import export_model
    from ddrf.runtime.fuser import Fuser

    cfg = V2_NETWORKS[network]
    model = random_model(cfg)
    card = ModelCard(model=cfg.to_dict(), bands=[f"b{i}" for i in range(4)], ratio=2, sampling_steps=2,
                     normalisation=Normalisation(kind="bit_depth", bits=12), residual_scale=8.0)
    export_model(model, card, tmp_path, unrolled_steps=(2,), fp16=False)
    scene = smooth_scene(64)
    engine = TorchEngine(model, card, steps=2)
    engine.start_scene(scene)
    expected = engine.fuse([(scene.pan, scene.ms)], [(0, 0)])[0][0]
    for unrolled in (False, True):
        fused = Fuser(tmp_path, steps=2, unrolled=unrolled).fuse(scene.pan, scene.ms, radiometry=engine.radiometry)
        assert np.abs(fused - expected).max() < 1e-3 * expected.std(), unrolled
    unscaled = DDRF(cfg)
    unscaled.load_state_dict(model.state_dict())
    plain = TorchEngine(unscaled, ModelCard(**{**card.__dict__, "residual_scale": 1.0}), steps=2)
    plain.start_scene(scene)
    assert np.abs(plain.fuse([(scene.pan, scene.ms)], [(0, 0)])[0][0] - expected).max() > 1e-2 * expected.std()


def test_ratio4_training_source_and_auto_residual_scale(landsat7_dir) -> None:
    """data.simulate_ratio=4 turns the ratio-2 pairs into ratio-4 training pairs on the original MS grid, and
    diffusion.residual_scale=auto is 1 / std of HRMS - LMS over the seeded draw (the same on every run)."""
    from ddrf.data import load_fusebox, split_by_acquisition
    from ddrf.train.config import TrainConfig
    from ddrf.train.datasets import WaldPatches, draw_batch
    from ddrf.train.loop import residual_scale

    train_pairs, _ = split_by_acquisition(load_fusebox(landsat7_dir))
    ds = WaldPatches(train_pairs[:2], patch=16, multiple=2, simulate_ratio=4)
    assert ds.ratio == 4 and ds.step == 4
    ms = train_pairs[0].ms
    assert ds.images[0]["gt"].shape[1:] == (ms.shape[0] - ms.shape[0] % 4, ms.shape[1] - ms.shape[1] % 4)
    assert ds.images[0]["pan"].shape[1:] == ds.images[0]["gt"].shape[1:] == ds.images[0]["lms"].shape[1:]
    cfg = TrainConfig.from_dict({"diffusion": {"residual_scale": "auto", "scale_patches": 64}})
    scale = residual_scale(ds, cfg)
    batch = draw_batch(ds, np.random.default_rng([0, 0x5CA1E]), 64)
    assert scale == pytest.approx(1 / float((batch["gt"] - batch["lms"]).double().std()))
    assert scale == residual_scale(ds, cfg) and 2 < scale < 200
    with pytest.raises(ValueError, match="ratio-2"):
        ratio4 = dataclasses.replace(train_pairs[0], ms=train_pairs[0].ms[::2, ::2], ratio=4)
        WaldPatches([ratio4], patch=16, simulate_ratio=4)


@pytest.mark.parametrize("network", V2_NETWORKS)
def test_v2_fp16_export_agrees_and_passes_the_tensorrt_op_check(tmp_path, network: str) -> None:
    """The v2 graphs (box sums, per-pixel norm, bounded-exp keys, the fold's reshapes and DepthToSpace) import into
    TensorRT 8.6 and 10 by the op tables, and the mixed-precision FP16 graphs stay close to FP32 through the
    runtime."""
    from ddrf.engines.onnx_ops import check_tensorrt_ops
    from ddrf.export.onnx_export import export_model
    from ddrf.runtime.fuser import Fuser

    cfg = V2_NETWORKS[network]
    card = ModelCard(model=cfg.to_dict(), bands=[f"b{i}" for i in range(4)], ratio=2, sampling_steps=2,
                     normalisation=Normalisation(kind="bit_depth", bits=12), residual_scale=8.0)
    result = export_model(random_model(cfg), card, tmp_path, unrolled_steps=(2,), fp16=True)
    for stem, path in result.graphs.items():
        assert check_tensorrt_ops(path, ("8.6", "10")) == [], stem
    scene = smooth_scene(64)
    fused = {p: Fuser(tmp_path, steps=2, precision=p).fuse(scene.pan, scene.ms, seed=0) for p in ("fp32", "fp16")}
    assert np.abs(fused["fp16"] - fused["fp32"]).max() < 1e-2 * fused["fp32"].std()


@pytest.mark.parametrize("cfg", [DDRFConfig.small(4), DDRFConfig.small_v2(4), folded(DDRFConfig.small_v2(4)),
                                 DDRFConfig.from_dict({**folded(DDRFConfig.small_v2(1)).to_dict(),
                                                       "channel_mults": (1, 2, 2)})])
def test_the_card_reads_the_networks_size_multiple(cfg: DDRFConfig) -> None:
    """The torch-free card repeats DDRFConfig.multiple (the fold times one halving per level): the runtime pads and
    aligns windows by it, so the two must agree, and a window of that side runs."""
    card = ModelCard(model=cfg.to_dict(), bands=[f"b{i}" for i in range(cfg.ms_bands)], ratio=2)
    assert card.size_multiple == cfg.multiple and card.margin_step == max(1, cfg.multiple // 2)
    model, side = random_model(narrow(cfg)), 2 * cfg.multiple
    with torch.no_grad():
        x_t, lms, pan = (torch.rand(1, c, side, side) for c in (cfg.ms_bands, cfg.ms_bands, 1))
        out = model(x_t, torch.tensor([10.0]), lms, pan)
    assert out.shape == (1, cfg.ms_bands, side, side)
    with pytest.raises(ValueError, match=f"multiples of {cfg.multiple}"):
        off = side + cfg.multiple // 2  # half a multiple off
        model.encode(torch.rand(1, cfg.ms_bands, off, off), torch.rand(1, 1, off, off))


@pytest.mark.parametrize("network", V2_NETWORKS)
def test_denoise_refuses_a_state_unlike_the_condition(network: str) -> None:
    """x_t of another batch or size than encode()'s inputs is refused in one line, folded or not."""
    model = random_model(V2_NETWORKS[network])
    with torch.no_grad():
        cond = model.encode(torch.rand(1, 4, 32, 32), torch.rand(1, 1, 32, 32))
        for shape in ((2, 4, 32, 32), (1, 4, 64, 64)):
            with pytest.raises(ValueError, match="does not match the batch and size"):
                model.denoise(torch.rand(*shape), torch.tensor([10.0]), *cond)
        assert model.denoise(torch.rand(1, 4, 32, 32), torch.tensor([10.0]), *cond).shape == (1, 4, 32, 32)
