"""The spread of an ensemble's views, calibrated: `ddrf-run --ensemble N --uncertainty N` multiplies the std of the
N views by the card's `spread_calibration_views`, fitted by `ddrf-eval --views --fit-spread` at that N and K."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ddrf.card import ModelCard, read_card
from ddrf.evaluate.spread import store_factor
from scenes_fixtures import SAMPLE, TINY_MODEL

ROOT = Path(__file__).parents[1]


def card_with(**fields: object) -> ModelCard:
    return ModelCard.from_dict({**json.loads((TINY_MODEL / "card.json").read_text()), **fields})


def test_the_views_factor_on_the_card() -> None:
    """Round trip; old cards have none, thirteenth-session cards one dict; each fit holds only at its N and K; the
    seeds' factor is untouched by them."""
    plain = card_with()
    assert plain.spread_calibration_views == [] and plain.spread_factor(4, views=True) == 1.0
    assert "no spread_calibration_views" in str(plain.spread_problem(plain.sampling_steps, views=4))
    k = plain.sampling_steps
    fits = [{"c": 3.5, "samples": 4, "steps": k}, {"c": 2.5, "samples": 8, "steps": k}]
    card = card_with(spread_calibration_views=fits, spread_calibration=2.0, spread_calibration_samples=8)
    assert ModelCard.from_json(card.to_json()).spread_calibration_views == fits
    assert card.spread_factor(4, views=True) == 3.5 and card.spread_factor(8, views=True, steps=k) == 2.5
    assert card.spread_problem(k, views=4) is None and card.spread_problem(k, views=8) is None
    assert card.spread_factor(8) == 2.0  # seeds: their own factor
    assert card.spread_factor(2, views=True) == 1.0 and card.spread_factor(4, views=True, steps=k + 1) == 1.0
    assert f"fitted at 4 views at {k} step(s), 8 views at {k} step(s), not 2 views" in str(
        card.spread_problem(k, views=2))
    assert f"not 4 views at {k + 1} sampler step(s)" in str(card.spread_problem(k + 1, views=4))
    assert card_with(spread_calibration_views=fits[0]).spread_calibration_views == fits[:1]  # a dict: one fit
    for bad in ({"c": 0.0, "samples": 4, "steps": 1}, {"c": 2.0, "samples": 1, "steps": 1}, {"c": 2.0},
                [fits[0], {**fits[0], "c": 3.0}]):
        with pytest.raises(ValueError, match="spread_calibration_views"):
            card_with(spread_calibration_views=bad)


def test_the_calibration_a_descendant_inherits() -> None:
    """`ModelCard.calibration` carries every fit (seeds and views) to another card, with the K of the seeds' fit made
    explicit (the descendant may sample with other steps), and shares no list with the card it came from."""
    k = card_with().sampling_steps
    fits = [{"c": 3.5, "samples": 4, "steps": k}]
    base = card_with(spread_calibration=2.0, spread_calibration_samples=8, spread_calibration_views=fits)
    heir = replace(card_with(sampling_steps=k + 1), **base.calibration())
    assert heir.spread_factor(4) == base.spread_factor(4) and heir.spread_factor(4, views=True, steps=k) == 3.5
    assert heir.spread_calibration_steps == k and heir.spread_problem(k) is None
    assert "not %d" % (k + 1) in str(heir.spread_problem(k + 1))
    heir.spread_calibration_views[0]["c"] = 9.0
    assert base.spread_calibration_views == fits and fits[0]["c"] == 3.5


def run(*args: str) -> tuple[int, str]:
    from ddrf.scenes.command import app

    result = CliRunner().invoke(app, [str(SAMPLE), "--no-progress", "--tile", "192", "--halo", "16", "--threads", "1",
                                      *args])
    return result.exit_code, " ".join(result.output.split())


def spread_of(out: Path) -> np.ndarray:
    with rasterio.open(out / f"{SAMPLE.name}_spread.tif") as ds:
        return ds.read().astype(np.float64)


def engine_of(out: Path) -> dict:
    return json.loads((out / f"{SAMPLE.name}.json").read_text())["engine"]


