"""What every profile point shares: stage laps, the backend import (part of a cold start), the result layout."""
from __future__ import annotations

import time
from typing import Any, Callable

from ddrf.profile.spec import PointSpec
from ddrf.profile.stats import peak_rss_bytes, rss_bytes, summarise

STAGES = ("read", "preprocess", "encode", "sample", "postprocess", "write")


class Skip(Exception):
    """This point cannot run on this machine; the message says why."""


class Laps:
    """Contiguous stage timings within one iteration (ms)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.steps: list[float] = []
        self._t = time.perf_counter()

    def _elapsed(self) -> float:
        now = time.perf_counter()
        ms, self._t = (now - self._t) * 1e3, now
        return ms

    def lap(self, name: str) -> None:
        self.times[name] = self.times.get(name, 0.0) + self._elapsed()

    def step(self) -> None:
        self.steps.append(self._elapsed())

    def mark(self, stage: str) -> None:
        """ddrf.sampling's stage callback: "step" is one denoiser step, anything else a named stage."""
        if stage == "step":
            self.step()
        else:
            self.lap(stage)


def import_backend(backend: str) -> None:
    """Import the backend's library (its one-off import cost is part of a cold start)."""
    if backend == "torch":
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise Skip("torch: PyTorch is not installed") from exc
    elif backend == "tensorrt":
        from ddrf.engines.probe import EngineUnavailable, load_tensorrt

        try:
            load_tensorrt()
        except EngineUnavailable as exc:
            raise Skip(f"tensorrt: {exc}") from exc
    else:
        import onnxruntime  # noqa: F401


def timed(fn: Callable[[], Laps]) -> tuple[float, Laps]:
    start = time.perf_counter()
    laps = fn()
    return (time.perf_counter() - start) * 1e3, laps


def latency_report(totals: list[float], all_laps: list[Laps], steps: int, sampler: str) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    for name in STAGES:
        values = [laps.times[name] for laps in all_laps if name in laps.times]
        stages[name] = summarise(values) if values else None
    per_step = [summarise([laps.steps[i] for laps in all_laps]) for i in range(steps)] if sampler != "unrolled" else []
    unaccounted = [t - sum(l.times.values()) - sum(l.steps) for t, l in zip(totals, all_laps)]
    return {"total": summarise(totals), "stages": stages, "denoise_steps": per_step,
            "denoise_sum": summarise([sum(l.steps) for l in all_laps]) if per_step else None,
            "unaccounted": summarise(unaccounted)}


def base_result(spec: PointSpec, tile: int, steps: int | None, provider: str, device: str,
                cold: dict[str, float], latency: dict[str, Any], layers: dict[str, Any] | None) -> dict[str, Any]:
    mean_s = latency["total"]["mean"] / 1e3
    return {**spec.key(), "tile": tile, "steps": steps, "status": "ok", "reason": None, "provider": provider,
            "device": device, "runs": spec.runs, "warmup": spec.warmup, "threads": spec.threads,
            "cold_start_ms": cold, "latency_ms": latency,
            "throughput": {"tiles_per_s": spec.batch / mean_s,
                           "megapixels_per_s": spec.batch * tile * tile / 1e6 / mean_s},
            "layer_profile": layers}


def memory_report(rss_loaded: int, device: dict[str, Any] | None) -> dict[str, Any]:
    return {"peak_rss_bytes": peak_rss_bytes(), "rss_after_load_bytes": rss_loaded, "rss_end_bytes": rss_bytes(),
            "device": device}
