"""Score training runs on held-out P034R032 through the runtime's tiled path, and measure their tile dependence.

    PYTHONPATH=. python benchmarks/design_runs.py runs/A runs/B --data /work/shared/data/landsat7_fusebox \
        --steps 1,2,4 --json out.json

Each run (a run directory or .safetensors, EMA weights) fuses every held-out image at reduced resolution (Wald,
ratio 2; or ratio 4 simulated from the ratio-2 pairs with --ratio 4) through ddrf.scenes' windows, halo and blend
(--tile, 256 by default; the card's halo) with the torch sampler, K steps from the same keyed noise as the
runtime; SAM / ERGAS / Q2n (toolbox definitions, crop 0) are averaged over images. Tile dependence: on the first
image, the fused output with tiles 128 and 256 (those with room inside the halo) against one window over the whole
image, as the worst band's p99 and max |difference| in % of that band's std (K = 1).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ddrf.evaluate.datasets import open_dataset
from ddrf.metrics import reduced_resolution_metrics
from ddrf.filters import wald_simulate_ratio
from ddrf.train.checkpoint import load_checkpoint
from ddrf.scenes.arrays import ArrayScene, tile_differences
from ddrf.train.tiled import TorchEngine, fuse_tiled


def held_out(data: str, ratio: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, pan, ms, reference) of each held-out image at reduced resolution."""
    ds = open_dataset(f"fusebox:{data}", "P034R032")
    if ratio == 2:
        return [(s.name, s.pan, s.ms, s.ref) for s in ds.samples("reduced") if s.ref is not None]
    out = []
    for s in ds.samples("full"):  # the original pair: simulate the ratio-4 sensor from it
        pan, ms_lr, ref = wald_simulate_ratio(s.pan, s.ms, s.sensor, ratio)
        out.append((s.name, pan, ms_lr, ref))
    return out


def mean_scores(model, card, images: list, steps: int, ratio: int, tile: int, samples: int = 1) -> dict:
    """SAM, ERGAS and Q2n of the N-sample mean at K steps, averaged over `images`, and the seconds it took."""
    engine = TorchEngine(model, card, steps=steps, samples=samples)
    start, rows = time.perf_counter(), []
    for _, pan, ms, ref in images:
        fused = fuse_tiled(engine, ArrayScene(pan, ms, ratio), tile=tile)
        m = reduced_resolution_metrics(fused, ref, ratio)
        rows.append([m["SAM"], m["ERGAS"], m["Q2n"]])
    mean = np.mean(rows, axis=0)
    return {"SAM": float(mean[0]), "ERGAS": float(mean[1]), "Q2n": float(mean[2]),
            "seconds": time.perf_counter() - start}


def score(run: str, images: list, steps: list[int], ratio: int, tile: int, tiles: bool = True) -> dict:
    model, card = load_checkpoint(run)
    if card.ratio != ratio:
        raise SystemExit(f"{run}: the model fuses ratio {card.ratio}, the images are ratio {ratio}")
    result: dict = {"run": run, "arch": card.model.get("arch", "v1"), "residual_scale": card.residual_scale,
                    "iterations": card.training.get("iterations"), "scores": {}}
    for k in steps:
        result["scores"][k] = mean_scores(model, card, images, k, ratio, tile)
        print(run, f"K={k}", {n: round(v, 4) for n, v in result["scores"][k].items()}, flush=True)
    if not tiles:
        return result
    _, pan, ms, _ = images[0]
    engine = TorchEngine(model, card, steps=1)
    scene = ArrayScene(pan, ms, ratio)
    whole = fuse_tiled(engine, scene, tile=4096)
    tiles = [t for t in (128, 256) if t > 2 * engine.halo]  # a tile inside two halos keeps nothing: ddrf-run refuses it
    if len(tiles) < 2:
        print(run, f"tile dependence: tile 128 skipped, no room inside the card's halo of {engine.halo}", flush=True)
    figures = tile_differences({t: fuse_tiled(engine, scene, tile=t) for t in tiles}, whole)
    result["tiles"] = {t: {n: 100 * v for n, v in f.items()} for t, f in figures.items()}
    print(run, "tile |diff| % of band std", result["tiles"], flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", default="/work/shared/data/landsat7_fusebox")
    ap.add_argument("--steps", default="1,2,4")
    ap.add_argument("--ratio", type=int, default=2)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--images", type=int, default=0, help="only the first N held-out images (0: all six)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-tiles", action="store_true", help="skip the tile-dependence figures")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    images = held_out(a.data, a.ratio)
    images = images[: a.images] if a.images else images
    steps = [int(k) for k in a.steps.split(",") if k]
    results = [score(r, images, steps, a.ratio, a.tile, not a.no_tiles) for r in a.runs]
    if a.json:
        Path(a.json).write_text(json.dumps({"images": [i[0] for i in images], "tile": a.tile, "ratio": a.ratio,
                                            "results": results}, indent=2))


if __name__ == "__main__":
    main()
