"""DDRF Edge: diffusion-based PAN/MS and hyperspectral fusion, from PyTorch training to a torch-free runtime.

`ddrf.fuse(pan, ms)` and `ddrf.fuse_scene(path, out)` are the Python API (ddrf/api.py).
"""
from typing import Any

from ddrf.version import __version__

__all__ = ["fuse", "fuse_scene", "__version__"]


def __getattr__(name: str) -> Any:
    """The API is imported on first use, so `import ddrf` stays cheap for the command-line tools."""
    if name in ("fuse", "fuse_scene"):
        from ddrf import api

        return getattr(api, name)
    raise AttributeError(f"module 'ddrf' has no attribute {name!r}")
