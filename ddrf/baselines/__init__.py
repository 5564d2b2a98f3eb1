"""Classical pansharpening baselines: ``fuse(method, pan, ms, ratio, sensor)``, the toolbox ``METHODS`` and the
named departures from it, ``VARIANTS``; ``fit_method`` fits a method's image-wide quantities once (ddrf-run: per
scene) for ``fuse(..., fit=)`` to apply to any window."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np

from ddrf.baselines.classical import (Coefficients, bdsd_pc, bdsd_pc_fit, brovey, bt_h, bt_h_fit, exp, gsa, gsa_fit,
                                      mtf_glp_fs, mtf_glp_fs_fit, mtf_glp_hpm, mtf_glp_hpm_fit)
from ddrf.sensors import Sensor

__all__ = ["METHODS", "VARIANTS", "ALL_METHODS", "DIVIDING", "FITS", "Fit", "fit_method", "fuse"]

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

# The methods that fit image-wide quantities (regression weights, means, stds, haze levels), each with the function
# that fits them (same options as the method). ddrf-run fits them once per scene: when each window fitted its own,
# GSA's output on a 1207 x 1254 Landsat-8 clip moved by p99 10-12 % of a band's std between 4 windows and one. EXP
# and Brovey work pixel by pixel and fit nothing.
FITS: dict[str, Callable[..., Coefficients]] = {
    "BT-H": bt_h_fit,
    "GSA": gsa_fit,
    "BDSD-PC": bdsd_pc_fit,
    "MTF-GLP-FS": mtf_glp_fs_fit,
    "MTF-GLP-HPM": mtf_glp_hpm_fit,
    "GSA-gauss": partial(gsa_fit, gauss_lowpass=True),
    "BDSD-PC-unitdc": partial(bdsd_pc_fit, unit_dc=True),
    "MTF-GLP-FS-unitdc": partial(mtf_glp_fs_fit, unit_dc=True),
    "MTF-GLP-HPM-robust": partial(mtf_glp_hpm_fit, robust=True),
}


@dataclass(frozen=True)
class Fit:
    """A method's fitted quantities, on images scaled by 2**-exponent (see `fuse`): every image they are applied to
    is scaled by the same power, so that they hold in its units."""

    method: str
    exponent: int
    coefficients: Coefficients


def fit_method(method: str, pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
               **options: Any) -> Fit | None:
    """The method's image-wide quantities fitted on PAN (H, W) and MS (h, w, B), for `fuse(..., fit=)`; None for a
    method that fits nothing (EXP, Brovey). ``options`` as for `fuse`."""
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(ALL_METHODS)}")
    if method not in FITS:
        return None
    exponent = _exponent(pan, ms)
    pan, ms = (np.ldexp(np.asarray(a, np.float64), -exponent) for a in (pan, ms))
    return Fit(method, exponent, FITS[method](pan, ms, ratio, sensor, **options))


def fuse(method: str, pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
         fit: Fit | None = None, **options: Any) -> np.ndarray:
    """Fuse PAN (H, W) and MS (h, w, B), H = ratio*h, with a classical method or variant; returns (H, W, B) float64.

    ``fit``: the method's quantities fitted on other images (`fit_method`, e.g. the whole scene) instead of on these;
    ``options`` go to the method (``border`` for all; ``weights`` for Brovey).
    """
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(ALL_METHODS)}")
    if fit is not None and fit.method != method:
        raise ValueError(f"coefficients fitted for {fit.method} given to {method}")
    # Each method is homogeneous in the data's units, but its guards against dividing by zero (MATLAB's eps, 1e-12)
    # are absolute: reflectance in units of 1e-10 lost every PAN detail (GSA, MTF-GLP-FS), 1e-20 fused to zeros
    # (Brovey, MTF-GLP-HPM). So the method runs on the data scaled by a power of two (exact) to a largest magnitude
    # of about 1, and its result is scaled back.
    exponent = _exponent(pan, ms) if fit is None else fit.exponent  # the fit's scale: its means are in those units
    pan, ms = (np.ldexp(np.asarray(a, np.float64), -exponent) for a in (pan, ms))
    if fit is not None:
        options["fit"] = fit.coefficients
    fused = ALL_METHODS[method](pan, ms, ratio, sensor, **options)
    return np.ldexp(fused, exponent)


def _exponent(*arrays: np.ndarray) -> int:
    """The power of two of the arrays' largest finite magnitude (0 for none)."""
    peak = max((float(np.max(np.abs(a), where=np.isfinite(a), initial=0.0)) for a in arrays), default=0.0)
    return int(np.frexp(peak)[1])
