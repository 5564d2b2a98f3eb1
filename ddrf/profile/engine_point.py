"""Engine mode of a profile point: one TensorRT plan on its own, fed random inputs at its sidecar's shapes."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ddrf.model_dir import SCENE_IO
from ddrf.profile.measure import STAGES, Skip, base_result, import_backend, memory_report
from ddrf.profile.spec import PointSpec
from ddrf.profile.stats import DeviceMemorySampler, rss_bytes, summarise


def engine_inputs(backend: Any, batch: int, tile: int | None) -> dict[str, np.ndarray]:
    """Random inputs at the sidecar profile's opt shapes. Window inputs (NCHW) take `batch`, and `tile` for the
    largest of them with the others scaled alike (a denoiser's conditions at 1/2, 1/4 of the tile, as the build's
    profile made them); the scene pass's records (SCENE_IO) are one per scene and keep their shapes."""
    rng = np.random.default_rng(0)
    profile = backend.sidecar.profiles[0] if backend.sidecar and backend.sidecar.profiles else {}
    shapes = {name: list(profile.get(name, {}).get("opt", [batch])) for name in backend.input_names}
    windows = {name for name, shape in shapes.items() if len(shape) == 4 and name not in SCENE_IO}
    side = max((shapes[name][2] for name in windows), default=0)
    arrays = {}
    for name, shape in shapes.items():
        if name in windows:
            shape[0] = batch
            if tile and side:
                shape[2], shape[3] = (max(tile * d // side, 1) for d in shape[2:])
        elif len(shape) == 1 and name not in SCENE_IO:
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
    tile = max((int(a.shape[2]) for n, a in inputs.items() if a.ndim == 4 and n not in SCENE_IO), default=spec.tile)
    result = base_result(spec, tile, spec.steps, "tensorrt", "cuda", cold, latency, layers)
    result["input"] = {"source": "synthetic", "scene": None, "windows": [],
                       "note": "engine mode: random inputs at the sidecar profile's shapes; one engine execution"}
    result["memory"] = memory_report(rss_loaded, device_memory.result())
    return result
