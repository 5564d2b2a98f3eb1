"""Runtime benchmarks of DDRF Edge on this machine; writes docs/BENCHMARKS.md (environment and exact command included).

    python benchmarks/run_benchmarks.py                      # the bundled model ddrf/assets/models/landsat_ratio2
    python benchmarks/run_benchmarks.py --model DIR [--checkpoint RUN_DIR]
    python benchmarks/run_benchmarks.py --random-small       # a randomly initialised DDRFConfig.small(4), exported

(a) ONNX Runtime (CPU) vs PyTorch eager, same weights, steps and 256 tile; (b) condition-cached sampler vs the
condition recomputed at every step; (c) unrolled vs stepwise graph; (d) latency against steps and tile size;
(e) peak RSS and time per megapixel of ddrf-run on 1, 4 and 16 MP scenes mirrored from the sample scene;
(f) achieved GFLOP/s (torch.utils.flop_counter FLOPs over measured time) beside numpy's fp32 matmul rate.
Every timing runs in its own process (ddrf.profile.worker); A/B comparisons alternate the order and repeat.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doc_blocks import write_block  # noqa: E402
from ddrf.profile.environment import load_average, profile_environment  # noqa: E402
from ddrf.profile.spec import PointSpec  # noqa: E402
from ddrf.profile.sweep import run_point, run_scene  # noqa: E402

SAMPLE = ROOT / "ddrf" / "assets" / "sample_scene" / "LC80200392015216LGN00"
BUNDLED = ROOT / "ddrf" / "assets" / "models" / "landsat_ratio2"
LANDSAT_FILES = {"pan": "B8", "blue": "B2", "green": "B3", "red": "B4", "nir": "B5"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the model ---------------------------------------------------------------------------------------------------
def random_small(out: Path, seed: int = 0) -> tuple[Path, Path]:
    """DDRFConfig.small(4), random weights, exported (FP32; stepwise + unrolled K=4) with a checkpoint beside."""
    import torch

    from ddrf.card import ModelCard, Normalisation
    from ddrf.export.onnx_export import export_model
    from ddrf.model import DDRF, DDRFConfig
    from ddrf.train.checkpoint import save_weights

    torch.manual_seed(seed)
    model = DDRF(DDRFConfig.small(4)).eval()
    card = ModelCard(model=model.config.to_dict(), bands=["blue", "green", "red", "nir"], ratio=2,
                     sensor="Landsat8", normalisation=Normalisation(kind="bit_depth", bits=16), sampling_steps=4,
                     training={"note": "random initialisation (benchmarks --random-small): speed only"})
    model_dir, ckpt = out / "model", out / "checkpoint"
    ckpt.mkdir(parents=True)
    export_model(model, card, model_dir, unrolled_steps=(4,), fp16=False)
    state = model.state_dict()
    save_weights(ckpt, state, state, card)
    return model_dir, ckpt


def model_facts(model_dir: Path) -> dict[str, Any]:
    """Parameters and FLOPs (torch.utils.flop_counter: 2 per multiply-add) of encode and one denoise at 256."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ddrf.card import read_card
    from ddrf.model import DDRF, DDRFConfig

    card = read_card(model_dir / "card.json")
    model = DDRF(DDRFConfig.from_dict(card.model)).eval()
    c, g = len(card.bands), len(card.guide_bands)
    lms, pan, x = torch.rand(1, c, 256, 256), torch.rand(1, g, 256, 256), torch.randn(1, c, 256, 256)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as enc:
            cond = model.encode(lms, pan)
        with FlopCounterMode(display=False) as den:
            model.denoise(x, torch.tensor([500.0]), *cond)
    return {"params": sum(p.numel() for p in model.parameters()), "encode_flops_256": enc.get_total_flops(),
            "denoise_flops_256": den.get_total_flops(), "card": card, "config": card.model}


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 7) -> float:
    """Median fp32 numpy matmul rate (median, like the step times it is compared with), in a fresh process with
    BLAS limited to `threads` threads."""
    code = (f"import numpy as np, time, statistics; a = np.random.rand({n}, {n}).astype(np.float32); b = a.T.copy();"
            f" a @ b; ts = [(lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter())"
            f" for _ in range({repeats})]; print(2 * {n} ** 3 / statistics.median(ts) / 1e9)")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip())


