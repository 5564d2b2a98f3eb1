"""Shared input checks and window arithmetic for the metrics (numpy only)."""
from __future__ import annotations

import numpy as np

MATLAB_EPS = float(np.finfo(np.float64).eps)  # MATLAB's `eps`, used by the toolbox as a zero guard


def as_image(x: np.ndarray, name: str) -> np.ndarray:
    """Float64 band-last copy-free view; a 2-D array becomes one band."""
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (H, W) or band-last (H, W, B), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def as_pan(x: np.ndarray, name: str = "pan") -> np.ndarray:
    """Float64 PAN (H, W); a (H, W, 1) array is accepted."""
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (H, W), got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def same_shape(fused: np.ndarray, ref: np.ndarray, a: str = "fused", b: str = "ref") -> tuple[np.ndarray, np.ndarray]:
    f, r = as_image(fused, a), as_image(ref, b)
    if f.shape != r.shape:
        raise ValueError(f"{a} {f.shape} and {b} {r.shape} must have the same shape")
    return f, r


def crop(x: np.ndarray, border: int) -> np.ndarray:
    """Drop `border` pixels on every side of the first two axes."""
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return x
    if 2 * border >= min(x.shape[0], x.shape[1]):
        raise ValueError(f"border {border} leaves nothing of a {x.shape[0]}x{x.shape[1]} image")
    return x[border:-border, border:-border]


def box_sum_valid(x: np.ndarray, k: int) -> np.ndarray:
    """Sum over every k x k window fully inside x (MATLAB filter2(ones(k), x, 'valid')).

    Separable cumsum-and-difference per axis keeps the partial sums small (one column strip at a time), so
    integer-valued inputs give exact sums and the toolbox's exact-zero tests behave as in MATLAB.
    """
    return _valid_sum_axis(_valid_sum_axis(x, k, 0), k, 1)


def _valid_sum_axis(x: np.ndarray, k: int, axis: int) -> np.ndarray:
    c = np.cumsum(x, axis=axis)
    n = c.shape[axis]
    sl = lambda a, b: (slice(None),) * axis + (slice(a, b),)  # noqa: E731
    out = c[sl(k - 1, n)]  # a view of c; numpy buffers the overlapping in-place subtraction
    out[sl(1, None)] -= c[sl(0, n - k)]
    return out


def blocks(x: np.ndarray, size: int) -> np.ndarray:
    """Distinct size x size blocks of a (H, W, ...) array -> (n_blocks, size*size, ...); H, W multiples of size."""
    h, w = x.shape[:2]
    rest = x.shape[2:]
    b = x.reshape(h // size, size, w // size, size, *rest).swapaxes(1, 2)
    return b.reshape((h // size) * (w // size), size * size, *rest)


def require_multiple(h: int, w: int, block: int, what: str) -> None:
    if block < 2:
        raise ValueError(f"block must be >= 2, got {block}")
    if h % block or w % block:
        raise ValueError(f"{what} size {h}x{w} must be a multiple of the block size {block} (toolbox rule)")
