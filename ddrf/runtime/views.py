"""The eight rotations and flips of a window (the dihedral group), for a geometric self-ensemble.

The models were trained on all eight (ddrf.train.datasets.augment), so each view is an equally valid way to fuse
the same pixels, and their errors differ: the mean of the views back on the scene's grid beats one view (held-out
figures: docs/EVALUATION.md, "Geometric self-ensemble"). A view is taken of the model's own inputs (the LMS after
interp23, the guide, the keyed noise), never of the MS before interpolation: interp23's pixel phase is not symmetric.
"""
from __future__ import annotations

import numpy as np

# (quarter turns, then a left-right flip); ordered so that the first 2 and 4 views are as different as can be
VIEWS = ((0, False), (2, True), (1, False), (3, True), (2, False), (0, True), (3, False), (1, True))


def to_view(array: np.ndarray, view: int) -> np.ndarray:
    """View `view` (0..7; 0 is the identity) of an (..., H, W) array."""
    turns, flip = VIEWS[view % len(VIEWS)]
    out = np.rot90(array, turns, axes=(-2, -1))
    return np.ascontiguousarray(out[..., ::-1] if flip else out)


def from_view(array: np.ndarray, view: int) -> np.ndarray:
    """The inverse of `to_view`: an (..., H, W) output of view `view` back on the window's own grid."""
    turns, flip = VIEWS[view % len(VIEWS)]
    out = array[..., ::-1] if flip else array
    return np.ascontiguousarray(np.rot90(out, -turns, axes=(-2, -1)))


def check_view_count(count: int, option: str) -> None:
    """At most one member per view (ddrf-run --ensemble, ddrf-eval --views --samples): a ninth would be view 0 again,
    weighed twice in the mean. A ValueError naming `option` otherwise."""
    if count > len(VIEWS):
        raise ValueError(f"{option} {count}: a window has {len(VIEWS)} views (its turns and flips); {option} takes at "
                         f"most {len(VIEWS)} views")
