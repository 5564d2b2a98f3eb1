"""Classical pansharpening methods, following the pansharpening toolbox (Vivone et al., 2015/2020) where one exists.

Every method takes PAN (H, W), low-resolution MS (h, w, B) with H = ratio*h, the integer ratio and a sensor
(name or ``Sensor``) whose MTF gains shape the low-pass filters, and returns the fused (H, W, B) float64 image in
the input's scale. The upsampled MS ("LMS") is always ``interp23`` (toolbox EXP); ``border`` picks its edge mode.

By default GSA, BDSD-PC, MTF-GLP-FS and MTF-GLP-HPM reproduce the toolbox's filters (MTF kernels not normalised,
GSA's LPfilterPlusDec, HPM dividing by PAN_LP + eps). Each departure from it is an option that
``ddrf.baselines.VARIANTS`` names (e.g. MTF-GLP-HPM-robust); docs/EVALUATION.md measures them.

BT-H, GSA, BDSD-PC, MTF-GLP-FS and MTF-GLP-HPM fit image-wide quantities (regressions, means, stds, haze levels):
each has a ``*_fit`` that returns them and takes ``fit=`` to apply given ones, so that ddrf-run's windows all apply
the scene's (``method(x) == method(x, fit=method_fit(x))``, the toolbox's result on a whole image).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from ddrf.filters import _check_pair, decimate, interp23, lp_filter_gauss, lp_filter_plus_dec, mtf_filter
from ddrf.sensors import Sensor, get_sensor, ms_mtf_gains

# The generic Gaussian low-pass (gain at Nyquist) of BT-H and of the departures below.
_GENERIC_GAIN = 0.3
# MTF-GLP-HPM-robust: low-pass values below this fraction of the band mean are treated as too dark to divide by.
_HPM_FLOOR = 0.05

# A method's image-wide quantities by name (arrays and floats in the input's scale): what its `*_fit` returns.
Coefficients = dict[str, Any]


def _prepare(
    pan: np.ndarray, ms: np.ndarray, ratio: int, border: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 PAN, MS and the interp23 LMS."""
    if isinstance(ratio, bool) or int(ratio) != ratio or ratio < 2:
        raise ValueError(f"ratio must be an integer >= 2, got {ratio!r}")
    pan, ms = _check_pair(pan, ms, int(ratio))
    if not (np.isfinite(pan).all() and np.isfinite(ms).all()):
        raise ValueError("pan and ms must be finite (mask or fill nodata first)")
    return pan, ms, interp23(ms, int(ratio), border=border)


def _tol(x: np.ndarray) -> float:
    """Scale-aware threshold under which a denominator counts as zero."""
    return 1e-6 * float(np.max(np.abs(x), initial=0.0)) + 1e-12


def _safe_ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den where den is clearly positive, ``fill`` elsewhere."""
    ok = den > _tol(den)
    return np.where(ok, num / np.where(ok, den, 1.0), fill)


def _scalar_ratio(num: float, den: float, fill: float) -> float:
    return num / den if abs(den) > 1e-12 * (abs(num) + 1.0) else fill


def _cov(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - a.mean()) * (b - b.mean())))


def _pan_lowpass(pan: np.ndarray, gain: float, ratio: int, border: str, unit_dc: bool) -> np.ndarray:
    """PAN seen through an MS band's MTF: filter, decimate, interpolate back (the GLP low-pass)."""
    return interp23(decimate(mtf_filter(pan, gain, ratio, unit_dc=unit_dc), ratio), ratio, border=border)


def exp(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
        border: str = "circular") -> np.ndarray:
    """EXP: the MS interpolated onto the PAN grid (no PAN detail); the reference every method should beat."""
    return _prepare(pan, ms, ratio, border)[2]


def brovey(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
           weights: np.ndarray | None = None, border: str = "circular") -> np.ndarray:
    """Weighted Brovey as gdal_pansharpen: band_b * PAN / sum_i(w_i * band_i).

    Weights default to 1/B each (GDAL's default without -w). As in GDAL the factor is 0 where the pseudo-PAN
    is not positive, and there is no histogram matching. Unlike GDAL, LMS is interp23 (GDAL resamples cubic)
    and the output is not clamped to the bit depth.
    """
    pan, ms, lms = _prepare(pan, ms, ratio, border)
    n_bands = ms.shape[2]
    w = np.full(n_bands, 1.0 / n_bands) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n_bands,):
        raise ValueError(f"brovey needs {n_bands} weights, got shape {w.shape}")
    pseudo = lms @ w
    return lms * _safe_ratio(pan, pseudo, 0.0)[:, :, None]


