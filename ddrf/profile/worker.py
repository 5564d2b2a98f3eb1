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
  denoise[i]   step i: one denoiser call + the DDIM update (uncached: encoder + denoiser, a full forward)
  sample       the unrolled one-graph sampler (unrolled only)
  postprocess  residual add, crop, denormalisation to digital numbers
  write        quantise to the scene's dtype and write each window as a tiled, deflate GeoTIFF in a temp folder
`total` is timed around the whole function, so the stages sum to slightly less than it (the rest: Python overhead).
Radiometric statistics are computed once per scene, outside the timed loop, as ddrf-run does.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ddrf.model_dir import ModelDir
from ddrf.profile.environment import load_average
from ddrf.profile.spec import PointSpec, is_engine
from ddrf.profile.stats import DeviceMemorySampler, peak_rss_bytes, rss_bytes, summarise

STAGES = ("read", "preprocess", "encode", "sample", "postprocess", "write")


class Skip(Exception):
    """This point cannot run on this machine; the message says why."""


def sample_scene_dir() -> Path:
    import ddrf

    return Path(ddrf.__file__).parent / "assets" / "sample_scene" / "LC80200392015216LGN00"


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


# --- the model under test: stage functions over numpy arrays ----------------------------------------------------
class Stages:
    """encode / denoise / unrolled over numpy; `name` is what actually runs (provider after any fallback)."""

    name: str = ""
    device: str = "cpu"

    def encode(self, lms: np.ndarray, pan: np.ndarray) -> Any:
        raise NotImplementedError

    def denoise(self, x: np.ndarray, t: np.ndarray, cond: Any) -> np.ndarray:
        raise NotImplementedError

    def unrolled(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name}: no unrolled sampler")

    def layer_profile(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray, runs: int) -> dict[str, Any] | None:
        return None


