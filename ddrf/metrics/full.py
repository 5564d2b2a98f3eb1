"""Full-resolution (no reference) metrics: Khan's D_lambda, the toolbox's D_s and HQNR, and classic QNR.

HQNR follows the 2020 toolbox (HQNR.m): D_lambda_K = 1 - Q2n(MTF(fused), LMS) and D_s compares, band by band, the
block UIQI of (fused, PAN) with that of (LMS, MTF_PAN(PAN)) on distinct block x block tiles. Classic QNR follows
Alparone et al. 2008 (the toolbox's `flag_orig_paper = 1` branch): inter-band UIQI of the fused image on S x S
blocks vs the original MS on S/ratio blocks, and UIQI against a PAN reduced with MATLAB's bicubic imresize.
Exponents p = q = 1, alpha = beta = 1. Image sizes must be multiples of the block size (the toolbox errors too).
"""
from __future__ import annotations

import numpy as np

from ddrf.filters import PROTOCOL_UNIT_DC, mtf_filter
from ddrf.sensors import get_sensor, ms_mtf_gains

from ._common import as_image, as_pan, blocks, require_multiple
from .q2n import q2n


def uiqi_blocks(x: np.ndarray, y: np.ndarray, block: int) -> float:
    """Mean UIQI over distinct block x block tiles of 2-D x, y (uqi in D_s.m / D_lambda.m).

    uqi.m is 4 cov mx my / (vx + vy) / (mx^2 + my^2); where that is 0/0 (flat tiles) the toolbox returns NaN.
    Here img_qi's rules apply instead: zero-variance tiles score 2 mx my / (mx^2 + my^2), all-zero tiles 1.
    """
    bx, by = blocks(x, block), blocks(y, block)
    mx, my = bx.mean(axis=1), by.mean(axis=1)
    dx, dy = bx - mx[:, None], by - my[:, None]
    n = bx.shape[1]
    vx, vy = (dx * dx).sum(axis=1) / (n - 1), (dy * dy).sum(axis=1) / (n - 1)
    cxy = (dx * dy).sum(axis=1) / (n - 1)
    m2 = mx * mx + my * my
    den = (vx + vy) * m2
    q = np.where(m2 != 0, 2 * mx * my / np.where(m2 != 0, m2, 1.0), 1.0)
    q = np.where(den != 0, 4 * cxy * mx * my / np.where(den != 0, den, 1.0), q)
    return float(q.mean())


def _mtf_pan(pan: np.ndarray, ratio: int, sensor: str) -> np.ndarray:
    gain = np.atleast_1d(np.asarray(get_sensor(sensor).pan_mtf, dtype=np.float64))[:1]
    low = mtf_filter(pan[:, :, None], gain, ratio, unit_dc=PROTOCOL_UNIT_DC)
    return np.asarray(low, dtype=np.float64).reshape(pan.shape)


def _check_full(fused: np.ndarray, pan: np.ndarray, lms: np.ndarray, block: int) -> tuple[np.ndarray, ...]:
    f, lm, p = as_image(fused, "fused"), as_image(lms, "lms"), as_pan(pan)
    if f.shape != lm.shape:
        raise ValueError(f"fused {f.shape} and lms {lm.shape} must have the same shape")
    if p.shape != f.shape[:2]:
        raise ValueError(f"pan {p.shape} must match the fused grid {f.shape[:2]}")
    require_multiple(f.shape[0], f.shape[1], block, "fused")
    return f, p, lm


def d_lambda_khan(fused: np.ndarray, lms: np.ndarray, ratio: int, sensor: str, block: int = 32) -> float:
    """Khan's spectral distortion: 1 - Q2n(MTF-filtered fused, LMS) on block x block tiles (D_lambda_K.m)."""
    f, lm = as_image(fused, "fused"), as_image(lms, "lms")
    if f.shape != lm.shape:
        raise ValueError(f"fused {f.shape} and lms {lm.shape} must have the same shape")
    require_multiple(f.shape[0], f.shape[1], block, "fused")
    low = mtf_filter(f, ms_mtf_gains(sensor, f.shape[2]), ratio, unit_dc=PROTOCOL_UNIT_DC)
    return 1.0 - q2n(low, lm, block, block)


def d_s(fused: np.ndarray, pan: np.ndarray, lms: np.ndarray, ratio: int, sensor: str, block: int = 32,
        q: float = 1.0) -> float:
    """Spatial distortion of HQNR (D_s.m of the 2020 toolbox, with MTF_PAN as the PAN low-pass)."""
    f, p, lm = _check_full(fused, pan, lms, block)
    p_low = _mtf_pan(p, ratio, sensor)
    diffs = [abs(uiqi_blocks(f[:, :, b], p, block) - uiqi_blocks(lm[:, :, b], p_low, block)) ** q
             for b in range(f.shape[2])]
    return float(np.mean(diffs) ** (1.0 / q))


