"""Steps x samples through the tiled path: quality of the N-sample mean, time, and how well the spread predicts the error.

    PYTHONPATH=. python benchmarks/steps_samples.py ddrf:runs/v2_ratio2/model \\
        [--dataset fusebox:/work/shared/data/landsat7_fusebox] [--acquisitions P034R032] [--simulate-ratio 4] \\
        [--bands blue,green,red,nir] [--images N] [--steps 1,2,4,8] [--samples 1,4,8] [--tile T] \\
        [--backend ort-cpu] [--json out.json] [--views] [--write-calibration | --calibration C]

MODEL is `ddrf:DIR` (ONNX, torch-free runtime) or `ckpt:PATH` (torch). Every image is fused through ddrf-run's
windows, halo and blend (ddrf-eval's methods, `Tiling`) at the reduced protocol (Wald, or the simulated ratio); for
each K the max-N seeds 0..N-1 are drawn once and the first N of them averaged for each N. Per (K, N), means over the
images: SAM, ERGAS, Q2n of the N-sample mean (ddrf-eval's toolbox scoring, border 0), seconds per megapixel for N
samples (N x the measured seconds per sample), and for N >= 4 the spread (std over the N samples, ddof 1, DN, what
`ddrf-run --uncertainty N` writes) against |mean - reference| per pixel and band: coverage of the +-2 sigma interval
and Spearman's rank correlation. Calibration: c = the factor that gives c x (2 sigma) 95 % coverage on the first image,
and the coverage it gives on the other images (none when only one image is used); `--calibration C` also gives the
coverage of a c fitted elsewhere (another band set, dataset or sensor) on every image, fitted at the largest N and
carried to each N as ddrf-run carries a card's (`ModelCard.spread_factor`). `--views`: the N samples are views of
each window (`ddrf-run --ensemble N`), and `--write-calibration` writes the card's `spread_calibration_views`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ddrf.card import samples_factor
from ddrf.evaluate.datasets import REDUCED, Sample, open_dataset
from ddrf.evaluate.methods import Tiling, parse_methods
from ddrf.evaluate.runner import score
from ddrf.evaluate.spread import calibrate, spread_figures, store_factor
from ddrf.files import write_text_atomic


def ints(text: str) -> list[int]:
    return sorted({int(v) for v in text.split(",") if v.strip()})


def evaluate_image(method: Any, sample: Sample, sample_counts: list[int]) -> tuple[dict[int, dict[str, Any]], float]:
    """{N: scores (and spread figures)} of one image, and seconds per sample per megapixel."""
    assert sample.ref is not None, "reduced-resolution samples carry their reference"
    start = time.perf_counter()
    draws = method.fuse_samples(sample)
    seconds_per_mp = (time.perf_counter() - start) / len(draws) / (sample.pan.size / 1e6)
    out = {}
    for n in sample_counts:
        mean = np.mean(np.stack(draws[:n]), axis=0)
        scores = score(sample, mean, border=0)
        out[n] = {k: scores[k] for k in ("SAM", "ERGAS", "Q2n")}
        if n >= 4:
            out[n].update(spread_figures(draws[:n], sample.ref))
    return out, seconds_per_mp


def run(args: argparse.Namespace, log: Any = lambda s: print(s, file=sys.stderr)) -> dict[str, Any]:
    data = open_dataset(args.dataset, args.acquisitions, simulate_ratio=args.simulate_ratio, bands=args.bands)
    images = list(data.samples(REDUCED))[: args.images] if args.images else list(data.samples(REDUCED))
    tiling = Tiling(tile=args.tile, views=args.views)
    rows, settings = [], {}
    for k in args.steps:
        (method,) = parse_methods(args.model, steps=k, samples=max(args.samples), backend=args.backend,
                                  tiling=tiling)
        settings = method.settings()
        per_image = []
        for sample in images:
            per_image.append(evaluate_image(method, sample, args.samples))
            log(f"K={k} {sample.name} done")
        for n in args.samples:
            figures = [fig[n] for fig, _ in per_image]
            row: dict[str, Any] = {"K": k, "N": n, **{m: float(np.mean([f[m] for f in figures]))
                                                    for m in ("SAM", "ERGAS", "Q2n")},
                                   "seconds_per_mp": n * float(np.mean([s for _, s in per_image]))}
            if n >= 4:
                row.update({m: float(np.mean([f[m] for f in figures])) for m in ("coverage_2sigma", "spearman")})
                row["calibration"] = calibrate([f["z"] for f in figures])
                if args.calibration is not None:  # a c fitted elsewhere (another band set, dataset or sensor)
                    c = args.calibration * samples_factor(max(args.samples), n)  # as ddrf-run applies a card's c
                    row["coverage_with_given_c"] = float(np.mean([np.mean(f["z"] <= c) for f in figures]))
            rows.append(row)
    return {"command": " ".join(sys.argv), "dataset": data.spec, "data": data.settings, "images": [s.name for s in images],
            "ratio": images[0].ratio, "model": {k: v for k, v in settings.items() if k not in ("steps", "samples",
                                                                                              "seeds")},
            "border": 0, "spread": "std over the N samples, ddof 1, DN", "given_c": args.calibration,
            "views": args.views, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"{len(result['images'])} image(s) of {result['dataset']}, ratio {result['ratio']}, "
             f"{result['model'].get('fusion_path', '')}, tile {result['model'].get('tile', '-')}",
             "", "| K | N | SAM | ERGAS | Q2n | s/MP | coverage ±2σ | Spearman | c (95 %) | coverage with c, held out |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cal = r.get("calibration")
        held = cal["coverage_held_out"] if cal else None
        lines.append(f"| {r['K']} | {r['N']} | {r['SAM']:.3f} | {r['ERGAS']:.3f} | {r['Q2n']:.4f} | "
                     f"{r['seconds_per_mp']:.1f} | " + (f"{100 * r['coverage_2sigma']:.1f} % | {r['spearman']:.3f} | "
                                                       f"{cal['c']:.2f} | " if cal else "- | - | - | ")
                     + (f"{100 * held:.1f} % |" if held is not None else "- |"))
    given = [r for r in result["rows"] if "coverage_with_given_c" in r]
    if given:
        fitted_at = max(r["N"] for r in result["rows"])
        lines += ["", f"coverage of c x 2 sigma with c = {result['given_c']} at N = {fitted_at}, "
                  "carried to each N (all images): "
                  + ", ".join(f"K={r['K']} N={r['N']}: {100 * r['coverage_with_given_c']:.1f} %" for r in given)]
    return "\n".join(lines)


def write_calibration(model: str, result: dict[str, Any]) -> str:
    """Store on the card (atomically) the c fitted at the card's own step count: at the largest N for seeds
    (Student's t carries it to other N), at every N for views (nothing carries it)."""
    from ddrf.card import read_card

    kind, _, folder = model.partition(":")
    if kind != "ddrf":
        raise SystemExit("steps_samples: error: --write-calibration needs a ddrf:MODEL_DIR")
    card = read_card(Path(folder) / "card.json")
    rows = [r for r in result["rows"] if r["K"] == card.sampling_steps and "calibration" in r]
    if not rows:
        raise SystemExit(f"steps_samples: error: no row at the card's K={card.sampling_steps} with N >= 4")
    slot = "spread_calibration_views" if result["views"] else "spread_calibration"
    lines = []
    for row in sorted(rows, key=lambda r: r["N"]) if result["views"] else [max(rows, key=lambda r: r["N"])]:
        c = store_factor(folder, row["calibration"]["c"], row["N"], row["K"], views=result["views"])
        lines.append(f"{Path(folder) / 'card.json'}: {slot} = {c} (K={row['K']}, N={row['N']})")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="ddrf:MODEL_DIR or ckpt:PATH")
    p.add_argument("--dataset", default="fusebox:/work/shared/data/landsat7_fusebox")
    p.add_argument("--acquisitions", default="P034R032")
    p.add_argument("--simulate-ratio", type=int, default=None)
    p.add_argument("--bands", type=lambda t: [b.strip() for b in t.split(",") if b.strip()], default=None,
                   help="MS bands to fuse and score, as ddrf-eval --bands (a band-wise model takes any set)")
    p.add_argument("--images", type=int, default=None, help="use the first N images")
    p.add_argument("--steps", type=ints, default=[1, 2, 4, 8])
    p.add_argument("--samples", type=ints, default=[1, 4, 8])
    p.add_argument("--tile", type=int, default=None, help="window side (default: ddrf-run's for the backend)")
    p.add_argument("--backend", default="ort-cpu")
    p.add_argument("--views", action="store_true", help="the samples are views of each window (ddrf-run --ensemble)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--calibration", type=float, default=None,
                   help="also give the coverage of c x 2 sigma on every image for this c (e.g. the card's), fitted "
                        "at the largest --samples and carried to each N as ddrf-run does (ModelCard.spread_factor)")
    p.add_argument("--write-calibration", action="store_true",
                   help="ddrf: only: write c (the card's K; the largest N, or with --views every N) into the "
                        "model's card.json as spread_calibration(_views), which ddrf-run --uncertainty applies")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    try:
        result = run(args)
    except ValueError as exc:
        sys.exit(f"steps_samples: error: {exc}")
    print(markdown(result))
    if args.write_calibration:
        print(write_calibration(args.model, result))
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