def test_ddrf_run_writes_the_views_spread_times_the_views_factor(tmp_path: Path) -> None:
    """Without a views factor the spread is the views' raw std, with a warning naming the fitting command; with one
    fitted at this N and K, that std times it, and the report says so. Different Ns are refused."""
    plain, fitted = tmp_path / "plain", tmp_path / "fitted"  # two folders: a process loads each model once
    shutil.copytree(TINY_MODEL, plain)
    shutil.copytree(TINY_MODEL, fitted)
    card = json.loads((TINY_MODEL / "card.json").read_text())
    views = {"c": 3.5, "samples": 2, "steps": card["sampling_steps"]}
    (fitted / "card.json").write_text(json.dumps({**card, "spread_calibration": 9.0,
                                                  "spread_calibration_views": views}))
    code, text = run("-o", str(tmp_path / "p"), "--model", str(plain), "--ensemble", "2", "--uncertainty", "2")
    assert code == 0 and "no spread_calibration_views fitted for --ensemble" in text and "--views" in text, text
    assert engine_of(tmp_path / "p")["spread_fitted"] is False
    code, text = run("-o", str(tmp_path / "f"), "--model", str(fitted), "--ensemble", "2", "--uncertainty", "2")
    assert code == 0 and "spread_calibration" not in text, text
    engine = engine_of(tmp_path / "f")
    assert engine["spread_factor"] == 3.5 and engine["spread_fitted"] is True
    raw = spread_of(tmp_path / "p")
    assert raw.mean() > 0
    np.testing.assert_allclose(spread_of(tmp_path / "f"), 3.5 * raw, rtol=1e-5)
    code, text = run("-o", str(tmp_path / "x"), "--model", str(fitted), "--ensemble", "4", "--uncertainty", "2")
    assert code == 2 and "give both the same N (--ensemble 4 --uncertainty 4)" in text, text


def test_the_spread_factor_is_recorded_only_beside_a_spread_map(tmp_path: Path) -> None:
    """--ensemble 2 without --uncertainty writes no spread map, so the report records no spread factor and no
    `spread_fitted` (before: 1.0 and false, describing a map that does not exist); with --uncertainty 2 it does."""
    for name, extra in (("mean", []), ("spread", ["--uncertainty", "2"])):
        code, text = run("-o", str(tmp_path / name), "--model", str(TINY_MODEL), "--ensemble", "2", *extra)
        assert code == 0, text
    mean, spread = engine_of(tmp_path / "mean"), engine_of(tmp_path / "spread")
    assert (mean["spread_factor"], mean["spread_fitted"]) == (None, None), mean
    assert (spread["spread_factor"], spread["spread_fitted"]) == (1.0, False), spread
    item = json.loads((tmp_path / "mean" / f"{SAMPLE.name}.item.json").read_text())
    assert "ddrf:spread_factor" not in item["properties"] and mean["samples"] == 2


def test_eval_fits_the_views_factor_into_its_own_slot(tmp_path: Path) -> None:
    """ddrf-eval --views --fit-spread writes spread_calibration_views at its N and K; the seeds' factor stays."""
    from ddrf.evaluate.command import app

    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL, model)
    result = CliRunner().invoke(app, [f"fusebox:{ROOT / 'tests/data/landsat7'}", "--acquisitions", "all",
                                      "--methods", f"ddrf:{model}", "--samples", "3", "--views", "--tile", "96",
                                      "--fit-spread"])
    assert result.exit_code == 0, result.output
    card = read_card(model / "card.json")
    [fit] = card.spread_calibration_views
    assert fit["samples"] == 3 and fit["steps"] == card.sampling_steps and fit["c"] > 1
    assert card.spread_calibration == 1.0 and card.spread_calibration_samples is None
    assert f"spread_calibration_views = {fit['c']} at N = 3 views" in " ".join(result.output.split())
    store_factor(model, 9.0, 4, fit["steps"], views=True)  # another N is added beside it; the same N replaces
    store_factor(model, 8.0, 3, fit["steps"], views=True)
    assert [(f["samples"], f["c"]) for f in read_card(model / "card.json").spread_calibration_views] == [(3, 8.0),
                                                                                                        (4, 9.0)]


def test_a_spread_from_two_samples_says_how_much_wider_its_calibrated_map_is(tmp_path: Path) -> None:
    """--uncertainty 2 with a card fitted at 8 samples: the factor carried by Student's t is 5.4x (one degree of
    freedom), so the map keeps its coverage by being far wider than the error it bounds; the run says so and names
    the N that gives a sharper one (before: nothing, the map just 5x wider than at N = 8)."""
    from test_bad_inputs import pair

    from ddrf.card import write_card
    from ddrf.scenes.command import app

    model = Path(shutil.copytree(TINY_MODEL, tmp_path / "model"))
    card = read_card(model / "card.json")
    card.spread_calibration, card.spread_calibration_samples = 5.0, 8
    card.spread_calibration_steps = card.sampling_steps
    write_card(card, model / "card.json")
    pan, ms = pair(tmp_path / "in")
    said = {}
    for n in (2, 4):
        result = CliRunner().invoke(app, ["--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / f"out{n}" / "x.tif"),
                                          "--model", str(model), "--uncertainty", str(n), "--threads", "1",
                                          "--no-progress"])
        assert result.exit_code == 0, result.output
        said[n] = result.output
    assert "the spread of 2 samples is a noisy estimate" in said[2] and "5.4x wider" in said[2], said[2]
    assert "--uncertainty 8 gives a sharper map" in said[2]
    assert "noisy estimate" not in said[4]  # 4 samples: 1.35x, within what a calibrated map is expected to carry
