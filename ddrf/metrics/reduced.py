"""Reduced-resolution (with reference) metrics, as the pansharpening toolbox defines them.

Argument order is always (fused, ref); the toolbox's own functions mostly take (ref, fused).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import box_sum_valid, same_shape


def sam_map(fused: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-pixel spectral angle in degrees (0 where either spectrum is all zero)."""
    f, r = same_shape(fused, ref)
    dot = np.einsum("hwb,hwb->hw", f, r)
    norm = np.sqrt(np.einsum("hwb,hwb->hw", f, f) * np.einsum("hwb,hwb->hw", r, r))
    cos = np.divide(dot, norm, out=np.ones_like(dot), where=norm != 0)
    # clip == real(acos(.)) of the toolbox when rounding pushes |cos| past 1
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def sam(fused: np.ndarray, ref: np.ndarray) -> float:
    """Mean spectral angle (degrees) over the pixels where both spectra have non-zero norm (SAM.m)."""
    f, r = same_shape(fused, ref)
    dot = np.einsum("hwb,hwb->hw", f, r).ravel()
    norm = np.sqrt(np.einsum("hwb,hwb->hw", f, f) * np.einsum("hwb,hwb->hw", r, r)).ravel()
    keep = norm != 0
    if not keep.any():
        raise ValueError("SAM is undefined: every pixel has a zero spectrum")
    ang = np.arccos(np.clip(dot[keep] / norm[keep], -1.0, 1.0))
    return float(np.degrees(ang.mean()))


def ergas(fused: np.ndarray, ref: np.ndarray, ratio: float) -> float:
    """(100 / ratio) * sqrt(mean_b MSE_b / mean(ref_b)^2) (ERGAS.m; ratio = PAN/MS resolution ratio, e.g. 4)."""
    f, r = same_shape(fused, ref)
    if ratio <= 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    mse = ((f - r) ** 2).mean(axis=(0, 1))
    mu = r.mean(axis=(0, 1))
    if np.any(mu == 0):
        raise ValueError("ERGAS is undefined: a reference band has zero mean")
    return float(100.0 / ratio * np.sqrt(np.mean(mse / mu ** 2)))


_SOBEL_SMOOTH = np.array([1.0, 2.0, 1.0])
_SOBEL_DIFF = np.array([1.0, 0.0, -1.0])


def _sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """|Sobel| of each band of x[1:-1, 1:-1], zero padding outside (imfilter's default), as SCC.m."""
    x = x[1:-1, 1:-1]
    kw = dict(mode="constant", cval=0.0)
    gy = ndimage.correlate1d(ndimage.correlate1d(x, _SOBEL_DIFF, axis=0, **kw), _SOBEL_SMOOTH, axis=1, **kw)
    gx = ndimage.correlate1d(ndimage.correlate1d(x, _SOBEL_SMOOTH, axis=0, **kw), _SOBEL_DIFF, axis=1, **kw)
    return np.hypot(gx, gy)


def scc(fused: np.ndarray, ref: np.ndarray) -> float:
    """Spatial correlation coefficient (SCC.m): cosine between Sobel magnitudes over all bands and pixels.

    The toolbox drops a 1-pixel frame and then filters with zero padding, so the outermost remaining pixels
    see a step to 0: the index is not invariant to a constant offset (only to a positive gain).
    """
    f, r = same_shape(fused, ref)
    if min(f.shape[:2]) < 3:
        raise ValueError(f"SCC needs at least 3x3 pixels, got {f.shape[:2]}")
    gf, gr = _sobel_magnitude(f), _sobel_magnitude(r)
    den = np.sqrt((gf ** 2).sum()) * np.sqrt((gr ** 2).sum())
    if den == 0:
        raise ValueError("SCC is undefined: an image has no gradient")
    return float((gf * gr).sum() / den)


def uiqi_map(x: np.ndarray, y: np.ndarray, block: int = 32) -> np.ndarray:
    """Wang-Bovik UIQI on every block x block sliding window ('valid'), img_qi.m including its 0/0 rules."""
    n = float(block * block)
    sx, sy = box_sum_valid(x, block), box_sum_valid(y, block)
    sxx, syy, sxy = box_sum_valid(x * x, block), box_sum_valid(y * y, block), box_sum_valid(x * y, block)
    mul = sx * sy
    sq_mul = sx * sx + sy * sy
    num = 4.0 * (n * sxy - mul) * mul
    den1 = n * (sxx + syy) - sq_mul
    den = den1 * sq_mul
    q = np.ones_like(den)
    flat = (den1 == 0) & (sq_mul != 0)
    np.divide(2.0 * mul, sq_mul, out=q, where=flat)
    np.divide(num, den, out=q, where=den != 0)
    return q


def q_index(fused: np.ndarray, ref: np.ndarray, block: int = 32) -> float:
    """Mean over bands of the sliding-window UIQI (Q.m with img_qi, window `block`)."""
    f, r = same_shape(fused, ref)
    if block < 2 or block > min(f.shape[:2]):
        raise ValueError(f"block {block} must be in [2, {min(f.shape[:2])}]")
    bands = [uiqi_map(np.ascontiguousarray(r[:, :, b]), np.ascontiguousarray(f[:, :, b]), block).mean()
             for b in range(f.shape[2])]
    return float(np.mean(bands))


def psnr(fused: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """10 log10(data_range^2 / MSE), MSE over all pixels and bands (inf when identical)."""
    f, r = same_shape(fused, ref)
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    mse = float(((f - r) ** 2).mean())
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def _gaussian_valid(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """filter2(w w^T, x, 'valid') for a separable window w."""
    k = win.size
    y = ndimage.correlate1d(x, win, axis=0, mode="constant")
    y = ndimage.correlate1d(y, win, axis=1, mode="constant")
    h = k // 2
    return y[h:-h, h:-h]


def ssim(fused: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Mean over bands of Wang et al. (2004) SSIM: 11x11 Gaussian (sigma 1.5), K1 0.01, K2 0.03, 'valid' map."""
    f, r = same_shape(fused, ref)
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    if min(f.shape[:2]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels, got {f.shape[:2]}")
    t = np.arange(11) - 5.0
    win = np.exp(-(t ** 2) / (2 * 1.5 ** 2))
    win /= win.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for b in range(f.shape[2]):
        x, y = r[:, :, b], f[:, :, b]
        mx, my = _gaussian_valid(x, win), _gaussian_valid(y, win)
        vx = _gaussian_valid(x * x, win) - mx * mx
        vy = _gaussian_valid(y * y, win) - my * my
        cxy = _gaussian_valid(x * y, win) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(s.mean())
    return float(np.mean(scores))
