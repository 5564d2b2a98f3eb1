"""Times one sweep point in this process; run as `python -m ddrf.profile.worker point SPEC.json OUT.json`.

The parent (ddrf-profile, the benchmarks) starts one of these per configuration, because timing two engines in one
process distorted the second (docs/design: method.md section 4). The result is written as JSON to OUT.json; a point
that cannot run here (backend missing, no checkpoint for torch, no unrolled graph) is a "skipped" result, not a
crash. Only the torch backend imports torch.

What one warm "tile fusion" is (a batch of `batch` windows; every stage timed back to back with perf_counter):
  read         Scene.read_pair of each window from the GeoTIFF scene (the bundled sample scene by default;
               windows past its edge are filled by reflection, as in ddrf-run); GDAL's block cache is warm
  preprocess   interp23 of the MS + normalisation + coordinate-keyed noise + padding, per window; batch stacking
  encode       the condition encoder (cached sampler only)
  denoise[i]   step i: one denoiser call + the DDIM update (+ the residual add after the last step; uncached:
               encoder + denoiser, a full forward)
  sample       the unrolled one-graph sampler (unrolled only)
  postprocess  crop, denormalisation to digital numbers
  write        quantise to the scene's dtype and write each window as a tiled, deflate GeoTIFF in a temp folder
`total` is timed around the whole function, so the stages sum to slightly less than it (the rest: Python overhead).
Radiometric statistics are computed once per scene, outside the timed loop, as ddrf-run does.
The stages are the Fuser's own methods and ddrf.sampling's loop, so what is timed is what ddrf-run runs; the torch
backend runs the same loop over the checkpoint's encode/denoise.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ddrf.card import ModelCard, unweighted_border
from ddrf.model_dir import MissingGraph, ModelDir
from ddrf.profile.environment import load_average
from ddrf.profile.measure import (Laps, Skip, base_result, import_backend, latency_report, memory_report, timed)
from ddrf.profile.spec import PointSpec, is_engine
from ddrf.profile.stats import DeviceMemorySampler, rss_bytes
from ddrf.profile.tiles import TileSource
from ddrf.runtime.backends import BackendUnavailable, backend_info
from ddrf.runtime.fuser import Fuser, InputPreparation
from ddrf.sampling import StageCallback, by_graph_bands, sample
from ddrf.schedule import CosineSchedule, SamplerPlan, make_plan
from ddrf.scenes.tiling import round_up, window_alignment


class PointModel(Protocol):
    """What a point times: the Fuser (runtime backends) or the torch checkpoint, both through ddrf.sampling."""

    @property
    def name(self) -> str: ...

    def fuse_normalised(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray, seed: int = 0,
                        cache_condition: bool = True, on_stage: StageCallback | None = None,
                        context: dict[str, np.ndarray] | None = None, border: int = 0) -> np.ndarray: ...


class TorchModel:
    """PyTorch eager on the checkpoint the graphs were exported from (CPU; threads as asked)."""

    name = "torch"

    def __init__(self, spec: PointSpec, card: ModelCard, plan: SamplerPlan) -> None:
        if spec.sampler == "unrolled":
            raise Skip("torch: there is no unrolled graph in eager mode (use --sampler cached)")
        if not spec.checkpoint:
            raise Skip("torch: only ONNX graphs here; pass --checkpoint RUN_DIR (model.safetensors) to time "
                       "PyTorch eager on the same weights")
        try:
            import torch
        except ImportError as exc:
            raise Skip("torch: PyTorch is not installed") from exc
        from ddrf.train.checkpoint import load_checkpoint

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.torch, self.card, self.plan = torch, card, plan
        self.model, loaded = load_checkpoint(spec.checkpoint)
        if loaded.model != card.model:
            raise ValueError(f"{spec.checkpoint}: the checkpoint's network configuration differs from the model "
                             "card's; it is not the model the graphs were exported from")

    def encode(self, lms: Any, pan: Any) -> Any:
        return self.model.encode(lms, pan)

    def denoise(self, x: Any, t: Any, cond: Any) -> Any:
        return self.model.denoise(x, t, *cond)

    def fuse_normalised(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray, seed: int = 0,
                        cache_condition: bool = True, on_stage: StageCallback | None = None,
                        context: dict[str, np.ndarray] | None = None, border: int = 0) -> np.ndarray:
        """`context` is not replayed: the torch reference times the network with window statistics (the same
        arithmetic as replaying a scene's), and computes the window's `border` too (window statistics span it)."""
        def run(lms: Any, pan: Any, noise: Any) -> Any:
            return sample(self.encode, self.denoise, self.plan, self.card.target, lms, pan, noise, self.card.residual,
                          cache_condition=cache_condition, on_stage=on_stage)

        tensor = self.torch.from_numpy
        with self.torch.inference_mode():  # a band-wise model once per band, as the Fuser runs its graphs
            fused = by_graph_bands(run, tensor(lms), tensor(pan), tensor(noise), self.card.graph_bands)
        return np.asarray(fused.numpy(), dtype=np.float32)


def open_fuser(spec: PointSpec, steps: int) -> Fuser:
    if ModelDir.open(spec.target).card.scene_statistics and spec.sampler != "unrolled":
        raise Skip("a model with scene statistics runs through its unrolled sampler only (--sampler unrolled)")
    try:
        fuser = Fuser(spec.target, spec.backend, steps, spec.precision, spec.sampler == "unrolled", spec.threads)
    except BackendUnavailable as exc:
        raise Skip(str(exc)) from exc
    except MissingGraph as exc:  # a graph or plan this point needs was not exported/built
        raise Skip(" ".join(str(exc).split())) from exc
    return fuser


def tensorrt_layers(fuser: Fuser, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray,
                    runs: int, context: dict[str, np.ndarray] | None = None) -> dict[str, Any] | None:
    """Per-layer times of each TensorRT engine (trtexec --exportProfile layout); None for ONNX Runtime."""
    if fuser.backend_kind != "tensorrt":
        return None
    engines: Any = fuser  # TensorRTBackend sessions here, which have profile()
    if fuser.unrolled:
        return {"sampler": engines.sampler.profile({"lms": lms, "pan": pan, "noise": noise, **(context or {})}, runs)}
    t = np.full((lms.shape[0],), float(fuser.plan.timesteps[0]), dtype=np.float32)
    return {"encoder": engines.encoder.profile({"lms": lms, "pan": pan}, runs),
            "denoiser": engines.denoiser.profile({"x_t": noise, "t": t, **fuser.encode(lms, pan)}, runs)}


def window_border(prep: InputPreparation, spec: PointSpec) -> int:
    """The border ddrf-run's blend leaves unweighted in each window at this halo (TileGrid.unweighted_border): a
    halo below the model's makes the graph widen every window (ddrf.runtime.Fuser.widening), work timed here too."""
    halo = prep.card.halo if spec.halo is None else spec.halo
    return unweighted_border(round_up(halo, window_alignment(prep.card.ratio, prep.multiple)))


# --- one tile fusion, stage by stage -------------------------------------------------------------------------------
def fuse_once(model: PointModel, prep: InputPreparation, source: TileSource, spec: PointSpec,
              context: dict[str, np.ndarray] | None = None) -> Laps:
    """One timed fusion; `context`: a scene-statistics model's scene pass, run once per scene as ddrf-run does."""
    laps = Laps()
    pairs = source.read()
    if source.scene is not None:
        laps.lap("read")
    lms, pan, noise = prep.prepare_batch(pairs, source.radiometry, spec.seed, source.origins)
    laps.lap("preprocess")
    fused = model.fuse_normalised(lms, pan, noise, spec.seed, spec.sampler != "uncached", laps.mark, context,
                                  window_border(prep, spec))
    out = prep.to_digital_numbers(fused, pairs, source.radiometry)
    laps.lap("postprocess")
    source.write(out)
    laps.lap("write")
    return laps


def measure_model(spec: PointSpec) -> dict[str, Any]:
    """Cold start, then warm tile fusions of a model directory on one backend."""
    cold: dict[str, float] = {}
    start = time.perf_counter()
    import_backend(spec.backend)
    cold["import"] = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    files = ModelDir.open(spec.target)
    steps = spec.steps or files.card.sampling_steps
    for path in graph_paths(files, spec, steps):
        path.read_bytes()  # disk -> page cache: what "load" costs before the backend parses anything
    cold["load"] = (time.perf_counter() - start) * 1e3

    prep = InputPreparation(files.card)  # the Fuser's own pre-processing, also for the torch model
    align = window_alignment(files.card.ratio, prep.multiple)
    tile = round_up(spec.tile, align)
    plan = make_plan(CosineSchedule.from_dict(files.card.schedule), steps, 0.0)
    with DeviceMemorySampler(enabled=backend_info(spec.backend).device == "cuda") as device_memory:
        start = time.perf_counter()
        model: PointModel = TorchModel(spec, files.card, plan) if spec.backend == "torch" else open_fuser(spec, steps)
        cold["session"] = (time.perf_counter() - start) * 1e3
        rss_loaded = rss_bytes()
        with tempfile.TemporaryDirectory(prefix="ddrf-profile-") as tmp:
            source = TileSource(prep, spec, tile, Path(tmp))
            context = None
            if isinstance(model, Fuser) and files.card.scene_statistics:  # once per scene, not timed per window
                context = model.scene_context(*prep.prepare_batch(source.read(), source.radiometry, spec.seed,
                                                                  source.origins))
            first, _ = timed(lambda: fuse_once(model, prep, source, spec, context))
            cold["first_run"] = first
            for _ in range(spec.warmup):
                fuse_once(model, prep, source, spec, context)
            measured = [timed(lambda: fuse_once(model, prep, source, spec, context)) for _ in range(spec.runs)]
            layers = None
            if spec.layer_profile and isinstance(model, Fuser):
                inputs = prep.prepare_batch(source.read(), source.radiometry, spec.seed, source.origins)
                layers = tensorrt_layers(model, *inputs, runs=min(spec.runs, 10), context=context)
    cold["total"] = cold["import"] + cold["load"] + cold["session"] + cold["first_run"]
    totals = [t for t, _ in measured]
    latency = latency_report(totals, [laps for _, laps in measured], steps, spec.sampler)
    device = backend_info(spec.backend).device
    result = base_result(spec, tile, steps, model.name, device, cold, latency, layers)
    result["timesteps"] = [int(t) for t in plan.timesteps]
    result["load_average"] = load_average()
    result["input"] = {"source": "scene" if source.scene is not None else "synthetic",
                       "scene": str(source.scene.files.pan.parent) if source.scene is not None else None,
                       "windows": [[r, c, tile, tile] for r, c in source.origins], "note": source.note}
    result["memory"] = memory_report(rss_loaded, device_memory.result())
    return result


def graph_paths(files: ModelDir, spec: PointSpec, steps: int) -> list[Path]:
    if spec.backend == "torch":
        return [Path(spec.checkpoint) / "model.safetensors" if Path(spec.checkpoint).is_dir()
                else Path(spec.checkpoint)] if spec.checkpoint else []
    suffix = backend_info(spec.backend).file_suffix
    stages = ([("sampler", steps), ("scene", steps)] if spec.sampler == "unrolled"
              else [("encoder", None), ("denoiser", None)])
    paths = [files.path(stage, spec.precision, k, suffix) for stage, k in stages]
    return [p for p in paths if p.is_file()]


def not_run(spec: PointSpec, status: str, reason: str) -> dict[str, Any]:
    return {**spec.key(), "status": status, "reason": reason}


def measure(spec: PointSpec) -> dict[str, Any]:
    from ddrf.profile.engine_point import measure_engine

    try:
        return measure_engine(spec) if is_engine(spec.target) else measure_model(spec)
    except Skip as exc:
        return not_run(spec, "skipped", str(exc))
    except Exception as exc:  # one line for the table; the traceback goes to stderr for the parent's log
        traceback.print_exc()
        return not_run(spec, "failed", f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500])


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("point", "scene"):
        print("usage: python -m ddrf.profile.worker point|scene SPEC.json OUT.json", file=sys.stderr)
        return 2
    mode, spec_path, out_path = argv
    if mode == "point":
        result = measure(PointSpec.read(spec_path))
    else:
        from ddrf.profile.scene_run import measure_scene

        result = measure_scene(json.loads(Path(spec_path).read_text()))
    Path(out_path).write_text(json.dumps(result, default=_jsonable))
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
