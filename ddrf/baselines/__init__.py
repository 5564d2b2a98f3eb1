"""Classical pansharpening baselines: ``fuse(method, pan, ms, ratio, sensor)`` and the ``METHODS`` table."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ddrf.baselines.classical import bdsd_pc, brovey, bt_h, exp, gsa, mtf_glp_fs, mtf_glp_hpm
from ddrf.sensors import Sensor

__all__ = ["METHODS", "fuse"]

# Each callable: (pan (H, W), ms (h, w, B), ratio, sensor="generic", **options) -> fused (H, W, B) float64.
METHODS: dict[str, Callable[..., np.ndarray]] = {
    "EXP": exp,
    "Brovey": brovey,
    "BT-H": bt_h,
    "GSA": gsa,
    "BDSD-PC": bdsd_pc,
    "MTF-GLP-FS": mtf_glp_fs,
    "MTF-GLP-HPM": mtf_glp_hpm,
}


def fuse(method: str, pan: np.ndarray, ms: np.ndarray, ratio: int, sensor: str | Sensor = "generic",
         **options: Any) -> np.ndarray:
    """Fuse PAN (H, W) and MS (h, w, B), H = ratio*h, with a classical method; returns (H, W, B) float64.

    ``options`` go to the method (``border`` for all; ``weights`` for Brovey).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return METHODS[method](pan, ms, ratio, sensor, **options)
