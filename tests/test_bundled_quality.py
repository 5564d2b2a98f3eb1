"""Structural checks of benchmarks/bundled_quality.py helpers on tiny arrays (no model, no data files)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from ddrf.evaluate.datasets import FULL, Sample

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bundled_quality.py"


@pytest.fixture(scope="module")
def bq():
    spec = importlib.util.spec_from_file_location("bundled_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_parse_ints(bq):
    assert bq.parse_ints("1-6") == [1, 2, 3, 4, 5, 6]
    assert bq.parse_ints("25,1,2,4,8,2") == [1, 2, 4, 8, 25]
    assert bq.parse_ints("1-2,5") == [1, 2, 5]
    for bad in ("", "0", "a"):
        with pytest.raises(ValueError):
            bq.parse_ints(bad)


def test_scene_number_and_labels(bq):
    assert bq.scene_number("fusebox_12") == 12
    assert bq.scene_number("l8") is None
    assert bq.method_label(2) == "DDRF K=2"
    assert bq.method_label(2, 4) == "DDRF K=2, mean of 4"


def test_spread_error_stats_monotone(bq):
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.1, 2.0, size=(20, 20, 4))
    error = 3.0 * spread  # perfectly tracking error
    s = bq.spread_error_stats(spread, error, bins=10)
    assert s["pearson"] == pytest.approx(1.0)
    assert s["spearman"] == pytest.approx(1.0)
    assert sum(s["count"]) == spread.size == s["n"]
    assert np.all(np.diff(s["mean_error"]) > 0)
    assert np.allclose(s["mean_error"], 3.0 * np.array(s["mean_spread"]))
    noise = bq.spread_error_stats(spread, rng.uniform(size=spread.shape))
    assert abs(noise["spearman"]) < 0.2


def test_region_sample_crops_pan_and_ms_together(bq):
    ms = np.arange(10 * 6 * 4, dtype=np.float64).reshape(10, 6, 4)
    pan = np.zeros((20, 12))
    fused = np.ones((20, 12, 4))
    sample = Sample("x", FULL, pan, ms, None, 2, "Landsat8", ("b", "g", "r", "n"))
    sub, image = bq.region_sample(sample, fused, (3, 7), "strip")
    assert sub.ms.shape == (4, 6, 4) and sub.pan.shape == (8, 12) and image.shape == (8, 12, 4)
    assert np.array_equal(sub.ms, ms[3:7])
    whole, same = bq.region_sample(sample, fused, None, "all")
    assert whole is sample and same is fused
    with pytest.raises(ValueError):
        bq.region_sample(sample, fused, (12, 15), "outside")


def test_md_table_and_cell(bq):
    table = bq.md_table(["a", "b"], [["1", "2"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    assert bq.cell({"mean": 1.23456, "std": 0.1, "n": 6}, "SAM") == "1.235 +- 0.100"
    assert bq.cell({"mean": 0.5, "std": 0.0, "n": 1}, "Q2n") == "0.5000"
