"""benchmarks/steps_samples.py: the K x N table through the tiled path (tiny model, one real Landsat-7 crop) and its
calibration figures on synthetic draws with a known answer."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("steps_samples", ROOT / "benchmarks" / "steps_samples.py")
assert SPEC is not None and SPEC.loader is not None
steps_samples = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(steps_samples)


def test_table_on_the_tiny_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ks.json"
    steps_samples.main([f"ddrf:{ROOT / 'tests/data/tiny_model/model'}", "--dataset",
                        f"fusebox:{ROOT / 'tests/data/landsat7'}", "--images", "1", "--steps", "1,2",
                        "--samples", "1,2", "--tile", "96", "--json", str(out)])
    result = json.loads(out.read_text())
    rows = {(r["K"], r["N"]): r for r in result["rows"]}
    assert sorted(rows) == [(1, 1), (1, 2), (2, 1), (2, 2)] and result["images"] == ["fusebox_1"]
    assert result["model"]["tile"] == 96 and result["model"]["fusion_path"].startswith("tiled")
    for r in rows.values():
        assert np.isfinite([r["SAM"], r["ERGAS"], r["Q2n"]]).all() and r["seconds_per_mp"] > 0
        assert "coverage_2sigma" not in r  # no spread below N = 4
    assert rows[(1, 2)]["SAM"] != rows[(1, 1)]["SAM"] and rows[(1, 1)]["SAM"] != rows[(2, 1)]["SAM"]
    assert rows[(1, 2)]["seconds_per_mp"] == 2 * rows[(1, 1)]["seconds_per_mp"]
    assert "| 2 | 2 |" in capsys.readouterr().out


def test_spread_figures_and_calibration_know_the_answer() -> None:
    rng = np.random.default_rng(0)
    sigma = rng.uniform(1, 20, (64, 64, 4))
    draws = [100 + sigma * rng.standard_normal(sigma.shape) for _ in range(8)]
    ref = np.mean(draws, axis=0) + sigma * rng.standard_normal(sigma.shape)  # error of the mean: std sigma
    honest = steps_samples.spread_figures(draws, ref)
    assert 0.90 < honest["coverage_2sigma"] < 0.97 and honest["spearman"] > 0.3
    mean = np.mean(draws, axis=0)
    shrunk = steps_samples.spread_figures([mean + (d - mean) / 4 for d in draws], ref)
    assert shrunk["coverage_2sigma"] < 0.5  # spread 4x too small: the interval misses
    z = shrunk["z"].reshape(2, -1)
    cal = steps_samples.calibrate([z[0], z[1]])
    assert 3.5 < cal["c"] < 5.5 and abs(cal["coverage_held_out"] - 0.95) < 0.02


def test_band_set_and_a_given_calibration(tmp_path: Path, capsys) -> None:
    """--bands reaches the dataset (a band-wise model fuses any set); --calibration C gives C's coverage on every
    image, which must rise with C and be complete for a huge C."""
    model = f"ddrf:{ROOT / 'ddrf/assets/models/landsat_ratio2_band_wise'}"
    common = ["--dataset", f"fusebox:{ROOT / 'tests/data/landsat7'}", "--images", "1", "--steps", "1",
              "--samples", "4", "--tile", "128", "--bands", "red,swir1"]
    coverage = {}
    for c in (0.5, 1e9):
        out = tmp_path / f"c{c}.json"
        steps_samples.main([model, *common, "--calibration", str(c), "--json", str(out)])
        result = json.loads(out.read_text())
        assert result["data"]["band_names"] == ["red", "swir1"] and result["given_c"] == c
        (row,) = result["rows"]
        coverage[c] = row["coverage_with_given_c"]
    assert coverage[1e9] == 1.0 and coverage[0.5] < 0.95
    assert "coverage of c x 2 sigma with c = 1000000000.0" in capsys.readouterr().out


def test_a_c_fitted_at_8_samples_carries_to_4_by_students_t() -> None:
    """Gaussian draws with a known per-pixel sigma: c fitted on 8 draws, applied to 4 draws' std, keeps 95 % coverage
    only when carried by `ModelCard.spread_factor` (the 4-draw std is noisier)."""
    from ddrf.card import ModelCard

    rng = np.random.default_rng(1)
    sigma = rng.uniform(1, 20, (128, 128, 4))

    def z_of(n: int) -> np.ndarray:
        draws = [100 + sigma * rng.standard_normal(sigma.shape) for _ in range(n)]
        ref = np.mean(draws, axis=0) + 3 * sigma * rng.standard_normal(sigma.shape)  # the error is 3x the spread
        return steps_samples.spread_figures(draws, ref)["z"]

    c8 = steps_samples.calibrate([z_of(8)])["c"]
    card = ModelCard(model={}, bands=["b"], spread_calibration=c8, spread_calibration_samples=8)
    z4 = z_of(4)
    assert abs(np.mean(z4 <= card.spread_factor(4)) - 0.95) < 0.01
    assert np.mean(z4 <= c8) < 0.92  # the same c unchanged under-covers
    assert card.spread_factor(8) == c8 and ModelCard.from_dict(card.to_dict()).spread_calibration_samples == 8
