"""Summary statistics of repeated timings and the process's memory high-water marks. numpy + psutil only."""
from __future__ import annotations

import re
import resource
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

STAT_KEYS = ("n", "min", "mean", "median", "p90", "p95", "p99", "max", "std", "cv")


def summarise(samples_ms: Sequence[float]) -> dict[str, float]:
    """min/mean/median/p90/p95/p99/max, standard deviation (ddof=1) and coefficient of variation (std / mean).

    Percentiles interpolate linearly between order statistics (numpy's default), so with few runs p99 lies
    between the two largest samples; the ordering min <= median <= p90 <= p95 <= p99 <= max always holds.
    """
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples to summarise")
    p50, p90, p95, p99 = np.percentile(x, [50, 90, 95, 99])
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    mean = float(x.mean())
    return {"n": int(x.size), "min": float(x.min()), "mean": mean, "median": float(p50), "p90": float(p90),
            "p95": float(p95), "p99": float(p99), "max": float(x.max()), "std": std,
            "cv": std / mean if mean > 0 else 0.0}


def peak_rss_bytes() -> int:
    """This process's peak resident set size: the kernel's high-water mark, so no sample can miss a peak.

    Linux: VmHWM of /proc/self/status, which belongs to this program's address space. getrusage's ru_maxrss is
    NOT used there: it survives fork + exec, so a worker would report its parent's peak when that was larger.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    found = [int(v) * 1024 for v in re.findall(r"^Vm(?:HWM|RSS):\s+(\d+)\s+kB", status, re.M)]
    if found:
        return max(found)  # VmHWM is updated lazily, so the current RSS can be above it
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def device_memory_used(device: int = 0) -> int | None:
    """Bytes in use on the whole CUDA device (total - free, all processes); None without a device."""
    from ddrf.engines import probe

    if probe.cuda_device_count() <= device:
        return None
    rt = probe.cudart()
    try:
        err, free, total = rt.cudaMemGetInfo()  # type: ignore[union-attr]
    except Exception:
        return None
    return int(total - free) if err == rt.cudaError_t.cudaSuccess else None  # type: ignore[union-attr]


class DeviceMemorySampler:
    """Samples device memory in a thread every `interval` s; `peak` is the largest value seen (None: no device).

    cudaMemGetInfo counts every process on the device, so the figure reported is peak minus the value before
    the model was loaded.
    """

    def __init__(self, interval: float = 0.005, device: int = 0, enabled: bool = True) -> None:
        self.interval, self.device = interval, device
        self.baseline = device_memory_used(device) if enabled else None
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "DeviceMemorySampler":
        if self.baseline is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            used = device_memory_used(self.device)
            if used is not None and (self.peak is None or used > self.peak):
                self.peak = used

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def result(self) -> dict[str, Any] | None:
        if self.baseline is None or self.peak is None:
            return None
        return {"baseline_bytes": self.baseline, "peak_bytes": self.peak, "peak_delta_bytes": self.peak - self.baseline}
