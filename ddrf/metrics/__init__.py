"""Pansharpening quality metrics, defined as the MATLAB pansharpening toolbox (Vivone et al.) defines them.

Inputs are band-last float arrays in digital numbers (fused/ref (H, W, B), PAN (H, W), MS (h, w, B)).
Choices that differ between published scripts are parameters and are recorded in the aggregate results:
the border crop (symmetric, `border` pixels of the fused grid on every side; the toolbox's
`dim_cut:end-dim_cut` drops dim_cut - 1 leading and dim_cut trailing rows/columns) and the PSNR/SSIM data range.
"""
from __future__ import annotations

import numpy as np

from ._common import as_image, as_pan, crop, same_shape
from .full import d_lambda_khan, d_lambda_qnr, d_s, d_s_qnr, hqnr, imresize_down, qnr, uiqi_blocks
from .q2n import q2n, q2n_map
from .reduced import ergas, psnr, q_index, sam, sam_map, scc, ssim, uiqi_map

__all__ = [
    "sam", "sam_map", "ergas", "q2n", "q2n_map", "scc", "q_index", "uiqi_map", "psnr", "ssim",
    "d_lambda_khan", "d_s", "hqnr", "d_lambda_qnr", "d_s_qnr", "qnr", "uiqi_blocks", "imresize_down",
    "reduced_resolution_metrics", "full_resolution_metrics",
]


def reduced_resolution_metrics(fused: np.ndarray, ref: np.ndarray, ratio: int, border: int = 0,
                               data_range: float | None = None, block: int = 32) -> dict[str, float]:
    """SAM, ERGAS, Q2n, SCC, Q, PSNR, SSIM of `fused` against `ref` after a symmetric border crop.

    data_range None -> the cropped reference's maximum (the peak value, as PSNR's definition uses).
    """
    f, r = same_shape(fused, ref)
    f, r = crop(f, border), crop(r, border)
    peak = float(r.max()) if data_range is None else float(data_range)
    return {
        "SAM": sam(f, r), "ERGAS": ergas(f, r, ratio), "Q2n": q2n(f, r, block, block), "SCC": scc(f, r),
        "Q": q_index(f, r, block), "PSNR": psnr(f, r, peak), "SSIM": ssim(f, r, peak),
        "border": border, "data_range": peak, "ratio": ratio,
    }


def full_resolution_metrics(fused: np.ndarray, pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str,
                            border: int = 0, block: int = 32) -> dict[str, float | int | str]:
    """D_lambda (Khan), D_s, HQNR and classic QNR with its D_lambda / D_s; LMS = interp23(ms, ratio).

    `border` is in fused-grid pixels and must be a multiple of `ratio` so the MS crop stays aligned.
    """
    from ddrf.filters import interp23

    f, p, m = as_image(fused, "fused"), as_pan(pan), as_image(ms, "ms")
    if border % ratio:
        raise ValueError(f"border {border} must be a multiple of the ratio {ratio}")
    lms = np.asarray(interp23(m, ratio), dtype=np.float64)
    f, p, lms = crop(f, border), crop(p, border), crop(lms, border)
    m = crop(m, border // ratio)
    dl, ds = d_lambda_khan(f, lms, ratio, sensor, block), d_s(f, p, lms, ratio, sensor, block)
    qdl, qds = d_lambda_qnr(f, m, block), d_s_qnr(f, p, m, ratio, block)
    result: dict[str, float | int | str] = {
        "D_lambda": dl, "D_s": ds, "HQNR": (1 - dl) * (1 - ds),
        "QNR_D_lambda": qdl, "QNR_D_s": qds, "QNR": (1 - qdl) * (1 - qds),
        "border": border, "ratio": ratio, "sensor": sensor,
    }
    return result