def hqnr(fused: np.ndarray, pan: np.ndarray, lms: np.ndarray, ratio: int, sensor: str, block: int = 32) -> float:
    """Hybrid QNR = (1 - D_lambda_khan) * (1 - D_s)."""
    return (1.0 - d_lambda_khan(fused, lms, ratio, sensor, block)) * (1.0 - d_s(fused, pan, lms, ratio, sensor, block))


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a <= 1, 1.5 * a ** 3 - 2.5 * a ** 2 + 1,
                    np.where(a <= 2, -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2, 0.0))


def _imresize_matrix(n_in: int, ratio: int) -> np.ndarray:
    """(n_in / ratio, n_in) weights of MATLAB imresize(., 1/ratio) 'bicubic' with antialiasing, mirrored edges."""
    scale = 1.0 / ratio
    n_out = int(np.ceil(n_in * scale))
    width = 4.0 / scale
    x = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(x - width / 2)
    idx = left[:, None] + np.arange(int(np.ceil(width)) + 2)[None, :]
    w = scale * _cubic(scale * (x[:, None] - idx))
    w /= w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), idx.shape[1]), cols.ravel()), w.ravel())
    return m


def imresize_down(pan: np.ndarray, ratio: int) -> np.ndarray:
    """MATLAB imresize(pan, 1/ratio) with the default bicubic kernel and antialiasing (double input)."""
    p = as_pan(pan)
    if int(ratio) != ratio or ratio < 1:
        raise ValueError(f"ratio must be a positive integer, got {ratio}")
    return _imresize_matrix(p.shape[0], int(ratio)) @ p @ _imresize_matrix(p.shape[1], int(ratio)).T


def _ratio_of(fused: np.ndarray, ms: np.ndarray) -> int:
    r = fused.shape[0] // ms.shape[0]
    if r < 1 or fused.shape[0] != r * ms.shape[0] or fused.shape[1] != r * ms.shape[1]:
        raise ValueError(f"fused {fused.shape[:2]} must be an integer multiple of ms {ms.shape[:2]}")
    return r


def d_lambda_qnr(fused: np.ndarray, ms: np.ndarray, block: int = 32, p: float = 1.0) -> float:
    """Classic QNR spectral distortion: inter-band UIQI of fused (block) vs original MS (block / ratio)."""
    f, m = as_image(fused, "fused"), as_image(ms, "ms")
    if f.shape[2] != m.shape[2] or f.shape[2] < 2:
        raise ValueError(f"fused and ms need the same number (>= 2) of bands, got {f.shape[2]} and {m.shape[2]}")
    ratio = _ratio_of(f, m)
    if block % ratio:
        raise ValueError(f"block {block} must be a multiple of the ratio {ratio}")
    require_multiple(f.shape[0], f.shape[1], block, "fused")
    nb = f.shape[2]
    diffs = [abs(uiqi_blocks(f[:, :, i], f[:, :, j], block) - uiqi_blocks(m[:, :, i], m[:, :, j], block // ratio)) ** p
             for i in range(nb - 1) for j in range(i + 1, nb)]
    return float(np.mean(diffs) ** (1.0 / p))


def d_s_qnr(fused: np.ndarray, pan: np.ndarray, ms: np.ndarray, ratio: int, block: int = 32, q: float = 1.0) -> float:
    """Classic QNR spatial distortion: UIQI(fused_b, PAN) vs UIQI(MS_b, imresize(PAN, 1/ratio))."""
    f, m, p = as_image(fused, "fused"), as_image(ms, "ms"), as_pan(pan)
    if p.shape != f.shape[:2] or f.shape[2] != m.shape[2]:
        raise ValueError(f"pan {p.shape}, fused {f.shape} and ms {m.shape} do not match")
    if _ratio_of(f, m) != ratio or block % ratio:
        raise ValueError(f"ratio {ratio} must match the fused/ms sizes and divide block {block}")
    require_multiple(f.shape[0], f.shape[1], block, "fused")
    p_lr = imresize_down(p, ratio)
    diffs = [abs(uiqi_blocks(f[:, :, b], p, block) - uiqi_blocks(m[:, :, b], p_lr, block // ratio)) ** q
             for b in range(f.shape[2])]
    return float(np.mean(diffs) ** (1.0 / q))


def qnr(fused: np.ndarray, pan: np.ndarray, ms: np.ndarray, ratio: int, block: int = 32) -> float:
    """Classic QNR = (1 - D_lambda) * (1 - D_s), alpha = beta = p = q = 1."""
    return (1.0 - d_lambda_qnr(fused, ms, block)) * (1.0 - d_s_qnr(fused, pan, ms, ratio, block))
