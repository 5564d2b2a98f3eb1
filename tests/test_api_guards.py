"""Guards of the Python API (ddrf.fuse, ddrf.fuse_scene) and of the runtime's `Fuser`: input refused in one line
rather than fused into made-up or stale output."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ddrf
from test_api_progress import sample_arrays

BUNDLED = Path(ddrf.__file__).parent / "assets" / "models"


def test_the_fuser_refuses_non_finite_input_and_zero_steps() -> None:
    """One NaN made all of Fuser.fuse's output NaN, with no error; steps=0 was silently the card's default."""
    from ddrf.runtime.fuser import Fuser

    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        Fuser(BUNDLED / "landsat_ratio2_band_wise", steps=0)
    pan, ms = sample_arrays(32)
    holed = ms.astype(np.float32)
    holed[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="ms has 1 NaN or infinite"):
        Fuser(BUNDLED / "landsat_ratio2_band_wise", unrolled="auto").fuse(pan, holed)
