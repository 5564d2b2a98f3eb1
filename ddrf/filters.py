"""MTF-matched Gaussian filters, the toolbox's other low-passes, Wald degradation and 23-tap interpolation.

Conventions follow the pansharpening toolbox (Vivone et al.) so that reduced-resolution data and metrics are
comparable with published numbers:

- MTF filter: 41x41 FIR whose frequency response is a Gaussian with the sensor's gain at the MS Nyquist frequency
  (1 / (2 * ratio) cycles per PAN pixel), designed with a radially rotated Kaiser window (beta 0.5), applied with
  replicated borders. Its DC gain is the toolbox's (just under 1); ``unit_dc=True`` rescales it to sum 1.
- Wald's protocol and the full-resolution indexes use the sum-1 kernels (PROTOCOL_UNIT_DC): a named departure
  kept so every table of record stays comparable (docs/EVALUATION.md measures it).
- Grid: MS pixel ``i`` sits on PAN pixel ``ratio * i + ratio // 2`` (0-based). ``interp23`` puts the MS samples
  there and ``wald_degrade`` decimates from there, so degrade -> interpolate is phase-consistent.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ddrf.sensors import Sensor, get_sensor, ms_mtf_gains

__all__ = [
    "mtf_kernel",
    "mtf_filter",
    "decimate",
    "wald_degrade",
    "wald_simulate_ratio",
    "interp23",
]


# Wald degradation and the full-resolution indexes (D_lambda, D_s) filter with sum-1 MTF kernels, where the
# toolbox's sum to 0.998 .. 0.9997. Kept on purpose: the bundled model was trained and every table of record was
# scored this way; docs/EVALUATION.md lists it with the classical methods' departures.
PROTOCOL_UNIT_DC = True


def _check_ratio(ratio: int) -> int:
    if isinstance(ratio, bool) or int(ratio) != ratio or ratio < 1:
        raise ValueError(f"ratio must be a positive integer, got {ratio!r}")
    return int(ratio)


def _kaiser_radial(taps: int, beta: float = 0.5) -> np.ndarray:
    """2-D window from a 1-D Kaiser window rotated about the centre (Huang's method, as MATLAB's fwind1)."""
    t = np.linspace(-1.0, 1.0, taps)
    radius = np.hypot(t[:, None], t[None, :])
    w = np.interp(radius, t, np.kaiser(taps, beta))
    w[radius > 1.0] = 0.0
    return w


def _gaussian_fir(gain_at_nyquist: float, ratio: int, taps: int, reach: float) -> np.ndarray:
    """The toolbox's Gaussian FIR design (genMTF, MTF_PAN, LPfilterGauss), not normalised.

    A Gaussian sampled on the taps x taps frequency grid, falling to ``gain_at_nyquist`` ``reach / (2 * ratio)``
    samples from DC (fspecial + divide by the peak), made an impulse response by inverse DFT and windowed by a
    radial Kaiser window, beta 0.5 (fwind1 with kaiser(taps)). Its DC gain is the window-weighted sum, slightly
    under 1 (0.998 .. 0.9997 for the gains in the sensor table).
    """
    ratio = _check_ratio(ratio)
    if not 0.0 < gain_at_nyquist < 1.0:
        raise ValueError(f"MTF gain at Nyquist must be in (0, 1), got {gain_at_nyquist}")
    if taps < 3 or taps % 2 == 0:
        raise ValueError(f"taps must be odd and >= 3, got {taps}")
    sigma = math.sqrt((reach / (2.0 * ratio)) ** 2 / (-2.0 * math.log(gain_at_nyquist)))
    x = np.arange(taps) - (taps - 1) / 2.0
    response = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma**2))
    impulse = np.real(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(response))))
    return impulse * _kaiser_radial(taps)


def mtf_kernel(gain_at_nyquist: float, ratio: int, taps: int = 41, unit_dc: bool = False) -> np.ndarray:
    """2-D low-pass FIR (taps x taps) with Gaussian frequency response equal to ``gain_at_nyquist`` at the MS
    Nyquist frequency, i.e. 1 / (2 * ratio) cycles per pixel of the image it filters: the toolbox's genMTF
    (reach taps - 1). ``unit_dc`` rescales it to sum 1 (a departure from the toolbox, see PROTOCOL_UNIT_DC).
    """
    kernel = _gaussian_fir(gain_at_nyquist, ratio, taps, reach=taps - 1)
    return kernel / kernel.sum() if unit_dc else kernel


def _filter2d(band: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlation with replicated borders (MATLAB imfilter 'replicate'), via FFT for speed on big images."""
    m, n = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(band, ((m, m), (n, n)), mode="edge")
    from scipy import signal  # here, not at the top: importing it takes about 1 s of every ddrf-run's start

    return signal.fftconvolve(padded, kernel[::-1, ::-1], mode="valid")


