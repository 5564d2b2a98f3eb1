"""The bundled default model in PyTorch on a CUDA GPU: measured speed, device memory and precision.

    python benchmarks/gpu_torch.py [--model DIR] [--tile 576 1024] [--batch 1 4] [--out runs/gpu_torch.json]

What it measures (every figure on the GPU it runs on; nothing is computed from the graphs):
- **windows**: the sampler graph `ddrf-export` writes (scene statistics replayed, K = 1) run in PyTorch eager on a
  batch of tile x tile windows: median milliseconds per batch (CUDA events), model and kept megapixels per second
  (kept = the core left after the halo), and the peak device memory above the weights
  (`torch.cuda.max_memory_allocated`), in fp32 (TF32 off), tf32, and bf16 / fp16 autocast;
- **tiled path**: the bundled sample scene through ddrf-run's windows, halo, blend and keyed noise
  (`ddrf.train.tiled`) on the GPU in each precision against fp32 on the CPU: p99 and max |difference| as a
  percentage of each band's standard deviation (the tile-invariance yardstick of issue 9);
- **copies**: one batch's inputs up and output down through `ddrf.runtime.cuda` (cuda-python; the buffers the
  TensorRT backend uses), pinned and mapped host memory, GB/s, checked bit-exact;
- **training**: optimiser steps per second of configs/landsat7_bundled.yaml on the GPU (fp32, bf16) on the
  committed Landsat-7 test crops (a speed figure: too little data for a model).

PyTorch eager is not TensorRT: these are the GPU figures of the training stack, not of the FP16 engines.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ddrf.assets import BUNDLED_MODELS
from ddrf.export.graphs import ScenePassGraph, SceneSamplerGraph
from ddrf.export.onnx_export import sample_inputs
from ddrf.runtime.cuda import DeviceBuffer, HostBuffer, Stream, enable_mapped_memory
from ddrf.scenes.tiling import CONTEXT_SIDE, CONTEXT_WINDOWS
from ddrf.schedule import CosineSchedule, make_plan
from ddrf.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
DEFAULT_MODEL = BUNDLED_MODELS / "landsat_ratio2"
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@contextlib.contextmanager
def precision(name: str) -> Iterator[None]:
    """fp32 with TF32 off, TF32 matmuls and convolutions, or bf16 / fp16 autocast (fp32 weights)."""
    tf32 = name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
    with torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext():
        yield


def images(card: Any, batch: int, side: int, device: str) -> tuple[torch.Tensor, ...]:
    """(lms, pan, noise) on `device`: the export's own traced inputs."""
    return tuple(t.to(device) for t in sample_inputs(card, batch, side).values())


def time_batches(run: Any, reps: int, device: str) -> list[float]:
    """Milliseconds of each of `reps` runs after three warm-ups, timed by CUDA events on a GPU."""
    for _ in range(3):
        run()
    times = []
    for _ in range(reps):
        if device != "cuda":  # --device cpu only checks that the script runs
            t0 = time.perf_counter()
            run()
            times.append(1e3 * (time.perf_counter() - t0))
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def allocated(peak: bool = False) -> int:
    if not torch.cuda.is_available():
        return 0
    return torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()


