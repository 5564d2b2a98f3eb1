"""Engine mode of a profile point: one TensorRT plan on its own, fed random inputs at its sidecar's shapes."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ddrf.profile.measure import STAGES, Skip, base_result, import_backend, memory_report
from ddrf.profile.spec import PointSpec
from ddrf.profile.stats import DeviceMemorySampler, rss_bytes, summarise


def engine_inputs(backend: Any, batch: int, tile: int | None) -> dict[str, np.ndarray]:
    """Random inputs at the sidecar profile's opt shapes; NCHW inputs resized to batch x tile x tile."""
    rng = np.random.default_rng(0)
    profile = backend.sidecar.profiles[0] if backend.sidecar and backend.sidecar.profiles else {}
    arrays = {}
    for name in backend.input_names:
        shape = list(profile.get(name, {}).get("opt", [batch]))
        if len(shape) == 4:
            shape[0] = batch
            if tile:
                shape[2] = shape[3] = tile
        elif len(shape) == 1:
            shape = [batch]
        arrays[name] = (rng.uniform(0, 999, shape) if name == "t" else rng.standard_normal(shape)).astype(np.float32)
    return arrays


def measure_engine(spec: PointSpec) -> dict[str, Any]:
    if spec.backend != "tensorrt":
        raise Skip(f"{spec.backend}: a .plan file runs only on the tensorrt backend")
    cold: dict[str, float] = {}
    start = time.perf_counter()
    import_backend("tensorrt")
    cold["import"] = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    Path(spec.target).read_bytes()
    cold["load"] = (time.perf_counter() - start) * 1e3
    from ddrf.runtime.tensorrt_backend import TensorRTBackend

    with DeviceMemorySampler(enabled=True) as device_memory:
        start = time.perf_counter()
        backend = TensorRTBackend(spec.target)
        cold["session"] = (time.perf_counter() - start) * 1e3
        rss_loaded = rss_bytes()
        inputs = engine_inputs(backend, spec.batch, spec.tile)
        start = time.perf_counter()
        backend.run(inputs)
        cold["first_run"] = (time.perf_counter() - start) * 1e3
        for _ in range(spec.warmup):
            backend.run(inputs)
        totals = []
        for _ in range(spec.runs):
            start = time.perf_counter()
            backend.run(inputs)
            totals.append((time.perf_counter() - start) * 1e3)
        layers = {Path(spec.target).stem: backend.profile(inputs, min(spec.runs, 10))} if spec.layer_profile else None
    cold["total"] = sum(cold.values())
    stages: dict[str, Any] = {name: None for name in STAGES}
    stages["sample"] = summarise(totals)  # the engine's execution, copies included
    latency: dict[str, Any] = {"total": summarise(totals), "stages": stages, "denoise_steps": [], "denoise_sum": None,
               "unaccounted": summarise([0.0] * len(totals))}
    image = next((a for a in inputs.values() if a.ndim == 4), None)
    tile = int(image.shape[2]) if image is not None else spec.tile
    result = base_result(spec, tile, spec.steps, "tensorrt", "cuda", cold, latency, layers)
    result["input"] = {"source": "synthetic", "scene": None, "windows": [],
                       "note": "engine mode: random inputs at the sidecar profile's shapes; one engine execution"}
    result["memory"] = memory_report(rss_loaded, device_memory.result())
    return result