def mtf_filter(image: np.ndarray, gains: float | np.ndarray, ratio: int, taps: int = 41,
               unit_dc: bool = False) -> np.ndarray:
    """Low-pass a 2-D image or each band of a band-last 3-D image with its MTF-matched kernel (toolbox MTF.m).

    ``gains`` is one gain or one per band. Output has the input's shape, float64.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be 2-D (H, W) or band-last 3-D (H, W, B), got shape {img.shape}")
    n_bands = 1 if img.ndim == 2 else img.shape[2]
    g = np.atleast_1d(np.asarray(gains, dtype=np.float64))
    if g.size == 1:
        g = np.full(n_bands, g[0])
    if g.ndim != 1 or g.size != n_bands:
        raise ValueError(f"got {g.size} MTF gains for {n_bands} bands")
    if img.ndim == 2:
        return _filter2d(img, mtf_kernel(float(g[0]), ratio, taps, unit_dc))
    kernels: dict[float, np.ndarray] = {}
    out = np.empty_like(img)
    for b, gain in enumerate(g):
        k = kernels.setdefault(float(gain), mtf_kernel(float(gain), ratio, taps, unit_dc))
        out[:, :, b] = _filter2d(img[:, :, b], k)
    return out


def lp_filter_gauss(image: np.ndarray, ratio: int, gain: float = 0.3, taps: int = 41) -> np.ndarray:
    """The toolbox's LPfilterGauss: the generic Gaussian (gain 0.3 at Nyquist) with reach ``taps`` (not
    taps - 1 as genMTF), not normalised, replicated borders. A 2-D image."""
    return _filter2d(np.asarray(image, dtype=np.float64), _gaussian_fir(gain, ratio, taps, reach=taps))


# Starck-Murtagh B3-spline taps of the toolbox's LPfilterPlusDec (analysis and synthesis low-pass alike).
_B3 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _atrous(x: np.ndarray, level: int) -> np.ndarray:
    """Separable B3-spline pass with the taps dilated for ``level`` (0-based), half-sample symmetric borders."""
    taps = np.zeros(4 * 2**level + 1)
    taps[:: 2**level] = _B3
    for axis in (0, 1):
        x = ndimage.correlate1d(x, taps, axis=axis, mode="reflect")
    return x


def lp_filter_plus_dec(image: np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's LPfilterPlusDec (GSA's PAN low-pass), then its nearest decimation.

    The toolbox takes ceil(log2(ratio)) levels of a non-decimated wavelet transform (ndwt2) with the Starck-Murtagh
    filters h = htilde = B3 spline (times sqrt 2), zeroes every detail and reconstructs (indwt2). With the details
    gone that is each level's analysis low-pass followed by its synthesis low-pass: per level and axis the B3
    spline twice, a binomial filter of order 8 at ratio 2. Borders: half-sample symmetric, ndwt2's default 'sym'
    extension; only the outer pixels (4 per level at ratio 2) depend on it.
    """
    x = np.asarray(image, dtype=np.float64)
    levels = max(1, math.ceil(math.log2(_check_ratio(ratio))))
    for level in [*range(levels), *reversed(range(levels))]:
        x = _atrous(x, level)
    return decimate(x, ratio)


def decimate(image: np.ndarray, ratio: int) -> np.ndarray:
    """Keep every ratio-th pixel starting at ratio // 2 (the toolbox's imresize(..., 'nearest') phase)."""
    ratio = _check_ratio(ratio)
    s = ratio // 2
    return np.asarray(image)[s::ratio, s::ratio]


