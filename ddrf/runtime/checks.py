"""What the array entry points take (`ddrf.fuse`, `Fuser.fuse`): real, finite values of a workable size, and options
as ddrf-run's allow. One home for both, each refusal one line naming the argument."""
from __future__ import annotations

from typing import Any

import numpy as np

from ddrf.runtime.backends import BACKENDS
from ddrf.runtime.noise import MAX_SEED

# the largest magnitude the float32 arithmetic of the fusion carries without overflow (squares, sums of a window)
MAX_VALUE = 1e30


def check_values(name: str, values: np.ndarray) -> None:
    """Real, finite numbers of a workable size: anything else gave an output of NaN or inf (one NaN made all of it
    NaN) or lost a part silently (complex)."""
    if values.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers (integers or floats), got dtype {values.dtype}")
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(f"{name} has {int((~finite).sum())} NaN or infinite value(s): fill them first, or fuse the "
                         f"raster with ddrf.fuse_scene, which treats them as no data")
    if values.size and float(np.abs(values).max()) > MAX_VALUE:
        raise ValueError(f"{name} holds values beyond +-{MAX_VALUE:g} (largest {float(np.abs(values).max()):g}): "
                         f"scale them first")


def check_count(name: str, value: Any) -> None:
    """An optional count (steps, threads): None or an integer >= 1 (0 had meant the default, silently)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")


def check_options(seed: Any, steps: Any, threads: Any, backend: str = "ort-cpu") -> None:
    """As ddrf-run's options allow (`MAX_SEED`: outside it a seed wrapped around; its `BACKENDS`: "torch", the
    profiler's reference, failed on a missing graph file)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    check_count("steps", steps)
    check_count("threads", threads)
