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
