"""Quality of an exported DDRF model on held-out data: steps vs quality vs time, uncertainty, full resolution.

    python benchmarks/bundled_quality.py --model ddrf/assets/models/landsat_ratio2 \\
        --fusebox ../shared/data/landsat7_fusebox --landsat8 ../shared/data/landsat8_l1t_clip \\
        --out docs/bundled_quality.md [--scenes 1-6] [--steps 1,2,4,8,25] [--samples 4,8] [--uncertainty 8]

Writes one markdown file (the exact command, machine, software, settings and every table) and a binned
spread-vs-error plot (`--figure`, by default `uncertainty.png` beside `--out`).

1. Held-out Landsat-7 FuseBox acquisition P034R032 at reduced resolution (Wald's protocol at ratio 2, no border
   crop): every classical baseline and the model at the card's default steps. The same numbers as
   `ddrf-eval fusebox:DIR --methods classical,ddrf:MODEL`, because the datasets, methods and scoring are those of
   `ddrf.evaluate` (nothing is re-implemented here).
2. Steps vs quality vs time: one sample at every K of `--steps`, and the mean of N samples (seeds 0..N-1) at the
   default K for every N of `--samples`. Time = wall-clock (and process CPU) seconds of `Fuser.fuse` per image on
   ONNX Runtime CPU, after one untimed warm-up fusion; for N samples it is the sum over the N fusions.
3. Uncertainty: the per-pixel spread that `ddrf-run --uncertainty N` writes (std, ddof 1, over seeds 0..N-1 at the
   default K) against the absolute error, vs the reference, of the sample `ddrf-run` writes (seed 0) and of the
   N-sample mean. Pearson and Spearman correlation pooled over bands, pixels and scenes, per-scene values, and
   mean |error| per spread decile (table + figure).
4. Full resolution on the Landsat-8 L1T clip (`pairs:` reader of ddrf-eval): D_lambda (Khan), D_s, HQNR and
   classic QNR for the classical baselines and the model, on the whole clip (cloudy) and on its two cloud-free
   strips (MS rows 0-142 and 461-602, per the clip's PROVENANCE.md; the BQA cloud fraction of each region is shown).

The model runs through the torch-free runtime `ddrf.runtime.fuser.Fuser` (ONNX Runtime, CPU). No torch import.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ddrf.evaluate.datasets import FULL, REDUCED, Sample, open_dataset
from ddrf.evaluate.runner import BLOCK, score, summarise

# Cloud-free strips of the Landsat-8 clip in MS rows [start, stop) (PROVENANCE.md: cumulus over rows ~143-460).
L8_REGIONS = (("whole clip (cloud over MS rows ~143-460)", None),
              ("clear top strip, MS rows 0-142", (0, 143)),
              ("clear bottom strip, MS rows 461-602", (461, 603)))
REDUCED_COLS = ("SAM", "ERGAS", "Q2n", "SCC", "Q", "PSNR", "SSIM")
FULL_COLS = ("D_lambda", "D_s", "HQNR", "QNR")
DIGITS = {"SAM": 3, "ERGAS": 3, "PSNR": 2, "seconds": 2, "cpu_seconds": 2}


# -- small helpers (tested in tests/test_bundled_quality.py) ----------------------------------------------------
def parse_ints(text: str) -> list[int]:
    """'1,2,4' or '1-6' or '1-3,5' -> sorted unique positive ints."""
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        values = range(int(lo), int(hi) + 1) if sep else [int(lo)]
        out.update(values)
    if not out or min(out) < 1:
        raise ValueError(f"{text!r}: expected positive integers like 1,2,4 or 1-6")
    return sorted(out)


def scene_number(name: str) -> int | None:
    """fusebox_3 -> 3 (the FuseBox pair number); None when the name carries no trailing number."""
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def method_label(steps: int, samples: int = 1) -> str:
    return f"DDRF K={steps}" + (f", mean of {samples}" if samples > 1 else "")


def spread_error_stats(spread: np.ndarray, error: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Pearson and Spearman correlation of spread vs |error| (flattened) and mean |error| per spread quantile bin."""
    from scipy.stats import spearmanr

    s = np.asarray(spread, dtype=np.float64).ravel()
    e = np.asarray(error, dtype=np.float64).ravel()
    ok = np.isfinite(s) & np.isfinite(e)
    s, e = s[ok], e[ok]
    pearson = float(np.corrcoef(s, e)[0, 1]) if s.std() > 0 and e.std() > 0 else float("nan")
    spearman = float(spearmanr(s, e).statistic) if s.std() > 0 and e.std() > 0 else float("nan")
    edges = np.quantile(s, np.linspace(0.0, 1.0, bins + 1))
    index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    mean_s = np.bincount(index, weights=s, minlength=bins) / np.maximum(count, 1)
    mean_e = np.bincount(index, weights=e, minlength=bins) / np.maximum(count, 1)
    return {"pearson": pearson, "spearman": spearman, "n": int(s.size), "edges": edges.tolist(),
            "count": count.tolist(), "mean_spread": mean_s.tolist(), "mean_error": mean_e.tolist(),
            "mean_spread_all": float(s.mean()), "mean_error_all": float(e.mean())}