def _haze(lms: np.ndarray) -> np.ndarray:
    """Per-band haze (path radiance) level as in the toolbox's BT-H.

    4 bands (assumed blue, green, red, NIR): fixed fractions of each band's 1st percentile; other band counts:
    the band minimum.
    """
    if lms.shape[2] == 4:
        return np.array([0.95, 0.45, 0.40, 0.05]) * np.percentile(lms.reshape(-1, 4), 1, axis=0)
    return lms.reshape(-1, lms.shape[2]).min(axis=0)


def bt_h(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
         border: str = "circular", fit: Coefficients | None = None) -> np.ndarray:
    """BT-H (Lolli et al. 2017): Brovey on haze-corrected bands with a regression intensity.

    Intensity I = sum_b alpha_b (LMS_b - haze_b), alpha from least squares of the low-passed PAN on LMS; the
    PAN is matched to I's mean and std (through its low-pass) and each haze-free band is modulated by PAN / I.
    The low-pass is the generic sum-1 Gaussian; it has not been checked against the toolbox's BT_H.
    """
    pan, ms, lms = _prepare(pan, ms, ratio, border)
    c = _bt_h_fit(pan, lms, ratio) if fit is None else fit
    intensity = (lms - c["haze"]) @ c["alpha"]
    pan_eq = (pan - c["pan_lp_mean"]) * c["scale"] + c["intensity_mean"]
    modulation = _safe_ratio(pan_eq, intensity, 1.0)
    return np.maximum(lms - c["haze"], 0.0) * modulation[:, :, None] + c["haze"]


def bt_h_fit(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
             border: str = "circular") -> Coefficients:
    """BT-H's haze, alpha, intensity mean and PAN-to-intensity scale, from these images."""
    pan, _, lms = _prepare(pan, ms, ratio, border)
    return _bt_h_fit(pan, lms, ratio)


def _bt_h_fit(pan: np.ndarray, lms: np.ndarray, ratio: int) -> Coefficients:
    haze = _haze(lms)
    pan_lp = mtf_filter(pan, _GENERIC_GAIN, ratio, unit_dc=True)
    alpha = np.linalg.lstsq(lms.reshape(-1, lms.shape[2]), pan_lp.ravel(), rcond=None)[0]
    intensity = (lms - haze) @ alpha
    return {"haze": haze, "alpha": alpha, "intensity_mean": intensity.mean(), "pan_lp_mean": pan_lp.mean(),
            "scale": _scalar_ratio(float(intensity.std()), float(pan_lp.std()), 1.0)}


def gsa(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
        border: str = "circular", gauss_lowpass: bool = False, fit: Coefficients | None = None) -> np.ndarray:
    """GSA (Aiazzi et al. 2007): Gram-Schmidt with an adaptive intensity.

    The intensity weights (with a constant) regress the low-passed, decimated PAN on the MS at MS scale; details
    PAN - I are injected with gains cov(I, LMS_b) / var(I); band means are restored at the end. The PAN low-pass
    is the toolbox's LPfilterPlusDec (B3-spline wavelet approximation); ``gauss_lowpass`` uses the generic sum-1
    Gaussian instead (GSA-gauss).
    """
    pan, ms, lms = _prepare(pan, ms, ratio, border)
    c = _gsa_fit(pan, ms, lms, ratio, gauss_lowpass) if fit is None else fit
    return _gsa_detailed(pan, lms, c) - c["fused_mean"] + c["lms_mean"]


def gsa_fit(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
            border: str = "circular", gauss_lowpass: bool = False) -> Coefficients:
    """GSA's means, intensity weights, intensity mean, gains and detailed-image mean, from these images."""
    return _gsa_fit(*_prepare(pan, ms, ratio, border), ratio, gauss_lowpass)


def _gsa_fit(pan: np.ndarray, ms: np.ndarray, lms: np.ndarray, ratio: int, gauss_lowpass: bool) -> Coefficients:
    n_bands = ms.shape[2]
    lms0 = lms - lms.mean(axis=(0, 1))
    ms0 = ms - ms.mean(axis=(0, 1))
    pan0 = pan - pan.mean()
    if gauss_lowpass:
        pan0_lr = decimate(mtf_filter(pan0, _GENERIC_GAIN, ratio, unit_dc=True), ratio)
    else:
        pan0_lr = lp_filter_plus_dec(pan0, ratio)
    design = np.concatenate([ms0.reshape(-1, n_bands), np.ones((ms0.shape[0] * ms0.shape[1], 1))], axis=1)
    alpha = np.linalg.lstsq(design, pan0_lr.ravel(), rcond=None)[0]
    intensity = lms0 @ alpha[:-1] + alpha[-1]
    c: Coefficients = {"lms_mean": lms.mean(axis=(0, 1)), "pan_mean": pan.mean(), "alpha": alpha,
                       "intensity_mean": intensity.mean()}
    intensity -= c["intensity_mean"]
    var_i = float(intensity.var())
    c["gains"] = np.array([_scalar_ratio(_cov(intensity, lms0[:, :, b]), var_i, 0.0) for b in range(n_bands)])
    c["fused_mean"] = _gsa_detailed(pan, lms, c).mean(axis=(0, 1))  # ~0 on the fitted images; kept for exactness
    return c


