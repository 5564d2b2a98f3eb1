"""The spread of N samples against the error of their mean: how often +-2 sigma covers it, how well it ranks it,
and the factor c that makes it a calibrated 1-sigma error (`ModelCard.spread_calibration`, which `ddrf-run
--uncertainty N` applies). Used by `ddrf-eval --fit-spread` and benchmarks/steps_samples.py."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

TARGET_COVERAGE = 0.95  # of the +-2 sigma interval


def spread_figures(samples: list[np.ndarray], ref: np.ndarray) -> dict[str, Any]:
    """Spread (std, ddof 1) vs |mean - ref| per pixel and band; `z` = |error| / (2 spread) for the calibration."""
    from scipy.stats import spearmanr

    stack = np.stack(samples)
    spread, error = stack.std(axis=0, ddof=1).ravel(), np.abs(stack.mean(axis=0) - ref).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(spread > 0, error / (2 * spread), np.where(error > 0, np.inf, 0.0))
    return {"coverage_2sigma": float(np.mean(error <= 2 * spread)),
            "spearman": float(spearmanr(spread, error).statistic), "z": z}


def calibrate(zs: list[np.ndarray]) -> dict[str, Any]:
    """c from the first image (its 95 % quantile of |error| / 2 sigma), its coverage checked on the others."""
    c = float(np.quantile(zs[0], TARGET_COVERAGE))
    held_out = [float(np.mean(z <= c)) for z in zs[1:]]
    return {"c": c, "fitted_on": 0, "coverage_held_out": float(np.mean(held_out)) if held_out else None,
            "coverage_held_out_per_image": held_out}


def pooled_factor(zs: list[np.ndarray]) -> float:
    """c from every image at once: the 95 % quantile of |error| / 2 sigma over all their pixels and bands."""
    return float(np.quantile(np.concatenate([z.ravel() for z in zs]), TARGET_COVERAGE))


def store_factor(model_dir: str | os.PathLike[str], c: float, samples: int, steps: int, views: bool = False) -> float:
    """Write c (to three decimals) and the N and K it was fitted at into the model's card.json, atomically (for the
    spread of N views with `views`, else of N seeds); return c."""
    from ddrf.card import read_card, write_card
    from ddrf.model_dir import CARD_NAME

    path = Path(model_dir) / CARD_NAME
    card = read_card(path)
    if views:  # one fit per N and K: a refit at the same N and K replaces its entry
        others = [f for f in card.spread_calibration_views if (f["samples"], f["steps"]) != (samples, steps)]
        card.spread_calibration_views = sorted([*others, {"c": round(c, 3), "samples": samples, "steps": steps}],
                                               key=lambda f: (f["steps"], f["samples"]))
    else:
        card.spread_calibration, card.spread_calibration_samples = round(c, 3), samples
        card.spread_calibration_steps = steps
    write_card(card, path)
    return round(c, 3)