def wald_degrade(
    pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor
) -> tuple[np.ndarray, np.ndarray]:
    """Wald's protocol: MTF-matched low-pass then decimation of both inputs by ``ratio``.

    PAN (H, W) -> (H/r, W/r), MS (h, w, B) -> (h/r, w/r, B); the original MS is the reference for the
    degraded pair. Needs H = r*h, W = r*w and h, w multiples of r.
    """
    ratio = _check_ratio(ratio)
    pan, ms = _check_pair(pan, ms, ratio)
    h, w = ms.shape[:2]
    if h % ratio or w % ratio:
        raise ValueError(f"MS size {h}x{w} is not a multiple of ratio {ratio}; crop it first")
    s = get_sensor(sensor)
    ms_lr = decimate(mtf_filter(ms, ms_mtf_gains(s, ms.shape[2]), ratio, unit_dc=PROTOCOL_UNIT_DC), ratio)
    pan_lr = decimate(mtf_filter(pan, s.pan_mtf, ratio, unit_dc=PROTOCOL_UNIT_DC), ratio)
    return np.ascontiguousarray(pan_lr), np.ascontiguousarray(ms_lr)


def wald_simulate_ratio(pan: np.ndarray, ms: np.ndarray, sensor: str | Sensor,
                        target_ratio: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sensor of a higher ratio simulated from a ratio-2 pair by Wald's protocol (e.g. Landsat -> ratio 4).

    The reference is the original MS (cropped to a multiple of ``target_ratio``); the PAN is low-passed by its MTF
    for ratio 2 and decimated x2 onto the reference grid; the MS is low-passed by the MS MTF for ``target_ratio``
    and decimated by it. Returns (pan (h, w), ms_lr (h/t, w/t, B), reference (h, w, B)).
    """
    pan, ms = _check_pair(pan, ms, 2)
    t = _check_ratio(target_ratio)
    h, w = (n - n % t for n in ms.shape[:2])
    if h == 0 or w == 0:
        raise ValueError(f"MS {ms.shape[0]}x{ms.shape[1]} is smaller than the ratio {t}")
    s = get_sensor(sensor)
    reference = ms[:h, :w]
    pan_on_ms = decimate(mtf_filter(pan[: 2 * h, : 2 * w], s.pan_mtf, 2, unit_dc=PROTOCOL_UNIT_DC), 2)
    ms_lr = decimate(mtf_filter(reference, ms_mtf_gains(s, ms.shape[2]), t, unit_dc=PROTOCOL_UNIT_DC), t)
    return np.ascontiguousarray(pan_on_ms), np.ascontiguousarray(ms_lr), np.ascontiguousarray(reference)


def _check_pair(pan: np.ndarray, ms: np.ndarray, ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 PAN (H, W) and MS (h, w, B) with H = ratio*h, W = ratio*w."""
    pan = np.asarray(pan, dtype=np.float64)
    ms = np.asarray(ms, dtype=np.float64)
    if pan.ndim != 2:
        raise ValueError(f"pan must be 2-D (H, W), got shape {pan.shape}")
    if ms.ndim != 3:
        raise ValueError(f"ms must be band-last 3-D (h, w, B), got shape {ms.shape}")
    if pan.shape != (ratio * ms.shape[0], ratio * ms.shape[1]):
        raise ValueError(
            f"pan {pan.shape[0]}x{pan.shape[1]} is not ratio {ratio} x ms {ms.shape[0]}x{ms.shape[1]}"
        )
    return pan, ms


# Symmetric 23-tap interpolator of the toolbox (even offsets are zero: input samples pass unchanged).
_HALF23 = 2.0 * np.array(
    [0.5, 0.305334091185, 0.0, -0.072698593239, 0.0, 0.021809577942, 0.0, -0.005192756653, 0.0,
     0.000807762146, 0.0, -0.000060081482]
)
CDF23 = np.concatenate([_HALF23[:0:-1], _HALF23])


GENERAL_TAPS = 45  # interp23's one-stage filter for ratios other than powers of two


def interp23_takes(ratio: int) -> bool:
    """Powers of two (cascaded x2 stages), else ratios up to the one-stage filter's length: beyond it some output
    phases would meet no tap."""
    return ratio & (ratio - 1) == 0 or ratio <= GENERAL_TAPS


def _general_taps(ratio: int) -> np.ndarray:
    """45-tap Hamming-windowed low-pass with cutoff 1/ratio, gain ratio (MATLAB ratio*fir1(44, 1/ratio))."""
    from scipy import signal  # here, not at the top: see _filter2d

    return ratio * signal.firwin(GENERAL_TAPS, 1.0 / ratio)


def _upsample_axis(
    x: np.ndarray, axis: int, ratio: int, taps: np.ndarray, offset: int, border: str, unit_dc: bool = False
) -> np.ndarray:
    """Zero-insert along ``axis`` (sample i -> ratio*i + offset) and filter with ``taps``, done polyphase.

    Output sample n = ratio*j + q only meets input samples whose tap index k has
    q + k - centre - offset divisible by ratio, so each phase is a short correlation of the input
    (the inserted zeros are never multiplied). ``unit_dc`` rescales each phase to sum 1 so constants stay
    exactly constant.
    """
    centre = (len(taps) - 1) // 2
    mode = "wrap" if border == "circular" else "reflect"  # ndimage 'reflect' = half-sample symmetric
    shape = list(x.shape)
    shape[axis] *= ratio
    out = np.empty(shape, dtype=np.float64)
    for q in range(ratio):
        phase = tuple(slice(q, None, ratio) if a == axis else slice(None) for a in range(x.ndim))
        ks = range((centre + offset - q) % ratio, len(taps), ratio)
        shifts = {(q + k - centre - offset) // ratio: taps[k] for k in ks if taps[k] != 0.0}
        lo, hi = min(min(shifts), 0), max(max(shifts), 0)
        if unit_dc:
            total = sum(shifts.values())
            shifts = {k: c / total for k, c in shifts.items()}
        if lo == hi == 0:
            out[phase] = shifts[0] * x
            continue
        weights = np.zeros(hi - lo + 1)
        for s, c in shifts.items():
            weights[s - lo] = c
        # correlate1d: out[j] = sum_i weights[i] * x[j + i - (len//2 + origin)]; we want x[j + lo + i].
        origin = -lo - len(weights) // 2
        out[phase] = ndimage.correlate1d(x, weights, axis=axis, mode=mode, origin=origin)
    return out


def _upsample_2d(
    x: np.ndarray, ratio: int, taps: np.ndarray, offset: int, border: str, unit_dc: bool = False
) -> np.ndarray:
    y = _upsample_axis(x, 0, ratio, taps, offset, border, unit_dc)
    return _upsample_axis(y, 1, ratio, taps, offset, border, unit_dc)


def interp23(ms: np.ndarray, ratio: int, border: str = "circular") -> np.ndarray:
    """Upsample MS (h, w, B) or a 2-D image by an integer ``ratio`` onto the PAN grid (the toolbox's EXP/LMS).

    Powers of two: cascaded x2 stages of the 23-tap polynomial interpolator (toolbox interp23tap). Other
    ratios: one stage with a 45-tap Hamming-windowed low-pass, cutoff 1/ratio (toolbox interp23tapGeneral),
    each polyphase component rescaled to unit DC gain (the toolbox's are off by up to 6e-5 at ratio 3 and
    0.3 % at ratio 6, which prints a ratio-periodic ripple on flat areas).

    Grid: MS pixel i lands on PAN pixel ratio*i + ratio//2 (0-based) and keeps its value exactly in the
    power-of-two case, so ``decimate(interp23(ms, r), r) == ms``. Geometrically this places each MS centre
    half a PAN pixel right/below the centre of its r x r PAN block when r is even (the toolbox convention).

    ``border``: "circular" (toolbox, wraps around) or "symmetric" (mirror at the edges, better for tiles).
    """
    ratio = _check_ratio(ratio)
    if not interp23_takes(ratio):
        raise ValueError(f"interp23 takes powers of two and ratios up to {GENERAL_TAPS}, got ratio {ratio}")
    if border not in ("circular", "symmetric"):
        raise ValueError(f"border must be 'circular' or 'symmetric', got {border!r}")
    x = np.asarray(ms, dtype=np.float64)
    if x.ndim not in (2, 3) or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"ms must be 2-D (h, w) or band-last 3-D (h, w, B), got shape {x.shape}")
    if ratio == 1:
        return x.copy()
    if ratio & (ratio - 1) == 0:
        # First x2 stage puts samples on odd positions, later stages on even ones: centre ends at ratio//2.
        for stage in range(int(math.log2(ratio))):
            x = _upsample_2d(x, 2, CDF23, 1 if stage == 0 else 0, border)
        return x
    return _upsample_2d(x, ratio, _general_taps(ratio), ratio // 2, border, unit_dc=True)
