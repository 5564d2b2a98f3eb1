"""Saturated pixels (clouds, snow: a file's largest value): what the network sees there, and what the output says.

A pixel at its file's ceiling (ddrf.scenes.writer.value_range: type and bit depth) holds no measurement, only a
bound, and lies far outside the training scenes' range (a saturated block is about 35 model units where the rest
is 0-1). Fed as it is, it moved every pixel the network's statistics and receptive field reach, across the whole
scene for a scene-statistics model. So the network sees each saturated pixel as a flat area in the middle of the
scene's unsaturated range (`saturated_fills`, `fill_saturated`), and the output says what is known there
(`restore_saturated`): the ceiling where the MS band is saturated, the upsampled MS where only the PAN is (no PAN
detail to add).
Stray values far outside the scene's range (`OUTLIER_UNITS`) are no measurement either: the network sees them as
the same fill, and the output keeps what the MS says there as the upsampled MS (`fill_outliers`, `restore_outliers`).
"""
from __future__ import annotations

import numpy as np

from ddrf.filters import interp23
from ddrf.radiometry import Radiometry

Ceilings = tuple[float | None, float | None]  # (MS, PAN): the largest value each file holds, None where unknown
FILL_LEVEL = 0.5  # model units: mid-range (between the 1st and 99th percentiles for "scene" normalisation)
# what `restore_saturated` writes, in words (ddrf-run's saturation warning)
RESTORED = "the MS ceiling where an MS band is saturated, the upsampled MS where only the PAN is"
# model units past which a value is a stray (a bad decode, an untagged fill, values a 12-bit product cannot hold):
# this far outside the scene's 1st..99th percentile range (0..1) on either side. The sample scene's clouds reach 5.8.
OUTLIER_UNITS = 10.0
# a classical method has no scene statistics and no trained range: only values that break its float arithmetic
# (an untagged fill at 1e30 left the PAN no detail beside its mean) are strays to it, never a bright island or cloud
# over a dark sea, which can lie tens of units past a sea's 99th percentile
CLASSICAL_OUTLIER_UNITS = 1e4


