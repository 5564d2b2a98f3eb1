"""Q2n (Q4, Q8, ...): the hypercomplex universal image quality index, as the pansharpening toolbox's q2n.m.

Toolbox steps reproduced, in order:
1. Pad the image on the bottom/right by mirroring (edge pixel repeated, numpy 'symmetric') so that
   ceil(N / shift) blocks of `block` pixels fit, N = rows or columns.
2. Cast both images as MATLAB's uint16(): round half away from zero, saturate to [0, 65535]. The index is
   therefore computed on integer digital numbers; float images in [0, 1] must be scaled to DN first (a [0, 1]
   image would collapse to 0/1 values).
3. Append all-zero bands up to the next power of two (3 bands -> 4, 6 -> 8).
4. Per block: every band of both images is normalised with the *reference* block's mean and sample std
   (std 0 -> MATLAB eps; when the reference mean is 0 the fused band is only shifted by +1, not divided);
   the fused vector is conjugated and the index is |q|, q = cov(z_ref, conj z_fus) * 2 * mean bias / (sum of
   variances), with Cayley-Dickson products and the unbiased n / (n - 1) scaling. A block whose summed
   variance term is exactly 0 scores its mean-bias term only.
5. Q2n = mean of |q| over blocks.
The per-block product mean is computed from the band cross-moment matrix and the algebra's structure
constants (the product is bilinear), which equals the toolbox's pixel-wise product averaged.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._common import MATLAB_EPS, same_shape

_CHUNK_PIXELS = 1 << 20  # ~1 M pixels per chunk bounds the temporaries (~70 MB per array at 8 bands)


def conj(x: np.ndarray) -> np.ndarray:
    """Hypercomplex conjugate along the last axis."""
    out = -x
    out[..., 0] = x[..., 0]
    return out


def cd_mult(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cayley-Dickson product along the last axis (length a power of two), the toolbox's recursion."""
    n = x.shape[-1]
    if n == 1:
        return x * y
    h = n // 2
    a, b = x[..., :h], conj(x[..., h:])
    c, d = y[..., :h], conj(y[..., h:])
    if n == 2:
        return np.concatenate([a * c - d * b, a * d + c * b], axis=-1)
    first = cd_mult(a, c) - cd_mult(d, conj(b))
    second = cd_mult(conj(a), d) + cd_mult(c, b)
    return np.concatenate([first, second], axis=-1)


@lru_cache(maxsize=8)
def _structure(n: int) -> np.ndarray:
    """C[i, j, k] = k-th component of e_i * e_j, so (x * y)_k = sum_ij C[i, j, k] x_i y_j."""
    eye = np.eye(n)
    return cd_mult(np.repeat(eye, n, axis=0), np.tile(eye, (n, 1))).reshape(n, n, n)


def matlab_uint16(x: np.ndarray) -> np.ndarray:
    """MATLAB uint16(): round half away from zero (inputs >= 0 after the clip), saturate; kept as float64."""
    return np.floor(np.clip(x, 0.0, 65535.0) + 0.5)