def region_sample(sample: Sample, fused: np.ndarray, rows: tuple[int, int] | None,
                  name: str) -> tuple[Sample, np.ndarray]:
    """A full-resolution sample (and its fused image) restricted to MS rows [start, stop) (PAN rows x ratio)."""
    if rows is None:
        return sample, fused
    q = sample.ratio
    start, stop = max(rows[0], 0), min(rows[1], sample.ms.shape[0])
    if stop <= start:
        raise ValueError(f"{name}: MS rows {rows} are outside the image ({sample.ms.shape[0]} rows)")
    sub = replace(sample, name=f"{sample.name}[{name}]", pan=sample.pan[q * start:q * stop],
                  ms=sample.ms[start:stop])
    return sub, fused[q * start:q * stop]


def cell(stats: dict[str, Any], metric: str, std: bool = True) -> str:
    d = DIGITS.get(metric, 4)
    mean, dev = stats["mean"], stats["std"]
    if not math.isfinite(mean):
        return "nan"
    return f"{mean:.{d}f} +- {dev:.{d}f}" if std and stats["n"] > 1 else f"{mean:.{d}f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- timing and fusion ------------------------------------------------------------------------------------------
@dataclass
class Timed:
    fused: np.ndarray
    wall: float
    cpu: float


def timed(fn: Any, *args: Any, **kw: Any) -> Timed:
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kw)
    return Timed(np.asarray(out, dtype=np.float64), time.perf_counter() - t0, time.process_time() - c0)


def with_steps(base: Any, steps: int) -> Any:
    """The base Fuser with another step count, sharing its ONNX Runtime sessions (warm-up is paid once).

    Same fields as `Fuser(model, steps=steps)` sets: `steps` and the DDIM `plan` (eta 0)."""
    from ddrf.schedule import CosineSchedule, make_plan

    fuser = copy.copy(base)
    fuser.steps = steps
    fuser.plan = make_plan(CosineSchedule.from_dict(base.card.schedule), steps, 0.0)
    return fuser


