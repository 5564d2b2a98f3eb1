"""Classical pansharpening baselines: ``fuse(method, pan, ms, ratio, sensor)``, the toolbox ``METHODS`` and the
named departures from it, ``VARIANTS``."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np

from ddrf.baselines.classical import bdsd_pc, brovey, bt_h, exp, gsa, mtf_glp_fs, mtf_glp_hpm
from ddrf.sensors import Sensor

__all__ = ["METHODS", "VARIANTS", "ALL_METHODS", "DIVIDING", "WINDOW_FITTED", "fuse"]

# Each callable: (pan (H, W), ms (h, w, B), ratio, sensor="generic", **options) -> fused (H, W, B) float64.
# The toolbox's methods, as its MATLAB code computes them ("classical" in ddrf-eval).
METHODS: dict[str, Callable[..., np.ndarray]] = {
    "EXP": exp,
    "Brovey": brovey,
    "BT-H": bt_h,
    "GSA": gsa,
    "BDSD-PC": bdsd_pc,
    "MTF-GLP-FS": mtf_glp_fs,
    "MTF-GLP-HPM": mtf_glp_hpm,
}

# Named departures from the toolbox (docs/EVALUATION.md gives each one's measured effect).
VARIANTS: dict[str, Callable[..., np.ndarray]] = {
    "GSA-gauss": partial(gsa, gauss_lowpass=True),  # generic sum-1 Gaussian PAN low-pass, not LPfilterPlusDec
    "BDSD-PC-unitdc": partial(bdsd_pc, unit_dc=True),  # MTF kernels rescaled to sum 1
    "MTF-GLP-FS-unitdc": partial(mtf_glp_fs, unit_dc=True),  # MTF kernels rescaled to sum 1
    "MTF-GLP-HPM-robust": partial(mtf_glp_hpm, robust=True),  # sum-1 kernels + 5 % denominator floor
}

ALL_METHODS: dict[str, Callable[..., np.ndarray]] = {**METHODS, **VARIANTS}

# The methods that divide by the (low-passed) data: far off where it nears or crosses 0, as the toolbox's are.
DIVIDING = ("Brovey", "BT-H", "MTF-GLP-HPM")

# The methods that fit statistics to the image they are given (the PAN matched to the MS, regression weights): in
# ddrf-run every window is such an image, so their output depends on the windows. GSA on a 1207 x 1254 Landsat-8
# clip: 4 default windows against one, p99 |difference| 10-12 % of a band's standard deviation (EXP and Brovey,
# pixel by pixel, agree to 0.3 %).
WINDOW_FITTED = tuple(m for m in ALL_METHODS if m not in ("EXP", "Brovey"))


def fuse(method: str, pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
         **options: Any) -> np.ndarray:
    """Fuse PAN (H, W) and MS (h, w, B), H = ratio*h, with a classical method or variant; returns (H, W, B) float64.

    ``options`` go to the method (``border`` for all; ``weights`` for Brovey).
    """
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(ALL_METHODS)}")
    # Each method is homogeneous in the data's units, but its guards against dividing by zero (MATLAB's eps, 1e-12)
    # are absolute: reflectance in units of 1e-10 lost every PAN detail (GSA, MTF-GLP-FS), 1e-20 fused to zeros
    # (Brovey, MTF-GLP-HPM). So the method runs on the data scaled by a power of two (exact) to a largest magnitude
    # of about 1, and its result is scaled back.
    exponent = _exponent(pan, ms)
    pan, ms = (np.ldexp(np.asarray(a, np.float64), -exponent) for a in (pan, ms))
    fused = ALL_METHODS[method](pan, ms, ratio, sensor, **options)
    return np.ldexp(fused, exponent)


def _exponent(*arrays: np.ndarray) -> int:
    """The power of two of the arrays' largest finite magnitude (0 for none)."""
    peak = max((float(np.max(np.abs(a), where=np.isfinite(a), initial=0.0)) for a in arrays), default=0.0)
    return int(np.frexp(peak)[1])