def _pad_to_grid(x: np.ndarray, block: int, shift: int) -> tuple[np.ndarray, int, int]:
    h, w = x.shape[:2]
    ny, nx = -(-h // shift), -(-w // shift)
    ey, ex = (ny - 1) * shift + block - h, (nx - 1) * shift + block - w
    if ey > h or ex > w:
        raise ValueError(f"image {h}x{w} is too small for block {block} / shift {shift}")
    if ey or ex:
        x = np.pad(x, ((0, ey), (0, ex), (0, 0)), mode="symmetric")
    return x, ny, nx


def _block_view(x: np.ndarray, block: int, shift: int, ny: int, nx: int) -> np.ndarray:
    """(ny, nx, block*block, B) copy of the blocks at multiples of `shift`."""
    if shift == block:
        v = x.reshape(ny, block, nx, block, x.shape[2]).swapaxes(1, 2)
    else:
        w = np.lib.stride_tricks.sliding_window_view(x, (block, block), axis=(0, 1))[::shift, ::shift]
        v = np.moveaxis(w, 2, 4)  # (ny, nx, block, block, B)
    return v.reshape(ny, nx, block * block, x.shape[2])


def _blocks_q(ref: np.ndarray, fus: np.ndarray) -> np.ndarray:
    """|q| per block; ref, fus (n_blocks, n_pixels, B) in DN with B a power of two."""
    n = ref.shape[1]
    unbias = n / (n - 1)
    mean = ref.mean(axis=1, keepdims=True)
    std = ref.std(axis=1, ddof=1, keepdims=True)
    std = np.where(std == 0, MATLAB_EPS, std)
    z1 = (ref - mean) / std + 1.0
    z2 = np.where(mean == 0, fus + 1.0, (fus - mean) / std + 1.0)
    z2 = conj(z2)
    m1, m2 = z1.mean(axis=1), z2.mean(axis=1)  # (nb, B)
    mod1, mod2 = (m1 ** 2).sum(axis=1), (m2 ** 2).sum(axis=1)  # squared moduli of the means
    int1 = unbias * (z1 ** 2).sum(axis=2).mean(axis=1)
    int2 = unbias * (z2 ** 2).sum(axis=2).mean(axis=1)
    termine3 = int1 + int2 - unbias * (mod1 + mod2)
    mean_bias = 2.0 * np.sqrt(mod1) * np.sqrt(mod2) / (mod1 + mod2)
    c = _structure(ref.shape[2])
    cross = np.einsum("npi,npj->nij", z1, z2, optimize=True) / n  # mean of z1_i * z2_j
    qv = unbias * np.einsum("nij,ijk->nk", cross, c)
    qm = np.einsum("ni,nj,ijk->nk", m1, m2, c)
    safe = np.where(termine3 == 0, 1.0, termine3)
    q = (qv - unbias * qm) * (mean_bias * 2.0 / safe)[:, None]
    flat = np.zeros_like(q)
    flat[:, -1] = mean_bias  # toolbox: a zero-variance block keeps only its mean-bias term, in the last slot
    q = np.where((termine3 == 0)[:, None], flat, q)
    return np.sqrt((q ** 2).sum(axis=1))


def q2n_map(fused: np.ndarray, ref: np.ndarray, block: int = 32, shift: int = 32) -> np.ndarray:
    """Per-block Q2n values (ny, nx); see the module docstring for the toolbox rules."""
    f, r = same_shape(fused, ref)
    if block < 2 or shift < 1 or shift > block:
        raise ValueError(f"need block >= 2 and 1 <= shift <= block, got block={block}, shift={shift}")
    nb = f.shape[2]
    n_pad = (1 << (nb - 1).bit_length()) - nb
    r, ny, nx = _pad_to_grid(matlab_uint16(r), block, shift)
    f, _, _ = _pad_to_grid(matlab_uint16(f), block, shift)
    if n_pad:
        zeros = np.zeros(r.shape[:2] + (n_pad,))
        r, f = np.concatenate([r, zeros], axis=2), np.concatenate([f, zeros], axis=2)
    rows = max(1, _CHUNK_PIXELS // (nx * block * block))
    out = np.empty((ny, nx))
    for j0 in range(0, ny, rows):
        j1 = min(ny, j0 + rows)
        lo, hi = j0 * shift, (j1 - 1) * shift + block
        rb = _block_view(r[lo:hi], block, shift, j1 - j0, nx).reshape(-1, block * block, r.shape[2])
        fb = _block_view(f[lo:hi], block, shift, j1 - j0, nx).reshape(-1, block * block, r.shape[2])
        out[j0:j1] = _blocks_q(rb, fb).reshape(j1 - j0, nx)
    return out


def q2n(fused: np.ndarray, ref: np.ndarray, block: int = 32, shift: int = 32) -> float:
    """Q2n index of `fused` against `ref` (both band-last, digital numbers); 1 is perfect."""
    return float(q2n_map(fused, ref, block, shift).mean())
