"""Digital numbers <-> model units: the per-band affine map a model card prescribes (numpy only).

Shared by training datasets, the runtime and the scene pipeline, so all three normalise identically.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddrf.card import Normalisation

MIN_SCALE = 1e-6


@dataclass(frozen=True)
class Radiometry:
    """value = (dn - offset) / scale, per band; MS bands and guide (PAN) bands separately."""

    ms_offset: np.ndarray
    ms_scale: np.ndarray
    guide_offset: np.ndarray
    guide_scale: np.ndarray

    def ms_to_model(self, ms: np.ndarray) -> np.ndarray:
        """Band-last MS digital numbers -> float32 model units (still band-last)."""
        return ((ms - self.ms_offset) / self.ms_scale).astype(np.float32)

    def guide_to_model(self, guide: np.ndarray) -> np.ndarray:
        return ((guide - self.guide_offset) / self.guide_scale).astype(np.float32)

    def ms_from_model(self, values: np.ndarray) -> np.ndarray:
        """Band-last model units -> float32 digital numbers."""
        return (values * self.ms_scale + self.ms_offset).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: [float(v) for v in getattr(self, k)] for k in ("ms_offset", "ms_scale", "guide_offset", "guide_scale")}


def _percentile_affine(values: np.ndarray, valid: np.ndarray | None, low: float, high: float,
                       ceiling: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (offset, scale) from the low/high percentiles of band-last values over valid pixels. Where the high
    percentile is the band's maximum and that is its file's `ceiling` (saturated pixels, clouds or snow, over more
    than 100 - high % of the scene), the band's percentiles are taken over its unsaturated pixels, as the training
    scenes (hardly any saturated pixel) had them: otherwise a saturated block would rescale the whole scene. A band
    with values above the ceiling (a bit depth the file does not keep to) is left as it is."""
    bands = values.reshape(-1, values.shape[-1])
    if valid is not None:
        bands = bands[valid.reshape(-1)]
    if bands.shape[0] == 0:
        raise ValueError("no valid pixels to compute scene statistics from")
    lo, hi = np.percentile(bands, [low, high], axis=0)
    saturated = (hi >= ceiling) & (bands.max(axis=0) == ceiling) if ceiling is not None else np.zeros(len(hi), bool)
    for band in np.flatnonzero(saturated):
        unsaturated = bands[bands[:, band] < ceiling, band]
        if unsaturated.size:
            lo[band], hi[band] = np.percentile(unsaturated, [low, high])
    # a (nearly) constant band's scale: a millionth of its magnitude, whatever the data's units (a floor of 1e-6
    # absolute squashed float bands of tiny values, such as radiance in W/(m2 sr um) scaled by 1e-10); the magnitude
    # of its percentiles, not its largest value, which a few stray pixels (an untagged fill at 1e30) made the scale
    # of every band; an all-zero band: 1e-6. Outliers are no longer bounded by the scale: ddrf.saturation fills them
    typical = np.maximum(np.abs(lo), np.abs(hi))
    return lo, np.maximum(hi - lo, MIN_SCALE * np.where(typical > 0, typical, 1.0))


def scene_radiometry(norm: Normalisation, ms: np.ndarray, guide: np.ndarray, ms_valid: np.ndarray | None = None,
                     guide_valid: np.ndarray | None = None, ms_ceiling: float | None = None,
                     guide_ceiling: float | None = None) -> Radiometry:
    """The affine map for one scene. `ms` (h, w, B) and `guide` (H, W, G) may be decimated previews of the scene:
    only "scene" normalisation reads them; bit_depth and fixed come from the card alone. The ceilings: the largest
    value each file's type and bit depth hold (saturation), where known."""
    if norm.kind != "scene":
        ms_offset, ms_scale = norm.affine("ms", ms.shape[-1])
        guide_offset, guide_scale = norm.affine("guide", guide.shape[-1])
        return Radiometry(*(np.asarray(a, np.float64) for a in (ms_offset, ms_scale, guide_offset, guide_scale)))
    ms_affine = _percentile_affine(ms, ms_valid, norm.low, norm.high, ms_ceiling)
    guide_affine = _percentile_affine(guide, guide_valid, norm.low, norm.high, guide_ceiling)
    return Radiometry(*ms_affine, *guide_affine)
