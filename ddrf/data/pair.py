"""The PAN/MS pair every reader returns: numpy, band-last, digital numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Pair:
    """One co-registered PAN/MS pair, MS sample j centred on PAN pixel ratio*j + ratio//2 (the interp23 grid).

    pan is (H, W), ms is (h, w, B), both float64 digital numbers, H = ratio * h and W = ratio * w.
    crs, pan_transform and ms_transform (of the MS samples as read) are filled for georeferenced inputs.
    """

    name: str
    acquisition: str
    pan: np.ndarray
    ms: np.ndarray
    ratio: int
    sensor: str
    bits: int
    band_names: tuple[str, ...]
    crs: Any = None
    pan_transform: Any = None
    ms_transform: Any = None
    source: str = ""  # the file read (the PAN), for messages about the pair

    def __post_init__(self) -> None:
        self.band_names = tuple(self.band_names)
        where = f"pair {self.name!r}"
        if self.pan.ndim != 2:
            raise ValueError(f"{where}: pan must be (H, W), got shape {self.pan.shape}")
        if self.ms.ndim != 3:
            raise ValueError(f"{where}: ms must be (h, w, B), got shape {self.ms.shape}")
        if not isinstance(self.ratio, (int, np.integer)) or self.ratio < 1:
            raise ValueError(f"{where}: ratio must be a positive integer, got {self.ratio!r}")
        h, w, bands = self.ms.shape
        if self.pan.shape != (self.ratio * h, self.ratio * w):
            raise ValueError(f"{where}: pan {self.pan.shape} is not ratio {self.ratio} x ms {(h, w)}")
        if len(self.band_names) != bands:
            raise ValueError(f"{where}: {len(self.band_names)} band names for {bands} MS bands")

    @property
    def bands(self) -> int:
        return int(self.ms.shape[2])

    @property
    def max_value(self) -> float:
        """Largest representable DN, e.g. 255 for 8-bit data: the normalisation divisor."""
        return float(2**self.bits - 1)
