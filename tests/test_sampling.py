"""The one sampler loop (ddrf.sampling): numpy and torch give the same result, and every caller runs it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ddrf import schedule as sch
from ddrf.card import ModelCard, read_card
from ddrf.runtime.fuser import InputPreparation
from ddrf.sampling import batch_ones, sample
from ddrf.filters import interp23

BUNDLED_CARD = Path(__file__).parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio2" / "card.json"
WEIGHTS = np.array([0.7, -0.2, 0.4], dtype=np.float32)  # a toy per-band "network"


def toy_encode(lms, pan):
    return (lms * 0.5 + pan, lms - pan)


def toy_denoise(x, t, cond):
    a, b = cond
    scale = 1.0 / (1.0 + t[:, None, None, None] / 1000.0)
    return (x * 0.3 + a * 0.5 - b * 0.25) * scale


def inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lms, pan = rng.random((2, 3, 8, 8), dtype=np.float32), rng.random((2, 1, 8, 8), dtype=np.float32)
    noise, step = rng.standard_normal((2, 2, 3, 8, 8), dtype=np.float32)
    return lms, pan, noise, step


@pytest.mark.parametrize("target,eta", [("x0", 0.0), ("eps", 0.0), ("v", 0.5)])
def test_numpy_and_torch_run_the_same_loop(target: str, eta: float) -> None:
    torch = pytest.importorskip("torch")
    plan = sch.make_plan(sch.CosineSchedule(), 4, eta)
    lms, pan, noise, step = inputs()
    got_np = sample(toy_encode, toy_denoise, plan, target, lms, pan, noise, residual=True, step_noise=lambda i: step)
    t = torch.from_numpy
    got_torch = sample(toy_encode, toy_denoise, plan, target, t(lms), t(pan), t(noise), residual=True,
                       step_noise=lambda i: t(step))
    assert isinstance(got_np, np.ndarray) and got_np.dtype == np.float32
    assert isinstance(got_torch, torch.Tensor) and got_torch.dtype == torch.float32
    np.testing.assert_allclose(got_torch.numpy(), got_np, rtol=1e-5, atol=1e-5)
    if eta == 0:  # a deterministic run does not depend on the step noise
        again = sample(toy_encode, toy_denoise, plan, target, lms, pan, noise, residual=True)
        np.testing.assert_array_equal(again, got_np)


def test_loop_matches_the_update_written_out() -> None:
    plan = sch.make_plan(sch.CosineSchedule(), 3)
    lms, pan, noise, _ = inputs(1)
    cond = toy_encode(lms, pan)
    x = noise
    for i, t in enumerate(plan.timesteps):
        x = sch.ddim_step(plan, i, x, toy_denoise(x, np.full(2, float(t), np.float32), cond), "x0")
    np.testing.assert_array_equal(sample(toy_encode, toy_denoise, plan, "x0", lms, pan, noise, residual=False), x)
    np.testing.assert_array_equal(sample(toy_encode, toy_denoise, plan, "x0", lms, pan, noise, residual=True), x + lms)


def test_uncached_condition_and_stage_callbacks() -> None:
    plan = sch.make_plan(sch.CosineSchedule(), 4)
    lms, pan, noise, _ = inputs(2)
    calls: list[str] = []
    encodes = []

    def counting_encode(a, b):
        encodes.append(1)
        return toy_encode(a, b)

    cached = sample(counting_encode, toy_denoise, plan, "x0", lms, pan, noise, True, on_stage=calls.append)
    assert calls == ["encode"] + ["step"] * 4 and len(encodes) == 1
    calls.clear()
    uncached = sample(counting_encode, toy_denoise, plan, "x0", lms, pan, noise, True, cache_condition=False,
                      on_stage=calls.append)
    assert calls == ["step"] * 4 and len(encodes) == 5
    np.testing.assert_array_equal(cached, uncached)


def test_eta_needs_step_noise() -> None:
    plan = sch.make_plan(sch.CosineSchedule(), 2, eta=1.0)
    lms, pan, noise, _ = inputs()
    with pytest.raises(ValueError, match="noise"):
        sample(toy_encode, toy_denoise, plan, "x0", lms, pan, noise, True)


def test_batch_ones_keeps_dtype() -> None:
    ones = batch_ones(np.zeros((3, 2, 4, 4), np.float32))
    assert ones.shape == (3,) and ones.dtype == np.float32 and (ones == 1).all()


# ------------------------------------------------------------------------------------------- the LMS border
def test_old_cards_default_to_symmetric_and_the_border_is_honoured(tmp_path: Path) -> None:
    old = json.loads(BUNDLED_CARD.read_text())
    old.pop("lms_border", None)  # a card written before the field existed
    (tmp_path / "card.json").write_text(json.dumps(old))
    card = read_card(tmp_path / "card.json")
    assert card.lms_border == "symmetric"
    rng = np.random.default_rng(0)
    ms = rng.uniform(100, 4000, (16, 16, 4))
    pan = rng.uniform(100, 4000, (32, 32))
    outputs = {}
    for border in ("symmetric", "circular"):
        prep = InputPreparation(ModelCard.from_dict({**card.to_dict(), "lms_border": border}))
        radiometry = prep.radiometry(pan, ms)
        lms, _, _ = prep.prepare(pan, ms, radiometry)
        want = np.moveaxis(radiometry.ms_to_model(interp23(ms, card.ratio, border=border)), -1, 0)
        np.testing.assert_array_equal(lms, want)
        outputs[border] = lms
    assert np.abs(outputs["symmetric"] - outputs["circular"]).max() > 1e-3
    with pytest.raises(ValueError, match="lms_border"):
        ModelCard.from_dict({**card.to_dict(), "lms_border": "zero"})
