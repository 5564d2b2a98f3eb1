"""Fine-tuning curve on the Landsat-8 clip: train on one clear strip, score on the other, after each time budget.

    PYTHONPATH=. python benchmarks/finetune_curve.py --clip ../shared/data/landsat8_l1t_clip --out runs/finetune_curve \\
        [--minutes 5,20,60] [--model landsat_ratio2] [--threads 2] [--json runs/finetune_curve.json]

The clip (LC80200392015216LGN00, never seen by the bundled models) has cumulus over MS rows ~143-460; its clear rows
0-142 (top) and 461-602 (bottom) are written as two scene directories with their own geotransforms (blue, green,
red, NIR and PAN, Landsat file names, so ddrf-run's discovery reads them). `ddrf-finetune` trains on the top strip
in chunks (--minutes, then --resume) until each cumulative budget; after each, the exported model, the base model
and every classical method are scored by `ddrf-eval pairs:` on the bottom strip (Wald's protocol at ratio 2, through
ddrf-run's tiled path, border 0). Wall-clock minutes of training only; evaluation and export are not counted.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import rasterio
from rasterio.windows import Window

from ddrf.files import write_text_atomic

STEM = "LC80200392015216LGN00"
BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")  # every reflective band: models take theirs, ddrf-eval --bands picks
CLEAR_MS_ROWS = {"top": (0, 143), "bottom": (461, 603)}  # end exclusive, from the clip's PROVENANCE.md
METRICS = ("SAM", "ERGAS", "Q2n", "PSNR")


def write_strip(clip: Path, rows: tuple[int, int], out: Path) -> Path:
    """MS rows [a, b) and the PAN rows covering them (the PAN origin is half a PAN pixel up-left of the MS's)."""
    scene = out / STEM
    scene.mkdir(parents=True, exist_ok=True)
    a, b = rows
    for band in (*BANDS, "B8"):
        src_path = clip / f"l8_{band}.tif"
        with rasterio.open(src_path) as src:
            window = Window(0, 2 * a, src.width, 2 * (b - a) + 1) if band == "B8" else Window(0, a, src.width, b - a)
            window = window.intersection(Window(0, 0, src.width, src.height))
            profile = {**src.profile, "height": int(window.height), "width": int(window.width),
                       "transform": src.window_transform(window), "compress": "deflate"}
            with rasterio.open(scene / f"{STEM}_{band}.TIF", "w", **profile) as dst:
                dst.write(src.read(window=window))
    return scene


def evaluate(strip: Path, methods: str, json_path: Path) -> dict[str, dict[str, float]]:
    subprocess.run(["ddrf-eval", f"pairs:{strip}", "--methods", methods, "--mode", "reduced", "--json",
                    str(json_path), "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    summary = json.loads(json_path.read_text())["summary"]["reduced"]
    return {method: {m: stats[m]["mean"] for m in METRICS} for method, stats in summary.items()}


def finetune(scene: Path, run: Path, model: str, minutes: float, resume: bool, threads: int) -> dict[str, Any]:
    command = ["ddrf-finetune", str(scene), "--out", str(run), "--model", model, "--minutes", f"{minutes:g}",
               "--threads", str(threads), "--steps", "100000"]
    subprocess.run(command + (["--resume"] if resume else ["--overwrite"]), check=True)
    card = json.loads((run / "model" / "card.json").read_text())
    return {"steps": card["training"]["iterations"], "command": " ".join(command)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", default="5,20,60", help="cumulative training budgets")
    parser.add_argument("--model", default="landsat_ratio2", help="base: bundled name or model directory")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    budgets = sorted(float(m) for m in args.minutes.split(","))
    strips = {name: write_strip(args.clip, rows, args.out / f"strip_{name}") for name, rows in CLEAR_MS_ROWS.items()}
    from ddrf.bundled import bundled_models

    named = {m.name: m.path for m in bundled_models()}
    base = named.get(args.model, Path(args.model))
    rows = {"before": evaluate(strips["bottom"], f"classical,ddrf:{base}", args.out / "eval_base.json")}
    print(_line("before", rows["before"]), file=sys.stderr)
    run, spent, runs = args.out / "run", 0.0, {}
    for budget in budgets:
        runs[budget] = finetune(strips["top"], run, str(base), budget - spent, spent > 0, args.threads)
        spent = budget
        scores = evaluate(strips["bottom"], f"ddrf:{run / 'model'}", args.out / f"eval_{budget:g}min.json")
        rows[f"{budget:g} min"] = scores
        print(_line(f"{budget:g} min ({runs[budget]['steps']} steps)", scores), file=sys.stderr)
    result = {"base": str(base), "train_strip": "top (MS rows 0-142)", "test_strip": "bottom (MS rows 461-602)",
              "threads": args.threads, "scores": rows, "runs": {f"{k:g}": v for k, v in runs.items()}}
    print(table(result))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=1))


def _ddrf(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    return next(v for k, v in scores.items() if k.startswith("DDRF"))  # ddrf-eval names it DDRF[<model dir>]


def _line(label: str, scores: dict[str, dict[str, float]]) -> str:
    s = _ddrf(scores)
    return f"{label}: SAM {s['SAM']:.3f} ERGAS {s['ERGAS']:.3f} Q2n {s['Q2n']:.4f} PSNR {s['PSNR']:.2f}"


def table(result: dict[str, Any]) -> str:
    before = result["scores"]["before"]
    classical = {k: v for k, v in before.items() if not k.startswith("DDRF")}
    lines = ["| method | steps | SAM | ERGAS | Q2n | PSNR |", "|---|---|---|---|---|---|"]
    best = {m: (min if m in ("SAM", "ERGAS") else max)(v[m] for v in classical.values()) for m in METRICS}
    lines.append("| best classical (each metric) | - | " + " | ".join(_f(m, best[m]) for m in METRICS) + " |")
    base = _ddrf(before)
    lines.append("| bundled model, not fine-tuned | 0 | " + " | ".join(_f(m, base[m]) for m in METRICS) + " |")
    for budget, run in result["runs"].items():
        scores = _ddrf(result["scores"][f"{budget} min"])
        lines.append(f"| fine-tuned {budget} min | {run['steps']} | " + " | ".join(_f(m, scores[m]) for m in METRICS)
                     + " |")
    return "\n".join(lines)


def _f(metric: str, value: float) -> str:
    return f"{value:.4f}" if metric == "Q2n" else f"{value:.3f}" if metric != "PSNR" else f"{value:.2f}"


if __name__ == "__main__":
    main()