def windows(model: Any, card: Any, tiles: list[int], batches: list[int], reps: int,
            device: str) -> list[dict[str, Any]]:
    plan = make_plan(CosineSchedule.from_dict(card.schedule), 1)
    args = (model, plan, card.target, card.residual, card.residual_scale)
    recorder, sampler = ScenePassGraph(*args), SceneSamplerGraph(*args)
    halo = int(card.halo)
    weights = allocated()
    rows = []
    for name in PRECISIONS:
        with torch.no_grad(), precision(name):
            scene = recorder(*images(card, CONTEXT_WINDOWS, CONTEXT_SIDE, device))
            for tile, batch in ((t, b) for t in tiles for b in batches):
                inputs = images(card, batch, tile, device)
                if device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                times = time_batches(lambda: sampler(*inputs, *scene), reps, device)
                ms = float(np.median(times))
                rows.append({"precision": name, "tile": tile, "batch": batch, "median_ms": round(ms, 2),
                             "p90_ms": round(float(np.percentile(times, 90)), 2),
                             "model_mp_s": round(batch * tile * tile / ms / 1e3, 2),
                             "kept_mp_s": round(batch * (tile - 2 * halo) ** 2 / ms / 1e3, 2),
                             "peak_mib_above_weights": round((allocated(peak=True) - weights) / MIB, 1)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def tiled_path(model: Any, card: Any, model_dir: Path, tiles: list[int], device: str) -> list[dict[str, Any]]:
    """The sample scene through ddrf-run's tiling on the GPU, each precision and tile, against fp32 on the CPU."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tile_invariance import sample_scene

    from ddrf.train.tiled import TorchEngine, fuse_tiled

    scene = sample_scene()
    cpu_model, _ = load_checkpoint(model_dir, device="cpu")
    reference = fuse_tiled(TorchEngine(cpu_model, card, steps=1), scene, tiles[0], batch=1)
    std = reference.reshape(-1, reference.shape[-1]).std(axis=0)
    rows = []
    for name in PRECISIONS:
        for tile in tiles:
            engine = TorchEngine(model, card, steps=1, device=device)
            with precision(name):
                out = fuse_tiled(engine, scene, tile, batch=4)
            diff = np.abs(out.astype(np.float64) - reference).reshape(-1, reference.shape[-1])
            rows.append({"precision": name, "tile": tile,
                         "p99_pct_std": [round(float(v), 3) for v in 100 * np.percentile(diff, 99, axis=0) / std],
                         "max_pct_std": [round(float(v), 3) for v in 100 * diff.max(axis=0) / std]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def copies(card: Any, tile: int, batch: int, reps: int = 20) -> list[dict[str, Any]]:
    """One batch's inputs (lms, pan, noise) up and its output down through ddrf.runtime.cuda, pinned or mapped."""
    enable_mapped_memory()
    stream = Stream()
    up_shape = (batch, 2 * card.graph_bands + len(card.guide_bands), tile, tile)
    down_shape = (batch, card.graph_bands, tile, tile)
    rows = []
    for mapped in (False, True):
        for direction, shape in (("up", up_shape), ("down", down_shape)):
            host = HostBuffer(int(np.prod(shape)) * 4, mapped=mapped)
            device = DeviceBuffer(host.nbytes)
            array = host.view(shape, np.dtype(np.float32))
            array[...] = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
            expected = array.copy()
            move = device.upload if direction == "up" else device.download
            if direction == "down":
                device.upload(array, stream)
                stream.synchronize()
            seconds = []
            for _ in range(reps):
                t0 = time.perf_counter()
                move(array, stream)
                stream.synchronize()
                seconds.append(time.perf_counter() - t0)
            check = np.empty_like(array)
            device.download(check, stream)
            stream.synchronize()
            rows.append({"host": "mapped" if mapped else "pinned", "direction": direction,
                         "mib": round(array.nbytes / MIB, 1), "median_ms": round(1e3 * float(np.median(seconds)), 3),
                         "gb_s": round(array.nbytes / float(np.median(seconds)) / 1e9, 1),
                         "bit_exact": bool(np.array_equal(check, expected))})
            print(json.dumps(rows[-1]), flush=True)
            host.close()
            device.close()
    stream.close()
    return rows


def training(steps: int, device: str) -> list[dict[str, Any]]:
    """Steps per second of the bundled recipe on the GPU (the test crops as data: a speed figure only)."""
    from ddrf.train.config import load_config
    from ddrf.train.loop import train

    rows = []
    for name in ("fp32", "bf16"):
        cfg = load_config(ROOT / "configs/landsat7_bundled.yaml", [
            f"data.source=fusebox:{ROOT / 'tests/data/landsat7'}", f"optim.steps={steps}", f"optim.device={device}",
            f"optim.precision={name}", "optim.warmup=5", "optim.ema_start=0", "log.progress=false",
            f"log.checkpoint_every={10 * steps}", f"log.every={steps}"])
        with tempfile.TemporaryDirectory() as tmp:
            result = train(cfg, Path(tmp) / "run")
        rows.append({"precision": name, "steps": steps, "batch": cfg.optim.batch, "seconds": round(result.seconds, 1),
                     "steps_per_s": round(steps / result.seconds, 2),
                     "loss_first5": round(float(np.mean(result.losses[:5])), 4),
                     "loss_last5": round(float(np.mean(result.losses[-5:])), 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--tile", type=int, nargs="+", default=[576, 1024], help="window sides (first: copies)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tiles", type=int, nargs="+", default=[576, 256], help="tiled-path tiles (first: CPU ref)")
    parser.add_argument("--train-steps", type=int, default=200, help="0: skip the training figure")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/gpu_torch.json")
    parser.add_argument("--device", default="cuda", help="cpu: only check that the script runs (small sizes)")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("gpu_torch.py: no CUDA GPU visible to PyTorch")
    model, card = load_checkpoint(args.model, device=args.device)  # with card.json: scene statistics, halo
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name() if gpu else None, "torch": torch.__version__,
                              "model": str(args.model.name)}
    sections = {"copies": lambda: copies(card, args.tile[0], max(args.batch)) if gpu else [],
                "windows": lambda: windows(model, card, args.tile, args.batch, args.reps, args.device),
                "tiled_path": lambda: tiled_path(model, card, args.model, args.tiles, args.device),
                "training": lambda: training(args.train_steps, args.device) if args.train_steps else []}
    for key, section in sections.items():  # each section on its own: one failure must not lose the others
        try:
            report[key] = section()
        except Exception as exc:  # noqa: BLE001 - reported in the JSON, the run goes on
            report[key] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{key}: {report[key]['error']}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