class RuntimeStages(Stages):
    """The runtime's own backends (ONNX Runtime providers or native TensorRT plans) through ddrf.runtime.Fuser."""

    def __init__(self, spec: PointSpec, steps: int) -> None:
        from ddrf.model_dir import MissingGraph
        from ddrf.runtime.backends import BackendUnavailable
        from ddrf.runtime.fuser import Fuser

        try:
            self.fuser = Fuser(spec.target, spec.backend, steps, spec.precision, spec.sampler == "unrolled",
                               spec.threads)
        except BackendUnavailable as exc:
            raise Skip(str(exc)) from exc
        except MissingGraph as exc:  # a graph or plan this point needs was not exported/built
            raise Skip(" ".join(str(exc).split())) from exc
        first = self.fuser.sampler if spec.sampler == "unrolled" else self.fuser.denoiser
        self.name = first.name
        self.device = "cpu" if spec.backend == "ort-cpu" else "cuda"

    def encode(self, lms: np.ndarray, pan: np.ndarray) -> Any:
        return self.fuser.encoder.run({"lms": lms, "pan": pan})

    def denoise(self, x: np.ndarray, t: np.ndarray, cond: Any) -> np.ndarray:
        return self.fuser.denoiser.run({"x_t": x, "t": t, **cond})["prediction"]

    def unrolled(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self.fuser.sampler.run({"lms": lms, "pan": pan, "noise": noise})["fused"]

    def layer_profile(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray, runs: int) -> dict[str, Any] | None:
        """Per-layer times of each TensorRT engine (trtexec --exportProfile layout); None for ONNX Runtime."""
        if self.fuser.backend_kind != "tensorrt":
            return None
        fuser: Any = self.fuser  # TensorRTBackend objects here, which have profile()
        if fuser.unrolled:
            return {"sampler": fuser.sampler.profile({"lms": lms, "pan": pan, "noise": noise}, runs)}
        cond = self.encode(lms, pan)
        t = np.full((lms.shape[0],), float(fuser.plan.timesteps[0]), dtype=np.float32)
        return {"encoder": fuser.encoder.profile({"lms": lms, "pan": pan}, runs),
                "denoiser": fuser.denoiser.profile({"x_t": noise, "t": t, **cond}, runs)}


class TorchStages(Stages):
    """PyTorch eager on the checkpoint the graphs were exported from (CPU; threads as asked)."""

    name, device = "torch", "cpu"

    def __init__(self, spec: PointSpec, card_model: dict[str, Any]) -> None:
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
        self.torch = torch
        self.model, card = load_checkpoint(spec.checkpoint)
        if card.model != card_model:
            raise ValueError(f"{spec.checkpoint}: the checkpoint's network configuration differs from the model "
                             "card's; it is not the model the graphs were exported from")

    def encode(self, lms: np.ndarray, pan: np.ndarray) -> Any:
        with self.torch.inference_mode():
            return self.model.encode(self.torch.from_numpy(lms), self.torch.from_numpy(pan))

    def denoise(self, x: np.ndarray, t: np.ndarray, cond: Any) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model.denoise(self.torch.from_numpy(x), self.torch.from_numpy(t), *cond)
        return np.asarray(out.numpy(), dtype=np.float32)


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


# --- inputs: windows of a real GeoTIFF scene, or synthetic arrays when the model does not fit it ------------------
class TileSource:
    """Reads the point's windows and writes fused windows; `scene` is None (synthetic tiles) when no scene fits."""

    def __init__(self, helper: Any, spec: PointSpec, tile: int, out_dir: Path) -> None:
        self.helper, self.tile, self.batch, self.out_dir = helper, tile, spec.batch, out_dir
        self.origins = [(0, k * tile) for k in range(spec.batch)]
        self.note: str | None = None
        self.scene = self._open_scene(spec)
        if self.scene is not None:
            from ddrf.radiometry import scene_radiometry

            pan, pan_valid, ms, ms_valid = self.scene.preview()
            self.radiometry = scene_radiometry(helper.card.normalisation, ms, pan[..., None], ms_valid, pan_valid)
            self.crs, self.transform, self.dtype = self.scene.crs, self.scene.transform, np.dtype(self.scene.dtype)
            self.bits = self.scene.bits
        else:
            self._synthetic(helper)

    def _open_scene(self, spec: PointSpec) -> Any:
        from ddrf.scenes.scene import Scene

        directory = Path(spec.scene) if spec.scene else sample_scene_dir()
        try:
            scene = Scene.from_directory(directory, list(self.helper.card.bands))
        except (ValueError, OSError) as exc:
            self.note = f"read not timed: {' '.join(str(exc).split())}; synthetic tiles used"
            return None
        if int(scene.ratio) != int(self.helper.card.ratio):
            self.note = (f"read not timed: {directory.name} has ratio {scene.ratio}, the model {self.helper.card.ratio}"
                         "; synthetic tiles used")
            return None
        return scene

    def _synthetic(self, helper: Any) -> None:
        from affine import Affine

        rng = np.random.default_rng(0)
        ratio, bands, guides = helper.card.ratio, len(helper.card.bands), len(helper.card.guide_bands)
        side = self.tile - self.tile % ratio
        self.arrays = [(rng.uniform(100, 4000, (side, side) if guides == 1 else (side, side, guides)),
                        rng.uniform(100, 4000, (side // ratio, side // ratio, bands))) for _ in self.origins]
        self.radiometry = helper.radiometry(*self.arrays[0])
        self.crs, self.transform, self.dtype, self.bits = None, Affine(1, 0, 0, 0, -1, 0), np.dtype("uint16"), 16

    def read(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.scene is None:
            return self.arrays
        return [self.scene.read_pair(r, c, self.tile, self.tile)[:2] for r, c in self.origins]

    def write(self, fused: list[np.ndarray]) -> None:
        import rasterio

        from ddrf.scenes.writer import geotiff_profile, quantise

        for k, values in enumerate(fused):
            valid = np.ones(values.shape[:2], dtype=bool)
            out = quantise(values, valid, self.dtype, self.bits, None)
            profile = geotiff_profile(out.shape[0], out.shape[1], out.shape[2], self.dtype, self.crs,
                                      self.transform, None)
            profile.update(blockxsize=min(512, _block(out.shape[1])), blockysize=min(512, _block(out.shape[0])))
            with rasterio.open(self.out_dir / f"tile_{k}.tif", "w", **profile) as dst:
                dst.write(np.moveaxis(out, -1, 0))


def _block(n: int) -> int:
    """GeoTIFF tiles are multiples of 16."""
    return max(16, n - n % 16)


# --- one tile fusion, stage by stage -------------------------------------------------------------------------------
def fuse_once(stages: Stages, helper: Any, source: TileSource, spec: PointSpec, plan: Any) -> Laps:
    from ddrf.schedule import ddim_step

    laps = Laps()
    pairs = source.read() if source.scene is not None else source.arrays
    if source.scene is not None:
        laps.lap("read")
    prepared = [helper.prepare(pan, ms, source.radiometry, spec.seed, origin)
                for (pan, ms), origin in zip(pairs, source.origins)]
    lms, pan, noise = (np.stack(parts) for parts in zip(*prepared))
    laps.lap("preprocess")
    if spec.sampler == "unrolled":
        fused = stages.unrolled(lms, pan, noise)
        laps.lap("sample")
    else:
        cond = stages.encode(lms, pan) if spec.sampler == "cached" else None
        if cond is not None:
            laps.lap("encode")
        x = noise
        for i, t in enumerate(plan.timesteps):
            step_cond = cond if cond is not None else stages.encode(lms, pan)
            prediction = stages.denoise(x, np.full((x.shape[0],), float(t), dtype=np.float32), step_cond)
            x = ddim_step(plan, i, x, prediction, helper.card.target, None).astype(np.float32)
            laps.step()
        fused = x + lms if helper.card.residual else x
    out = [source.radiometry.ms_from_model(np.moveaxis(f[:, :p.shape[0], :p.shape[1]], 0, -1))
           for f, (p, _) in zip(fused, pairs)]
    laps.lap("postprocess")
    source.write(out)
    laps.lap("write")
    return laps


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


def measure_model(spec: PointSpec) -> dict[str, Any]:
    """Cold start, then warm tile fusions of a model directory on one backend."""
    from ddrf.runtime.backends import GPU_BACKENDS
    from ddrf.runtime.fuser import InputPreparation
    from ddrf.schedule import CosineSchedule, make_plan
    from ddrf.scenes.tiling import window_alignment

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

    helper = InputPreparation(files.card)  # the Fuser's pre-processing without opening any backend
    align = window_alignment(int(helper.card.ratio), helper.multiple)
    tile = -(-spec.tile // align) * align
    with DeviceMemorySampler(enabled=spec.backend in GPU_BACKENDS) as device_memory:
        start = time.perf_counter()
        stages = TorchStages(spec, files.card.model) if spec.backend == "torch" else RuntimeStages(spec, steps)
        cold["session"] = (time.perf_counter() - start) * 1e3
        rss_loaded = rss_bytes()
        plan = make_plan(CosineSchedule.from_dict(files.card.schedule), steps, 0.0)
        with tempfile.TemporaryDirectory(prefix="ddrf-profile-") as tmp:
            source = TileSource(helper, spec, tile, Path(tmp))
            first, _ = timed(lambda: fuse_once(stages, helper, source, spec, plan))
            cold["first_run"] = first
            for _ in range(spec.warmup):
                fuse_once(stages, helper, source, spec, plan)
            measured = [timed(lambda: fuse_once(stages, helper, source, spec, plan)) for _ in range(spec.runs)]
            layers = stages.layer_profile(*_probe_inputs(helper, source, spec), runs=min(spec.runs, 10)) \
                if spec.layer_profile else None
    cold["total"] = cold["import"] + cold["load"] + cold["session"] + cold["first_run"]
    totals = [t for t, _ in measured]
    latency = latency_report(totals, [laps for _, laps in measured], steps, spec.sampler)
    result = base_result(spec, tile, steps, stages.name, stages.device, cold, latency, layers)
    result["timesteps"] = [int(t) for t in plan.timesteps]
    result["load_average"] = load_average()
    result["input"] = {"source": "scene" if source.scene is not None else "synthetic",
                       "scene": str(source.scene.files.pan.parent) if source.scene is not None else None,
                       "windows": [[r, c, tile, tile] for r, c in source.origins], "note": source.note}
    result["memory"] = memory_report(rss_loaded, device_memory.result())
    return result


def _probe_inputs(helper: Any, source: TileSource, spec: PointSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pairs = source.read()
    prepared = [helper.prepare(pan, ms, source.radiometry, spec.seed, o) for (pan, ms), o in zip(pairs, source.origins)]
    lms, pan, noise = (np.stack(parts) for parts in zip(*prepared))
    return lms, pan, noise


def graph_paths(files: ModelDir, spec: PointSpec, steps: int) -> list[Path]:
    if spec.backend == "torch":
        return [Path(spec.checkpoint) / "model.safetensors" if Path(spec.checkpoint).is_dir()
                else Path(spec.checkpoint)] if spec.checkpoint else []
    from ddrf.runtime.backends import backend_info

    suffix = backend_info(spec.backend).file_suffix
    stages = [("sampler", steps)] if spec.sampler == "unrolled" else [("encoder", None), ("denoiser", None)]
    paths = [files.path(stage, spec.precision, k, suffix) for stage, k in stages]
    return [p for p in paths if p.is_file()]


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


# --- engine mode: one TensorRT plan on its own ---------------------------------------------------------------------
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


def not_run(spec: PointSpec, status: str, reason: str) -> dict[str, Any]:
    return {**spec.key(), "status": status, "reason": reason}


def measure(spec: PointSpec) -> dict[str, Any]:
    try:
        return measure_engine(spec) if is_engine(spec.target) else measure_model(spec)
    except Skip as exc:
        return not_run(spec, "skipped", str(exc))
    except Exception as exc:  # one line for the table; the traceback goes to stderr for the parent's log
        traceback.print_exc()
        return not_run(spec, "failed", f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500])


# --- scene mode: ddrf-run on a scene directory, in this process ----------------------------------------------------
def measure_scene(request: dict[str, Any]) -> dict[str, Any]:
    """Wall time and peak RSS of `ddrf-run SCENE -o OUT ...` run in this process; the run report's timings."""
    from ddrf.scenes.command import app

    scene, out = Path(request["scene"]), Path(request["output"])
    args = [str(scene), "-o", str(out), "--no-progress", "--overwrite", *request.get("args", [])]
    start = time.perf_counter()
    try:
        app(args, prog_name="ddrf-run")
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    seconds = time.perf_counter() - start
    report_path = out / f"{scene.resolve().name}.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    height = width = None
    if report:
        height, width = report["scene"]["height"], report["scene"]["width"]
    megapixels = height * width / 1e6 if height and width else None
    return {"scene": str(scene), "command": "ddrf-run " + " ".join(args), "exit_code": code, "seconds": seconds,
            "height": height, "width": width, "megapixels": megapixels,
            "seconds_per_megapixel": seconds / megapixels if megapixels else None,
            "peak_rss_bytes": peak_rss_bytes(), "tiles": report["tiling"]["tiles"] if report else None,
            "timings_s": report["timings_s"] if report else None}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("point", "scene"):
        print("usage: python -m ddrf.profile.worker point|scene SPEC.json OUT.json", file=sys.stderr)
        return 2
    mode, spec_path, out_path = argv
    if mode == "point":
        result = measure(PointSpec.read(spec_path))
    else:
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