def _gsa_detailed(pan: np.ndarray, lms: np.ndarray, c: Coefficients) -> np.ndarray:
    """The mean-free LMS with the PAN's details (PAN - I) injected, before the band means are restored."""
    lms0 = lms - c["lms_mean"]
    intensity = lms0 @ c["alpha"][:-1] + c["alpha"][-1]
    intensity -= c["intensity_mean"]
    return lms0 + ((pan - c["pan_mean"]) - intensity)[:, :, None] * c["gains"]


def bdsd_pc(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
            border: str = "circular", unit_dc: bool = False, fit: Coefficients | None = None) -> np.ndarray:
    """BDSD-PC (Vivone 2019): band-dependent spatial detail with physical constraints.

    At MS scale, per band b, fit MS_b - LP(MS_b) ~ gamma_0 * PAN_lr + sum_k gamma_k LP(MS_k) with gamma_0 >= 0
    and gamma_k <= 0 (LP = sensor MTF filter, PAN_lr = MTF-filtered, decimated PAN); then apply the same
    coefficients at full scale: fused_b = LMS_b + gamma_0 * PAN + sum_k gamma_k LMS_k. The toolbox takes the
    low-resolution target as imresize(LMS, 1/ratio); here it is the original MS. ``unit_dc``: sum-1 MTF kernels.
    """
    pan, ms, lms = _prepare(pan, ms, ratio, border)
    gamma = _bdsd_pc_fit(pan, ms, ratio, sensor, unit_dc)["gamma"] if fit is None else fit["gamma"]
    full = np.concatenate([pan[:, :, None], lms], axis=2)
    return lms + full @ gamma


def bdsd_pc_fit(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
                border: str = "circular", unit_dc: bool = False) -> Coefficients:
    """BDSD-PC's gamma ((1 + B, B): PAN, then each LMS band, per output band), from these images."""
    pan, ms, _ = _prepare(pan, ms, ratio, border)
    return _bdsd_pc_fit(pan, ms, ratio, sensor, unit_dc)


def _bdsd_pc_fit(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor, unit_dc: bool) -> Coefficients:
    s = get_sensor(sensor)
    n_bands = ms.shape[2]
    ms_lp = mtf_filter(ms, ms_mtf_gains(s, n_bands), ratio, unit_dc=unit_dc)
    pan_lr = decimate(mtf_filter(pan, s.pan_mtf, ratio, unit_dc=unit_dc), ratio)
    design = np.concatenate([pan_lr.reshape(-1, 1), ms_lp.reshape(-1, n_bands)], axis=1)
    # Column scaling keeps the bounded solver well conditioned whatever the radiometric scale.
    col = np.maximum(np.abs(design).max(axis=0), 1e-12)
    lower = np.r_[0.0, np.full(n_bands, -np.inf)]
    upper = np.r_[np.inf, np.zeros(n_bands)]
    gamma = np.empty((n_bands + 1, n_bands))
    for b in range(n_bands):
        target = (ms[:, :, b] - ms_lp[:, :, b]).ravel()
        fit = lsq_linear(design / col, target, bounds=(lower, upper), method="bvls")
        gamma[:, b] = fit.x / col
    return {"gamma": gamma}


def mtf_glp_fs(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
               border: str = "circular", unit_dc: bool = False, fit: Coefficients | None = None) -> np.ndarray:
    """MTF-GLP-FS (Vivone et al. 2018): GLP with full-scale regression injection gains.

    PAN_L,b = interp23(decimate(MTF_b(PAN))); g_b = cov(LMS_b, PAN) / cov(PAN_L,b, PAN);
    fused_b = LMS_b + g_b (PAN - PAN_L,b). ``unit_dc``: sum-1 MTF kernels.
    """
    pan, ms, lms = _prepare(pan, ms, ratio, border)
    lowpasses = _glp_lowpasses(pan, ms_mtf_gains(sensor, ms.shape[2]), ratio, border, unit_dc)
    g_fs = _mtf_glp_fs_fit(pan, lms, lowpasses)["g"] if fit is None else fit["g"]
    fused = np.empty_like(lms)
    for b, pan_l in enumerate(lowpasses):
        fused[:, :, b] = lms[:, :, b] + g_fs[b] * (pan - pan_l)
    return fused