def record(sample: Sample, method: str, fused: np.ndarray, wall: float, cpu: float | None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"image": sample.name, "protocol": sample.protocol, "method": method, "seconds": round(wall, 4),
            "cpu_seconds": None if cpu is None else round(cpu, 4), "finite_output": bool(np.isfinite(fused).all()),
            **(extra or {}), **score(sample, fused, 0)}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- environment ------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "logical_cpus": os.cpu_count(), "usable_cpus": affinity,
            "platform": platform.platform(), "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def software() -> dict[str, str]:
    from ddrf.evaluate.report import versions

    out = versions(("ddrf-edge", "numpy", "scipy", "rasterio", "matplotlib", "onnxruntime"))
    try:
        import onnxruntime

        out["onnxruntime providers"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        pass
    return out


# -- the runs ---------------------------------------------------------------------------------------------------
@dataclass
class Collected:
    reduced: list[dict[str, Any]] = field(default_factory=list)
    full: list[dict[str, Any]] = field(default_factory=list)
    spread: list[np.ndarray] = field(default_factory=list)
    err_sample: list[np.ndarray] = field(default_factory=list)
    err_mean: list[np.ndarray] = field(default_factory=list)
    per_scene: list[dict[str, Any]] = field(default_factory=list)
    cloud: dict[str, float | None] = field(default_factory=dict)
    scenes: list[str] = field(default_factory=list)
    full_settings: dict[str, Any] = field(default_factory=dict)


def run_reduced(args: argparse.Namespace, base: Any, out: Collected) -> dict[str, Any]:
    from ddrf.baselines import METHODS, fuse

    data = open_dataset(f"fusebox:{args.fusebox}", "P034R032")
    default_k = int(base.steps)
    sweep = sorted(set(args.steps) | {default_k})
    n_seeds = max([1, *args.samples, args.uncertainty])
    fusers = {k: with_steps(base, k) for k in sweep}
    warmed = False
    for sample in data.samples(REDUCED):
        number = scene_number(sample.name)
        if args.scenes and number not in args.scenes:
            continue
        out.scenes.append(sample.name)
        start = time.perf_counter()
        if not warmed:  # first ONNX Runtime run at this size plans memory: keep it out of the timings
            with_steps(base, 1).fuse(sample.pan, sample.ms, seed=0)
            warmed = True
        for name in METHODS:
            t = timed(fuse, name, sample.pan, sample.ms, sample.ratio, sample.sensor)
            out.reduced.append(record(sample, name, t.fused, t.wall, t.cpu))
        for k in sweep:
            seeds = range(n_seeds) if k == default_k else range(1)
            runs = [timed(fusers[k].fuse, sample.pan, sample.ms, seed=s) for s in seeds]
            out.reduced.append(record(sample, method_label(k), runs[0].fused, runs[0].wall, runs[0].cpu,
                                      {"steps": k, "samples": 1}))
            if k != default_k:
                continue
            for n in args.samples:
                if n > 1:
                    mean = np.mean(np.stack([r.fused for r in runs[:n]]), axis=0)
                    out.reduced.append(record(sample, method_label(k, n), mean, sum(r.wall for r in runs[:n]),
                                              sum(r.cpu for r in runs[:n]), {"steps": k, "samples": n}))
            if args.uncertainty >= 2:
                stack = np.stack([r.fused for r in runs[:args.uncertainty]])
                spread = stack.std(axis=0, ddof=1)
                err_sample = np.abs(stack[0] - sample.ref)
                err_mean = np.abs(stack.mean(axis=0) - sample.ref)
                out.spread.append(spread.astype(np.float32))
                out.err_sample.append(err_sample.astype(np.float32))
                out.err_mean.append(err_mean.astype(np.float32))
                a, b = spread_error_stats(spread, err_sample), spread_error_stats(spread, err_mean)
                out.per_scene.append({"image": sample.name, "pearson": a["pearson"], "spearman": a["spearman"],
                                      "pearson_mean": b["pearson"], "spearman_mean": b["spearman"],
                                      "mean_spread": a["mean_spread_all"], "mean_error": a["mean_error_all"]})
        log(f"reduced {sample.name}: {time.perf_counter() - start:.1f} s")
    if not out.scenes:
        raise SystemExit(f"error: no FuseBox P034R032 scenes numbered {args.scenes} in {args.fusebox}")
    return data.settings


def bqa_cloud_fraction(folder: Path, ms_rows: int, ms_cols: int) -> dict[str, float | None]:
    """High-confidence cloud (pre-collection BQA bits 14-15 == 3) per region, on the MS grid; None without BQA."""
    files = sorted(folder.glob("*_BQA.TIF")) + sorted(folder.glob("*_BQA.tif"))
    if not files:
        return {label: None for label, _ in L8_REGIONS}
    import rasterio

    with rasterio.open(files[0]) as src:
        qa = src.read(1)[:ms_rows, :ms_cols]
    cloud = ((qa >> 14) & 3) == 3
    return {label: float(cloud[slice(*rows) if rows else slice(None)].mean()) for label, rows in L8_REGIONS}


def run_full(args: argparse.Namespace, base: Any, out: Collected) -> dict[str, Any]:
    from ddrf.baselines import METHODS, fuse

    data = open_dataset(f"pairs:{args.landsat8}")
    out.full_settings = data.settings
    label = method_label(int(base.steps))
    for sample in data.samples(FULL):
        start = time.perf_counter()
        fused: dict[str, Timed] = {n: timed(fuse, n, sample.pan, sample.ms, sample.ratio, sample.sensor)
                                   for n in METHODS}
        fused[label] = timed(base.fuse, sample.pan, sample.ms, seed=0)
        for region, rows in L8_REGIONS:
            for name, t in fused.items():
                sub, image = region_sample(sample, t.fused, rows, region)
                out.full.append(record(sub, name, image, t.wall, t.cpu, {"region": region}))
        out.cloud.update(bqa_cloud_fraction(Path(args.landsat8), *sample.ms.shape[:2]))
        log(f"full {sample.name} {sample.pan.shape}: {time.perf_counter() - start:.1f} s")
    return data.settings


# -- report -----------------------------------------------------------------------------------------------------
def stats_of(records: list[dict[str, Any]], protocol: str) -> dict[str, dict[str, dict[str, Any]]]:
    return summarise(records).get(protocol, {})


def cpu_stats(records: list[dict[str, Any]], method: str) -> dict[str, Any]:
    values = np.array([r["cpu_seconds"] for r in records if r["method"] == method], dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}


def make_figure(pooled_sample: dict[str, Any], pooled_mean: dict[str, Any], uncertainty: int, steps: int,
                path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ddrf.files import write_bytes_atomic

    fig, ax = plt.subplots(figsize=(6.0, 4.5), dpi=120)
    for stats, style, name in ((pooled_sample, "o-", "single sample (what ddrf-run writes)"),
                               (pooled_mean, "s--", f"mean of {uncertainty} samples")):
        ax.plot(stats["mean_spread"], stats["mean_error"], style,
                label=f"{name}: Pearson {stats['pearson']:.2f}, Spearman {stats['spearman']:.2f}")
    top = max(max(pooled_sample["mean_spread"]), max(pooled_sample["mean_error"]))
    ax.plot([0, top], [0, top], ":", color="grey", label="|error| = spread")
    ax.set_xlabel(f"spread: std over {uncertainty} seeds (DN), mean per decile")
    ax.set_ylabel("|fused - reference| (DN), mean per spread decile")
    ax.set_title(f"DDRF K={steps}: spread vs error, held-out P034R032 (Wald, ratio 2)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def build_report(args: argparse.Namespace, env: dict[str, Any], base: Any, red_settings: dict[str, Any],
                 out: Collected, pooled: dict[str, Any] | None, wall: float) -> str:
    card = base.card
    default_k = int(base.steps)
    n_img = len(out.scenes)
    red = stats_of(out.reduced, REDUCED)
    parts: list[str] = []
    parts.append("# Bundled model quality: steps, time, uncertainty, full resolution\n")
    parts.append("Written by `benchmarks/bundled_quality.py`. Command (repository root):\n")
    parts.append("```\n" + env["command"] + "\n```\n")
    train = card.training if isinstance(getattr(card, "training", None), dict) else {}
    hashes = ", ".join(f"{k} {v[:12]}" for k, v in sorted((getattr(card, "hashes", None) or {}).items()))
    mach = env["machine"]
    parts.append("## Environment and settings\n")
    parts.append("\n".join([
        f"- Date: {env['created']}; total wall time of this run: {wall / 60:.1f} min.",
        f"- Machine: {mach['cpu']}, {mach['logical_cpus']} logical CPUs ({mach['usable_cpus']} usable), "
        f"{mach['platform']}. Load average (1/5/15 min) at start {mach['load_average_start']}, at end "
        f"{env['load_average_end']}: other jobs shared the CPUs, so seconds are indicative, not a benchmark.",
        "- Software: " + ", ".join(f"{k} {v}" for k, v in env["software"].items()) + ".",
        f"- Model: `{args.model}`: sensor {card.sensor}, ratio {card.ratio}, bands {', '.join(card.bands)}, "
        f"default steps K={card.sampling_steps}, target {card.target}, residual {card.residual}, normalisation "
        f"{card.normalisation.kind}; training iterations {train.get('iterations', '?')}; graphs {hashes or '?'}.",
        f"- Runtime: `ddrf.runtime.fuser.Fuser`, backend ort-cpu, FP32 stepwise graphs (encoder once + K denoiser "
        f"steps), ONNX Runtime threads {args.threads or 'default (all usable CPUs)'}; deterministic DDIM (eta 0); "
        "whole image per call, per-image radiometry (as `ddrf-eval`).",
        f"- Reduced resolution: `fusebox:{args.fusebox}`, acquisition P034R032, scenes {', '.join(out.scenes)}; "
        f"{red_settings.get('protocol')}, MTF gains MS {red_settings.get('mtf_ms')} / PAN "
        f"{red_settings.get('mtf_pan')} ({red_settings.get('sensor')}); LMS interp23; border crop 0 px; "
        f"Q2n/Q on {BLOCK}x{BLOCK} blocks; DN; mean +- population std over images.",
        "- Seconds: wall-clock of one `Fuser.fuse` (or baseline) call per image, after one untimed warm-up fusion "
        "on the first image; CPU seconds = process CPU time of that call (all threads). For a mean of N samples "
        "the N calls are summed.",
    ]) + "\n")

    # (1)
    parts.append(f"## 1. Held-out P034R032, reduced resolution: classical baselines and the model at K={default_k}\n")
    parts.append(f"Wald at ratio 2, no border crop, {n_img} images; the DDRF rows are seed 0 (and the mean of "
                 f"seeds). Same data, methods and scoring as `ddrf-eval fusebox:{args.fusebox} --methods "
                 f"classical,ddrf:{args.model}` (card steps).\n")
    order = [m for m in red if not m.startswith("DDRF")] + [method_label(default_k)] + \
            [method_label(default_k, n) for n in args.samples if n > 1]
    rows = [[m, *(cell(red[m][c], c) for c in REDUCED_COLS), cell(red[m]["seconds"], "seconds", False)]
            for m in order if m in red]
    parts.append(md_table(["method", "SAM (deg)", "ERGAS", "Q2n", "SCC", "Q", "PSNR (dB)", "SSIM", "s/image"],
                          rows) + "\n")

    # (2)
    parts.append("## 2. Steps vs quality vs time (ONNX Runtime CPU)\n")
    parts.append(f"Same {n_img} held-out images and protocol. One sample (seed 0) per K; 'mean of N' averages "
                 f"seeds 0..N-1 at K={default_k}, and its time is the sum of the N fusions. Image: PAN "
                 f"{'x'.join(map(str, _first_shape(out)))} px (fused grid), MS half that.\n")
    rows = []
    for k in sorted(set(args.steps) | {default_k}):
        for n in [1] + ([m for m in args.samples if m > 1] if k == default_k else []):
            m = method_label(k, n)
            if m in red:
                c = cpu_stats(out.reduced, m)
                rows.append([str(k), str(n), *(cell(red[m][x], x) for x in ("SAM", "ERGAS", "Q2n")),
                             cell(red[m]["seconds"], "seconds"), cell(c, "cpu_seconds")])
    parts.append(md_table(["K (steps)", "samples", "SAM (deg)", "ERGAS", "Q2n", "s/image (wall)",
                           "CPU s/image"], rows) + "\n")

    # (3)
    if pooled is not None:
        u = args.uncertainty
        a, b = pooled["sample"], pooled["mean"]
        parts.append("## 3. Uncertainty: does the spread track the error?\n")
        parts.append(f"Spread = per-pixel, per-band std (ddof 1) of {u} samples (seeds 0..{u - 1}, K={default_k}), "
                     f"as `ddrf-run --uncertainty {u}` writes it. Error = |fused - reference| in DN, for the single "
                     f"sample `ddrf-run` writes (seed 0) and for the mean of the {u} samples. Pooled over "
                     f"{len(out.scenes)} scenes x 4 bands x all pixels ({a['n']} values), no border crop. "
                     f"Plot: `{args.figure}`.\n")
        parts.append(md_table(["error of", "Pearson r", "Spearman rho", "mean spread (DN)", "mean \\|error\\| (DN)"], [
            ["single sample (seed 0)", f"{a['pearson']:.3f}", f"{a['spearman']:.3f}", f"{a['mean_spread_all']:.3f}",
             f"{a['mean_error_all']:.3f}"],
            [f"mean of {u}", f"{b['pearson']:.3f}", f"{b['spearman']:.3f}", f"{b['mean_spread_all']:.3f}",
             f"{b['mean_error_all']:.3f}"]]) + "\n")
        parts.append("Per scene (single sample / mean):\n")
        parts.append(md_table(["image", "Pearson", "Spearman", "Pearson (mean)", "Spearman (mean)",
                               "mean spread", "mean \\|error\\|"],
                              [[s["image"], f"{s['pearson']:.3f}", f"{s['spearman']:.3f}", f"{s['pearson_mean']:.3f}",
                                f"{s['spearman_mean']:.3f}", f"{s['mean_spread']:.3f}", f"{s['mean_error']:.3f}"]
                               for s in out.per_scene]) + "\n")
        parts.append("Binned by pooled spread decile (DN):\n")
        edges = a["edges"]
        parts.append(md_table(["decile", "spread range", "mean spread", "mean \\|error\\| sample",
                               f"mean \\|error\\| mean of {u}", "values"],
                              [[str(i + 1), f"{edges[i]:.3f} - {edges[i + 1]:.3f}", f"{a['mean_spread'][i]:.3f}",
                                f"{a['mean_error'][i]:.3f}", f"{b['mean_error'][i]:.3f}", str(a["count"][i])]
                               for i in range(len(a["count"]))]) + "\n")
        parts.append(f"![spread vs error]({Path(args.figure).name})\n")

    # (4)
    if out.full:
        full = out.full
        parts.append("## 4. Full resolution, Landsat-8 OLI L1T clip\n")
        parts.append(f"`pairs:{args.landsat8}` (B2-B5 + B8, 16-bit L1T DN, aligned through the geotransforms, MS "
                     "cropped top-left to even size), fused at its native resolution (ratio 2). D_lambda (Khan), "
                     f"D_s, HQNR with the {out.full_settings.get('sensor')} MTF gains (MS "
                     f"{out.full_settings.get('mtf_ms')} / PAN {out.full_settings.get('mtf_pan')}); QNR = classic "
                     f"(Alparone 2008). Each region is scored "
                     f"on its centred crop to a multiple of {BLOCK} px; the model row is seed 0 at K={default_k}. "
                     f"The whole-clip rows are what `ddrf-eval pairs:{args.landsat8} --mode full --methods "
                     f"classical,ddrf:{args.model}` scores. Cloud: cumulus over MS rows ~143-460 (PROVENANCE.md); "
                     "D_s and D_lambda there reflect cloud edges and shadows as much as fusion quality, so the two "
                     "clear strips are scored separately.\n")
        for region, _ in L8_REGIONS:
            mine = [r for r in full if r["region"] == region]
            if not mine:
                continue
            cloud = out.cloud.get(region)
            frac = f"; BQA high-confidence cloud {100 * cloud:.1f} % of MS pixels" if cloud is not None else ""
            parts.append(f"**{region}** (scored {mine[0]['size']} px at PAN offset {mine[0]['offset']}{frac}):\n")
            rows = [[r["method"], *(f"{r[c]:.4f}" for c in FULL_COLS), f"{r['seconds']:.2f}"] for r in mine]
            parts.append(md_table(["method", "D_lambda", "D_s", "HQNR", "QNR (classic)", "s/image (whole clip)"],
                                  rows) + "\n")
    return "\n".join(parts)


def _first_shape(out: Collected) -> tuple[int, ...]:
    size = out.reduced[0].get("size", "?x?") if out.reduced else "?x?"
    return tuple(int(x) for x in size.split("x")) if "?" not in size else (0, 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("ddrf/assets/models/landsat_ratio2"),
                        help="exported model directory")
    parser.add_argument("--fusebox", type=Path, required=True, help="landsat7_fusebox folder")
    parser.add_argument("--landsat8", type=Path, default=None, help="Landsat-8 clip folder (l8_B2..B5, l8_B8)")
    parser.add_argument("--out", type=Path, required=True, help="markdown report to write")
    parser.add_argument("--figure", type=Path, default=None, help="PNG (default: uncertainty.png beside --out)")
    parser.add_argument("--json", type=Path, default=None, help="also write every per-image record as JSON")
    parser.add_argument("--scenes", default="1-6", help="FuseBox P034R032 scene numbers, e.g. 1-6 or 1,2")
    parser.add_argument("--steps", default="1,2,4,8,25", help="K values of the sweep (one sample each)")
    parser.add_argument("--samples", default="4,8", help="N values averaged at the default K")
    parser.add_argument("--uncertainty", type=int, default=8, help="seeds for the spread (0 = skip section 3)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    try:
        args.scenes, args.steps = parse_ints(args.scenes), parse_ints(args.steps)
        args.samples = parse_ints(args.samples)
    except ValueError as exc:
        parser.error(str(exc))
    if args.uncertainty == 1 or args.uncertainty < 0:
        parser.error("--uncertainty needs at least 2 seeds (or 0 to skip)")
    args.figure = args.figure or args.out.with_name("uncertainty.png")
    from ddrf.files import check_outputs

    try:
        check_outputs({"--out": args.out, "--figure": args.figure if args.uncertainty else None, "--json": args.json},
                      args.overwrite, [args.model, args.fusebox, *([args.landsat8] if args.landsat8 else [])])
    except ValueError as exc:
        parser.error(str(exc))
    for path in (args.out, args.figure, args.json):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    from ddrf.files import write_text_atomic
    from ddrf.runtime.fuser import Fuser

    t0 = time.perf_counter()
    env: dict[str, Any] = {"command": shlex.join(["python", "benchmarks/bundled_quality.py", *(argv if argv is not None
                                                                             else sys.argv[1:])]),
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "software": software()}
    base = Fuser(args.model, backend="ort-cpu", threads=args.threads)
    out = Collected()
    red_settings = run_reduced(args, base, out)
    pooled = None
    if args.uncertainty >= 2:
        spread = np.concatenate([s.ravel() for s in out.spread])
        pooled = {"sample": spread_error_stats(spread, np.concatenate([e.ravel() for e in out.err_sample])),
                  "mean": spread_error_stats(spread, np.concatenate([e.ravel() for e in out.err_mean]))}
        make_figure(pooled["sample"], pooled["mean"], args.uncertainty, int(base.steps), args.figure)
    if args.landsat8 is not None:
        run_full(args, base, out)
    env["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    wall = time.perf_counter() - t0
    write_text_atomic(args.out, build_report(args, env, base, red_settings, out, pooled, wall))
    if args.json is not None:
        write_text_atomic(args.json, json.dumps({"env": env, "reduced": out.reduced, "full": out.full,
                                                 "uncertainty": pooled, "per_scene": out.per_scene}, indent=1,
                                                default=str))
    log(f"wrote {args.out}" + (f" and {args.figure}" if args.uncertainty else "") + f" in {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