# --- measurements ------------------------------------------------------------------------------------------------
def point(model: Path, **kw: Any) -> dict[str, Any]:
    spec = PointSpec(str(model), **kw)
    log(f"point {spec.backend} {spec.sampler} tile {spec.tile} steps {spec.steps}")
    result = run_point(spec, timeout=900)
    if result["status"] != "ok":
        log(f"  {result['status']}: {result.get('reason')}")
    return result


def median_ms(result: dict[str, Any]) -> float | None:
    return result["latency_ms"]["total"]["median"] if result["status"] == "ok" else None


def step_ms(result: dict[str, Any]) -> float | None:
    if result["status"] != "ok" or not result["latency_ms"]["denoise_steps"]:
        return None
    return float(statistics.mean(s["median"] for s in result["latency_ms"]["denoise_steps"]))


def alternate(reps: int, a: Callable[[], dict[str, Any]], b: Callable[[], dict[str, Any]]
              ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`reps` (A, B) pairs, run A-B, B-A, A-B ... so drift in machine load falls on both sides."""
    pairs = []
    for rep in range(reps):
        if rep % 2 == 0:
            first = a()
            pairs.append((first, b()))
        else:
            second = b()
            pairs.append((a(), second))
    return pairs


def ratios(pairs: list[tuple[dict[str, Any], dict[str, Any]]], metric: Callable[[dict[str, Any]], float | None]
           ) -> list[float]:
    """metric(B) / metric(A) for every pair where both ran."""
    out = []
    for a, b in pairs:
        ma, mb = metric(a), metric(b)
        if ma and mb:
            out.append(mb / ma)
    return out


def bench_ort_vs_torch(model: Path, ckpt: Path | None, common: dict[str, Any], reps: int) -> dict[str, Any]:
    if ckpt is None:
        return {"skipped": "no checkpoint: PyTorch eager needs the weights (pass --checkpoint or use --random-small)"}
    pairs = alternate(reps, lambda: point(model, backend="ort-cpu", **common),
                      lambda: point(model, backend="torch", checkpoint=str(ckpt), **common))
    return {"pairs": pairs, "tile_ratio": ratios(pairs, median_ms), "step_ratio": ratios(pairs, step_ms)}


def bench_cached(model: Path, common: dict[str, Any], reps: int) -> dict[str, Any]:
    pairs = alternate(reps, lambda: point(model, backend="ort-cpu", sampler="cached", **common),
                      lambda: point(model, backend="ort-cpu", sampler="uncached", **common))
    return {"pairs": pairs, "tile_ratio": ratios(pairs, median_ms)}


def bench_unrolled(model: Path, common: dict[str, Any], reps: int) -> dict[str, Any]:
    pairs = alternate(reps, lambda: point(model, backend="ort-cpu", sampler="unrolled", **common),
                      lambda: point(model, backend="ort-cpu", sampler="cached", **common))
    return {"pairs": pairs, "tile_ratio": ratios(pairs, median_ms)}


def bench_sweep(model: Path, common: dict[str, Any]) -> dict[str, Any]:
    base = {k: v for k, v in common.items() if k not in ("steps", "tile")}
    default = common["steps"]
    steps = {k: point(model, backend="ort-cpu", tile=256, steps=k, **base) for k in sorted({1, 2, 4, 8, default})}
    tiles = {t: steps[default] if t == 256 else point(model, backend="ort-cpu", tile=t, steps=default, **base)
             for t in (128, 256, 512)}
    return {"steps": steps, "tiles": tiles, "default_steps": default}


# --- (e) synthetic large scenes ------------------------------------------------------------------------------------
def mirrored(data: np.ndarray, height: int, width: int) -> np.ndarray:
    """The array tiled by mirroring (half-sample symmetric) out to height x width."""
    return np.pad(data, ((0, max(0, height - data.shape[0])), (0, max(0, width - data.shape[1]))),
                  mode="symmetric")[:height, :width]


def make_scene(out: Path, height: int, width: int) -> Path:
    """A Landsat-8-named scene of height x width PAN pixels mirrored from the sample scene, with its grids.

    Mirroring by whole MS pixels keeps PAN pixel 2j+1 centred on MS pixel j, as in the sample (PROVENANCE.md).
    """
    import rasterio

    scene = out / f"LC8_SYNTH_{width}x{height}"
    scene.mkdir(parents=True)
    for role, band in LANDSAT_FILES.items():
        src_path = SAMPLE / f"LC80200392015216LGN00_{band}.TIF"
        rows, cols = (height, width) if role == "pan" else (height // 2, width // 2)
        with rasterio.open(src_path) as src:
            data, profile = mirrored(src.read(1), rows, cols), src.profile
        profile.update(height=rows, width=cols, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                       predictor=2)
        with rasterio.open(scene / f"LC8_SYNTH_{band}.TIF", "w", **profile) as dst:
            dst.write(data, 1)
    return scene


SCENE_WIDTH = 2000  # PAN pixels: fixed, because ddrf-run's memory is bounded by the scene width by design


def bench_scenes(model: Path, tmp: Path, threads: int, steps: int | None, model_sizes: list[int],
                 exp_sizes: list[int]) -> list[dict[str, Any]]:
    """ddrf-run on SCENE_WIDTH-wide scenes of growing height: memory must not grow with the scene size."""
    runs = []
    for mp in sorted(set(model_sizes) | set(exp_sizes)):
        height = int(round(mp * 1e6 / SCENE_WIDTH / 2)) * 2
        scene = make_scene(tmp / "scenes", height, SCENE_WIDTH)
        jobs = []
        if mp in model_sizes:
            args = ["--model", str(model), "--threads", str(threads)] + (["--steps", str(steps)] if steps else [])
            jobs.append(("model", args))
        if mp in exp_sizes:
            jobs.append(("EXP", ["--method", "EXP"]))
        for engine, args in jobs:
            log(f"ddrf-run {engine} on {mp} MP")
            result = run_scene(scene, args, timeout=1800)
            result.update({"engine": engine, "nominal_mp": mp})
            runs.append(result)
    return runs


# --- the report --------------------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio_text(values: list[float]) -> str:
    if not values:
        return "not measured"
    return f"**{statistics.median(values):.2f}x** (median of {len(values)}; range {min(values):.2f}-{max(values):.2f})"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def pair_rows(pairs: list[tuple[dict[str, Any], dict[str, Any]]], names: tuple[str, str]) -> str:
    rows = []
    for i, (a, b) in enumerate(pairs, 1):
        rows.append([str(i), "A then B" if i % 2 else "B then A", fmt(median_ms(a)), fmt(step_ms(a)),
                     fmt(median_ms(b)), fmt(step_ms(b)), a.get("reason") or b.get("reason") or ""])
    return md_table(["rep", "order", f"{names[0]} tile ms", f"{names[0]} step ms", f"{names[1]} tile ms",
                     f"{names[1]} step ms", "note"], rows)


def environment_md(env: dict[str, Any], load_before: Any, load_after: Any) -> str:
    keys = ["cpu_model", "cpu_cores_physical", "cpu_cores_usable", "memory_total_bytes", "gpu_name",
            "compute_capability", "cuda_driver_version", "cuda_runtime_version", "tensorrt_version",
            "onnxruntime_version", "onnxruntime_providers", "torch_version", "numpy_version", "python_version",
            "platform", "jetson"]
    rows = [[k, str(env.get(k))] for k in keys]
    rows.append(["load average (1/5/15 min) before / after", f"{load_before} / {load_after}"])
    return md_table(["", "value"], rows)


def write_report(path: Path, data: dict[str, Any]) -> None:
    facts, env, common = data["facts"], data["environment"], data["common"]
    a, b, c, d, e = (data.get(k, {}) for k in ("a", "b", "c", "d", "e"))
    out = ["## Runtime benchmarks (benchmarks/run_benchmarks.py)\n",
           f"Generated {data['created']} by `{data['command']}` ({data['minutes']:.1f} min). Rerun that command to "
           "regenerate this page on your machine; nothing here is a GPU figure unless the environment lists a GPU.\n",
           "### Machine\n", environment_md(env, data["load_before"], data["load_after"]), "",
           "### Model\n", data["model_text"],
           f"{facts['params'] / 1e6:.2f} M parameters; FLOPs at one 256x256 tile (torch.utils.flop_counter, 2 per "
           f"multiply-add): encode {facts['encode_flops_256'] / 1e9:.2f} GFLOP, one denoise step "
           f"{facts['denoise_flops_256'] / 1e9:.2f} GFLOP.\n",
           "### How it was measured\n",
           f"- Every configuration runs in its own fresh process (`python -m ddrf.profile.worker`, the engine of "
           f"`ddrf-profile`): cold start, {common['warmup']} warm-up run(s), then {common['runs']} timed runs of a "
           f"whole tile fusion (read from a GeoTIFF, pre-process, encode, K denoise steps, post-process, write).",
           f"- CPU threads: {common['threads']} (ONNX Runtime intra-op threads; torch.set_num_threads; BLAS in (f)). "
           "Batch 1. Fewer threads than cores is the honest choice on a machine shared with other work (spinning "
           "thread pools then wait on descheduled threads); compare ratios only at equal thread counts.",
           "- A/B comparisons run the two sides in separate processes, alternating which goes first, repeated "
           f"{data['reps']} times; a ratio is the median of the per-repetition ratios of median latencies.",
           "- The machine's load average is recorded above: on a shared machine, other work inflates and spreads "
           "the CPU figures (method.md saw 10-20 % run-to-run noise).\n"]
    # --only runs some sections: render those, not empty ones that would fail on their missing figures
    out += ((section_a(a, common) if a else []) + (section_b(b, common) if b else [])
            + (section_c(c, common) if c else []) + (section_d(d) if d else []) + (section_e(e) if e else []))
    out += (section_f(data) if "matmul_gflops" in data else []) + USAGE
    write_block(path, "run_benchmarks", "\n".join(out))


USAGE = ["### Profiling your own model, backend or engine\n",
         "`ddrf-profile` measures what these sections use, for any sweep, each point in its own process:\n",
         "```",
         "ddrf-profile MODEL_DIR --backend ort-cpu,torch --checkpoint RUN_DIR --tile 256 --steps 1,2,4,8 \\",
         "    --runs 10 --threads 2 --json profile.json --csv profile.csv --plot profile.png",
         "ddrf-profile MODEL_DIR --sampler cached,uncached,unrolled --steps 4     # (b) and (c)",
         "ddrf-profile MODEL_DIR --scene-size 10000x10000 --scene SCENE_DIR      # projected and measured scene",
         "ddrf-profile MODEL_DIR -b tensorrt --precision fp16 --tile 512 --batch 1,4   # GPU, per-layer profile",
         "ddrf-profile MODEL_DIR/denoiser_fp16.plan -b tensorrt                 # one engine on its own",
         "```",
         "Stages of one tile fusion: read (GeoTIFF windows of the bundled sample scene), pre-process (interp23, "
         "normalisation, noise), encode, each denoise step, post-process, write (tiled deflate GeoTIFF); "
         "min/mean/median/p90/p95/p99/max and coefficient of variation of each, cold start (import, load, "
         "session, first run), throughput, peak host RSS and device memory. JSON schema: "
         "`ddrf/profile/schema.json` (schema_version 1).\n"]


def section_a(a: dict[str, Any], common: dict[str, Any]) -> list[str]:
    head = [f"### (a) ONNX Runtime (CPU) vs PyTorch eager\n",
            f"Same weights, {common['steps']} step(s), one 256x256 tile. A = ort-cpu, B = torch.\n"]
    if "skipped" in a:
        return head + [f"Not run: {a['skipped']}\n"]
    return head + [f"PyTorch / ONNX Runtime, whole tile: {ratio_text(a['tile_ratio'])}; per denoise step: "
                   f"{ratio_text(a['step_ratio'])} (> 1: ONNX Runtime faster).\n", pair_rows(a["pairs"],
                                                                                           ("ort-cpu", "torch")), ""]


def section_b(b: dict[str, Any], common: dict[str, Any]) -> list[str]:
    return [f"### (b) Condition-cached sampler vs recomputing the condition every step\n",
            f"ort-cpu, {common['steps']} step(s), 256 tile. A = cached (encode once + K denoiser calls), B = uncached "
            "(encoder + denoiser at every step, i.e. K full forwards).\n"
            + ("At one step both sides do the same work, so the ratio is this machine's noise.\n"
               if common["steps"] == 1 else ""),
            f"Uncached / cached, whole tile: {ratio_text(b.get('tile_ratio', []))}.\n",
            pair_rows(b.get("pairs", []), ("cached", "uncached")), ""]


def section_c(c: dict[str, Any], common: dict[str, Any]) -> list[str]:
    return [f"### (c) Unrolled one-graph sampler vs stepwise graphs\n",
            f"ort-cpu, {common['steps']} step(s), 256 tile. A = unrolled (`sampler_k{common['steps']}.onnx`), "
            "B = stepwise (encoder + denoiser, cached).\n",
            f"Stepwise / unrolled, whole tile: {ratio_text(c.get('tile_ratio', []))} (> 1: unrolled faster).\n",
            pair_rows(c.get("pairs", []), ("unrolled", "stepwise")), ""]


def sweep_rows(results: dict[int, dict[str, Any]], label: str) -> list[list[str]]:
    rows = []
    for key, r in results.items():
        if r["status"] != "ok":
            rows.append([f"{label} {key}", "-", "-", "-", "-", "-", "-", r.get("reason") or ""])
            continue
        lat = r["latency_ms"]
        rows.append([f"{label} {key}", str(r["tile"]), str(r["steps"]), fmt(lat["total"]["median"]),
                     fmt(lat["total"]["p90"]), fmt(lat["total"]["cv"] * 100), fmt(step_ms(r)),
                     f"{r['throughput']['megapixels_per_s']:.3f}"])
    return rows


def section_d(d: dict[str, Any]) -> list[str]:
    header = ["point", "tile", "steps", "median ms", "p90 ms", "cv %", "ms / step", "MP/s"]
    rows = sweep_rows(d.get("steps", {}), "steps") + sweep_rows({k: v for k, v in d.get("tiles", {}).items()
                                                                  if k != 256}, "tile")
    return ["### (d) Latency against steps and tile size\n", f"ort-cpu, batch 1; the tile rows use {d.get('default_steps', 4)} step(s).\n",
            md_table(header, rows), ""]


def section_e(e: list[dict[str, Any]] | dict[str, Any]) -> list[str]:
    runs = e if isinstance(e, list) else []
    rows = []
    for r in runs:
        ok = r.get("exit_code") == 0
        rows.append([r["engine"], f"{r['nominal_mp']}", fmt(r.get("megapixels"), 2) if ok else "-",
                     str(r.get("tiles")) if ok else "-", fmt(r.get("seconds")) if ok else "-",
                     fmt(r.get("seconds_per_megapixel"), 2) if ok else "-",
                     fmt(r["peak_rss_bytes"] / 2**20, 0) if ok else "-",
                     "" if ok else str(r.get("error") or f"exit {r.get('exit_code')}")])
    text = ["### (e) ddrf-run: peak memory and time per megapixel against scene size\n",
            f"Scenes {SCENE_WIDTH} PAN pixels wide and 1, 4 and 16 megapixels in all (heights 500, 2000, 8000), "
            "made by mirroring the bundled sample scene (Landsat-8, ratio 2) into tiled deflate GeoTIFFs with the "
            "sample's geotransforms. ddrf-run makes its output in 4096-column chunks (blender: window rows x chunk "
            "width x bands, float64; writer: 512 rows x chunk width, quantised), so memory must grow neither with "
            "the height nor the width (benchmarks/scene_throughput.py varies the width). Each "
            "`ddrf-run` runs in a fresh process; peak RSS is that process's high-water mark (VmHWM), time is the "
            "whole command (imports and model load included). Default ddrf-run tiling (model: 256 windows, batch 1 "
            "on CPU; EXP: 1024 windows; halo 32).\n",
            md_table(["engine", "nominal MP", "MP", "windows", "seconds", "s / MP", "peak RSS MB", "note"], rows), ""]
    for engine, window in (("model", 256), ("EXP", 1024)):
        line = flatness([r for r in runs if r["engine"] == engine and r.get("exit_code") == 0], engine, window)
        if line:
            text.append(line)
    if runs:
        text.append(f"\nCommands (temporary paths): " + "; ".join(f"`{r['command']}`" for r in runs[:2]) + " ...\n")
    return text


def flatness(done: list[dict[str, Any]], engine: str, window: int) -> str | None:
    """Peak RSS against size, judged between scenes at least one window tall: a shorter scene gets shorter
    windows and smaller buffers, which is not a scene-size effect."""
    if len(done) < 2:
        return None
    full = [r for r in done if r["height"] >= window]
    lo, hi = (full[0], full[-1]) if len(full) >= 2 else (done[0], done[-1])
    growth = hi["peak_rss_bytes"] / lo["peak_rss_bytes"]
    sizes = ", ".join(f"{r['peak_rss_bytes'] / 2**20:.0f} MB at {r['megapixels']:.0f} MP" for r in done)
    text = (f"- {engine} ({window}-pixel windows): peak RSS {sizes}. From {lo['megapixels']:.0f} to "
            f"{hi['megapixels']:.0f} MP: x{growth:.2f} for x{hi['megapixels'] / lo['megapixels']:.0f} the pixels "
            f"({'flat' if growth < 1.25 else 'NOT flat'})")
    short = [r for r in done if r["height"] < window]
    if short and len(full) >= 2:
        text += (f"; the {short[0]['megapixels']:.0f} MP scene is {short[0]['height']} rows tall, shorter than a "
                 "window, so its windows and buffers are smaller")
    return text + ". Time per MP: " + ", ".join(f"{r['seconds_per_megapixel']:.2f} s" for r in done) + "."


def section_f(data: dict[str, Any]) -> list[str]:
    facts, d = data["facts"], data.get("d", {})
    ref = d.get("steps", {}).get(data["common"]["steps"])
    ms = step_ms(ref) if ref else None
    achieved = facts["denoise_flops_256"] / (ms / 1e3) / 1e9 if ms else None
    matmul = data.get("matmul_gflops")
    share = f" = {100 * achieved / matmul:.0f} % of the matmul rate" if achieved and matmul else ""
    return ["### (f) Achieved GFLOP/s\n",
            f"One denoise step at 256x256: {facts['denoise_flops_256'] / 1e9:.2f} GFLOP in {fmt(ms)} ms (median "
            f"step time of the (d) point at the default {data['common']['steps']} step(s)) -> **{fmt(achieved)} "
            f"GFLOP/s**{share}. numpy fp32 2048x2048 matmul with {data['common']['threads']} BLAS thread(s), median "
            f"of 7 (median against median): **{fmt(matmul)} GFLOP/s**.\n"]


# --- main --------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model directory (default: ddrf/assets/models/landsat_ratio2)")
    p.add_argument("--checkpoint", type=Path, help="run directory with model.safetensors (for PyTorch eager)")
    p.add_argument("--random-small", action="store_true", help="benchmark a random DDRFConfig.small(4) export")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per engine (default 2)")
    p.add_argument("--steps", type=int, help="sampler steps for (a)-(d) and (f) (default: the card's)")
    p.add_argument("--reps", type=int, default=3, help="alternated repetitions of each A/B pair (default 3)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per point (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs per point (default 1)")
    p.add_argument("--scene-steps", type=int, help="steps for the ddrf-run scenes in (e) (default: the card's)")
    p.add_argument("--model-mp", default="1,4", help="scene sizes (MP) run with the model in (e) (default 1,4)")
    p.add_argument("--exp-mp", default="1,4,16", help="scene sizes (MP) run with --method EXP (default 1,4,16)")
    p.add_argument("--only", default="abcdef", help="sections to run, e.g. 'ae' (default all)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--render", type=Path, help="only rewrite --out from a --json file of an earlier run")
    return p.parse_args(argv)


def resolve_model(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path | None, str]:
    if args.random_small:
        small, weights = random_small(tmp)
        return small, weights, ("A **randomly initialised** `DDRFConfig.small(4)` (seed 0; 4 bands, ratio 2, 16-bit "
                             "normalisation, 4 sampling steps), exported with `ddrf.export.onnx_export.export_model` "
                             "(FP32, stepwise and unrolled K=4) into a temporary folder, plus a checkpoint of the same "
                             "weights for PyTorch. Timings do not depend on the weights; no quality is implied. ")
    model: Path = args.model or BUNDLED
    if not (model / "card.json").is_file():
        sys.exit(f"run_benchmarks: {model}: no model (card.json); pass --model DIR or --random-small")
    ckpt: Path | None = args.checkpoint or (model if (model / "model.safetensors").is_file() else None)
    resolved = model.resolve()
    shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else model
    return model, ckpt, f"`{shown}`" + (" with its weights for PyTorch. " if ckpt == model else
                                        f" with checkpoint `{ckpt}`. " if ckpt else " (no checkpoint). ")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    data: dict[str, Any]
    if args.render:
        data = json.loads(args.render.read_text())
        for key in ("d",):  # JSON turned the integer keys of the sweeps into strings
            for part in data.get(key, {}).values():
                for k in list(part) if isinstance(part, dict) else []:
                    part[int(k)] = part.pop(k)
        write_report(args.out, data)
        return 0
    started = time.perf_counter()
    data = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "command": "python benchmarks/run_benchmarks.py " + shlex.join(argv),
                            "reps": args.reps, "load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="ddrf-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model, ckpt, data["model_text"] = resolve_model(args, tmp)
        data["environment"] = profile_environment()
        steps = args.steps or int(json.loads((model / "card.json").read_text())["sampling_steps"])
        common = dict(tile=256, steps=steps, runs=args.runs, warmup=args.warmup, threads=args.threads,
                      layer_profile=False)
        data["common"] = common
        if "a" in args.only:
            data["a"] = bench_ort_vs_torch(model, ckpt, common, args.reps)
        if "b" in args.only:
            data["b"] = bench_cached(model, common, args.reps)
        if "c" in args.only:
            data["c"] = bench_unrolled(model, common, args.reps)
        if "d" in args.only or "f" in args.only:
            data["d"] = bench_sweep(model, common)
        if "e" in args.only:
            sizes = [int(v) for v in args.model_mp.split(",") if v], [int(v) for v in args.exp_mp.split(",") if v]
            data["e"] = bench_scenes(model, tmp, args.threads, args.scene_steps, *sizes)
        if "f" in args.only:
            data["matmul_gflops"] = matmul_gflops(args.threads)
        data["facts"] = model_facts(model)
    data["load_after"] = load_average()
    data["minutes"] = (time.perf_counter() - started) / 60
    write_report(args.out, data)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