def mtf_glp_fs_fit(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
                   border: str = "circular", unit_dc: bool = False) -> Coefficients:
    """MTF-GLP-FS's injection gain g of each band, from these images."""
    pan, ms, lms = _prepare(pan, ms, ratio, border)
    return _mtf_glp_fs_fit(pan, lms, _glp_lowpasses(pan, ms_mtf_gains(sensor, ms.shape[2]), ratio, border, unit_dc))


def _mtf_glp_fs_fit(pan: np.ndarray, lms: np.ndarray, lowpasses: list[np.ndarray]) -> Coefficients:
    return {"g": np.array([_scalar_ratio(_cov(lms[:, :, b], pan), _cov(pan_l, pan), 0.0)
                           for b, pan_l in enumerate(lowpasses)])}


def _glp_lowpasses(pan: np.ndarray, gains: np.ndarray, ratio: int, border: str, unit_dc: bool) -> list[np.ndarray]:
    """Each band's GLP low-pass of the PAN (`_pan_lowpass` through its MTF gain), computed once per distinct gain."""
    lowpass: dict[float, np.ndarray] = {}
    return [lowpass.setdefault(float(g), _pan_lowpass(pan, float(g), ratio, border, unit_dc)) for g in gains]


def mtf_glp_hpm(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
                border: str = "circular", robust: bool = False, fit: Coefficients | None = None) -> np.ndarray:
    """MTF-GLP-HPM (Aiazzi et al. 2003/2006): GLP with high-pass modulation, as the toolbox's MTF_GLP_HPM.

    PAN is matched to each band's mean and to its std over the std of PAN's LPfilterGauss low-pass;
    fused_b = LMS_b * PAN_eq,b / (PAN_eq,L,b + eps) with PAN_eq,L,b the band-MTF GLP low-pass of PAN_eq,b. Where
    equalisation pushes the low-pass of dark pixels towards 0 the ratio explodes, as in the toolbox.

    ``robust`` (MTF-GLP-HPM-robust): sum-1 kernels (the generic Gaussian for the std), and where the low-pass
    falls below 5 % of the band mean the detail is added instead of multiplied, so the ratio cannot explode.
    """
    pan, ms, lms = _prepare(pan, ms, ratio, border)
    c = _mtf_glp_hpm_fit(pan, lms, ratio, robust) if fit is None else fit
    fused = np.empty_like(lms)
    for b, g in enumerate(ms_mtf_gains(sensor, ms.shape[2])):
        band, mean = lms[:, :, b], c["band_means"][b]
        pan_eq = (pan - c["pan_mean"]) * c["scales"][b] + mean
        pan_l = _pan_lowpass(pan_eq, float(g), ratio, border, unit_dc=robust)
        fused[:, :, b] = _hpm_floored(band, pan_eq, pan_l, mean) if robust else band * pan_eq / (pan_l + _EPS)
    return fused


def mtf_glp_hpm_fit(pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
                    border: str = "circular", robust: bool = False) -> Coefficients:
    """MTF-GLP-HPM's PAN mean, band means and each band's std over the PAN low-pass's, from these images."""
    pan, _, lms = _prepare(pan, ms, ratio, border)
    return _mtf_glp_hpm_fit(pan, lms, ratio, robust)


def _mtf_glp_hpm_fit(pan: np.ndarray, lms: np.ndarray, ratio: int, robust: bool) -> Coefficients:
    pan_lp = mtf_filter(pan, _GENERIC_GAIN, ratio, unit_dc=True) if robust else lp_filter_gauss(pan, ratio)
    lp_std = float(pan_lp.std())
    bands = [lms[:, :, b] for b in range(lms.shape[2])]
    return {"pan_mean": pan.mean(), "band_means": [band.mean() for band in bands],
            "scales": [_scalar_ratio(float(band.std()), lp_std, 1.0) for band in bands]}


# MATLAB's eps, the toolbox's guard in PAN_LP + eps.
_EPS = float(np.finfo(np.float64).eps)


def _hpm_floored(band: np.ndarray, pan_eq: np.ndarray, pan_l: np.ndarray, mean: float) -> np.ndarray:
    """band * pan_eq / pan_l where pan_l exceeds 5 % of the band mean (`mean`), band + pan_eq - pan_l (additive)
    elsewhere."""
    floor = _HPM_FLOOR * abs(float(mean)) + 1e-12
    ok = pan_l > floor
    modulated = band * pan_eq / np.where(ok, pan_l, 1.0)
    return np.where(ok, modulated, band + pan_eq - pan_l)
