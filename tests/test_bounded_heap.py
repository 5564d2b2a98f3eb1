"""ddrf-run fixes glibc's mmap threshold (ddrf.cli.bounded_heap): a block over 128 KiB is mapped, and unmapped when
freed, even after larger blocks were freed (which, with glibc's dynamic threshold, sends such blocks to the heap)."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
import numpy as np
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "bounded":
    from ddrf.cli import bounded_heap
    bounded_heap()
big = np.ones(8 * 2**20, np.uint8)
del big  # freeing a mapped 8 MiB block: glibc's dynamic rule raises the threshold to 8 MiB
before = libc.mallinfo2().hblks
block = np.ones(512 * 1024, np.uint8)
print(libc.mallinfo2().hblks - before)  # 1: the 512 KiB block was mapped; 0: it came from the heap
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_with_mallinfo2(), reason="glibc >= 2.33 only")
@pytest.mark.parametrize("mode,mapped", [("dynamic", "0"), ("bounded", "1")])
def test_window_sized_blocks_stay_mapped(mode: str, mapped: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.strip() == mapped, run.stderr


SCENE_PASS = r"""
import sys
import numpy as np
from ddrf.cli import bounded_heap
from ddrf.runtime.backends import OrtBackend
bounded_heap()
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
backend = OrtBackend(sys.argv[1], once=sys.argv[2] == "once")
rng = np.random.default_rng(0)
feed = {"lms": rng.uniform(0.1, 0.6, (4, 4, 128, 128)), "pan": rng.uniform(0.1, 0.6, (4, 1, 128, 128)),
        "noise": rng.standard_normal((4, 4, 128, 128))}
before = rss_mib()
for _ in range(2):
    backend.run(feed)
print(rss_mib() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_once_per_scene_pass_gives_its_memory_back_after_each_run() -> None:
    """The scene pass keeps ONNX Runtime's arena while it runs (a fresh mmap per tensor was 2.5x slower under the
    fixed threshold) and shrinks it after: its blocks do not stay reserved while the windows run, as a per-window
    graph's arena does (the bundled ratio-2 model's pass over four 128 x 128 windows: about 80 MiB)."""
    from ddrf.assets import BUNDLED_MODELS

    graph = str(BUNDLED_MODELS / "landsat_ratio2" / "scene_k1.onnx")
    grown = {mode: float(subprocess.run([sys.executable, "-c", SCENE_PASS, graph, mode], capture_output=True,
                                        text=True, check=True).stdout) for mode in ("once", "per-window")}
    assert grown["once"] < 25 < 50 < grown["per-window"], grown