def _masks(pan: np.ndarray, ms: np.ndarray, ceilings: Ceilings) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(PAN (H, W), MS (h, w, B)) masks of saturated pixels; None where none is or the ceiling is unknown."""
    ms_ceiling, pan_ceiling = ceilings
    pan_mask = pan >= pan_ceiling if pan_ceiling is not None else None
    ms_mask = ms >= ms_ceiling if ms_ceiling is not None else None
    return (pan_mask if pan_mask is not None and pan_mask.any() else None,
            ms_mask if ms_mask is not None and ms_mask.any() else None)


def saturated_fills(radiometry: Radiometry) -> tuple[np.ndarray, float]:
    """What the network sees at saturated pixels: per band the DN of FILL_LEVEL model units, the same in every
    window, so that tiles still agree (a nearest-neighbour fill, tried, moved the output near a block by up to 9 %
    of a band's std between tile sizes). A bright fill at 1 unit moved the rest of the scene twice as much."""
    ms = radiometry.ms_offset + FILL_LEVEL * radiometry.ms_scale
    return ms, float(radiometry.guide_offset[0] + FILL_LEVEL * radiometry.guide_scale[0])


def fill_saturated(pan: np.ndarray, ms: np.ndarray, ceilings: Ceilings,
                   fills: tuple[np.ndarray, float]) -> tuple[np.ndarray, np.ndarray]:
    """(PAN (H, W), MS (h, w, B)) as the network should see them: saturated pixels set to `fills` ((B,) MS DN,
    PAN DN), values of the scene alone so that every window sees the same. The same arrays when nothing is
    saturated."""
    pan_mask, ms_mask = _masks(pan, ms, ceilings)
    if pan_mask is not None:
        pan = np.where(pan_mask, fills[1], pan)
    if ms_mask is not None:
        ms = np.where(ms_mask, np.asarray(fills[0]), ms)
    return pan, ms


def restore_saturated(fused: np.ndarray, pan: np.ndarray, ms: np.ndarray, ceilings: Ceilings, ratio: int,
                      lms_border: str) -> np.ndarray:
    """`fused` (samples, H, W, B) DN of the window whose unfilled inputs are `pan` (H, W) and `ms` (h, w, B), with
    saturated pixels saying what is known: the upsampled MS where the PAN is saturated, and the MS ceiling where
    the MS band is (on the PAN pixels that MS pixel covers). There the first sample holds that value and the others
    NaN: one known value, no spread (`ddrf.scenes.streaming.window_channels` writes the spread there as unknown).
    The same array when nothing is saturated."""
    pan_mask, ms_mask = _masks(pan, ms, ceilings)
    if pan_mask is None and ms_mask is None:
        return fused
    fused = fused.copy()
    height, width = fused.shape[-3:-1]
    restored = np.zeros(fused.shape[1:], dtype=bool)
    if pan_mask is not None:
        lms = interp23(ms.astype(np.float64), ratio, border=lms_border)[:height, :width]
        fused[:, pan_mask[:height, :width], :] = lms[pan_mask[:height, :width]]
        restored[pan_mask[:height, :width]] = True
    if ms_mask is not None:
        covered = np.repeat(np.repeat(ms_mask, ratio, axis=0), ratio, axis=1)[:height, :width]
        fused[:, covered] = ceilings[0]
        restored |= covered
    fused[1:, restored] = np.nan
    return fused


def outlier_bounds(radiometry: Radiometry, units: float = OUTLIER_UNITS) -> tuple[np.ndarray, np.ndarray]:
    """The values (PAN: (2,), MS: (2, B): low, high) past which a value is a stray: `units` model units outside the
    scene's range."""
    past = np.array([-units, 1 + units])
    return (radiometry.guide_offset[0] + past * radiometry.guide_scale[0],
            radiometry.ms_offset + past[:, None] * radiometry.ms_scale)


def fill_outliers(pan: np.ndarray, ms: np.ndarray, radiometry: Radiometry,
                  units: float = OUTLIER_UNITS) -> tuple[np.ndarray, np.ndarray]:
    """(PAN (H, W), MS (h, w, B)) with values past `units` model units set to the saturation fill (the middle
    of the scene's range): four stray pixels at 85 units moved every pixel of a scene-statistics model by more than
    a band's std (clipped at 11 units, still 5-14 %); -3.4e38 overflowed float32. The same arrays where none is."""
    ms_fill, pan_fill = saturated_fills(radiometry)
    pan_bounds, ms_bounds = outlier_bounds(radiometry, units)
    return _filled(pan, pan_bounds, pan_fill), _filled(ms, ms_bounds, ms_fill)


def _filled(values: np.ndarray, bounds: np.ndarray, fill: np.ndarray | float) -> np.ndarray:
    outside = (values < bounds[0]) | (values > bounds[1])
    return np.where(outside, fill, values) if outside.any() else values


def network_inputs(pan: np.ndarray, ms: np.ndarray, ceilings: Ceilings,
                   radiometry: Radiometry) -> tuple[np.ndarray, np.ndarray]:
    """(PAN, MS) as the network sees them: saturated pixels and outliers filled."""
    return fill_outliers(*fill_saturated(pan, ms, ceilings, saturated_fills(radiometry)), radiometry)


def restore_outliers(fused: np.ndarray, pan: np.ndarray, ms: np.ndarray, ceilings: Ceilings, radiometry: Radiometry,
                     ratio: int, lms_border: str, units: float = OUTLIER_UNITS) -> np.ndarray:
    """`fused` (samples, H, W, B) DN of the window `pan` (H, W), `ms` (h, w, B) plus the upsampled part of its MS
    that `fill_outliers` kept from the network: the output holds the MS's outliers as the LMS does (interp23 is
    linear). The same array where none is."""
    filled_pan, filled_ms = fill_saturated(pan, ms, ceilings, saturated_fills(radiometry))
    excess = filled_ms - fill_outliers(filled_pan, filled_ms, radiometry, units)[1]
    if not excess.any():
        return fused
    height, width = fused.shape[-3:-1]
    return fused + interp23(excess.astype(np.float64), ratio, border=lms_border)[:height, :width]
