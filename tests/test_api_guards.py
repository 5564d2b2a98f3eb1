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


def test_fuse_refuses_a_backend_ddrf_run_refuses(tmp_path: Path) -> None:
    """backend="torch" (ddrf-profile's reference only) was taken, then failed with 'sampler_k1.safetensors:
    missing'; the list is ddrf-run's (`ddrf.runtime.backends.BACKENDS`)."""
    pan, ms = sample_arrays(32)
    for backend in ("torch", "onnx"):
        with pytest.raises(ValueError, match=f"backend must be one of ort-cpu, .*got '{backend}'"):
            ddrf.fuse(pan, ms, backend=backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        ddrf.fuse_scene(tmp_path / "scene", tmp_path / "out", backend="torch")
