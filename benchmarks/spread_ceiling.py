"""How high can Spearman(predicted sigma, |error|) go? Issue 9 asks >= 0.5 of the N-sample spread.

    PYTHONPATH=. python benchmarks/spread_ceiling.py [MODEL] [--images 2] [--steps 2] [--samples 8]

Per held-out image (P034R032, ratio 4 simulated, through ddrf-eval's tiled path), two rank correlations with the
per-pixel |N-sample mean - reference|:
- the N-sample spread itself, and pooled over k x k neighbourhoods (the variance averaged: a less noisy estimate);
- an oracle that knows the error: its own local RMS over the k x k neighbours, the centre pixel left out. No spread
  can rank |error| better than the error's own neighbourhood does, so this is about the ceiling of the goal.
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.stats import spearmanr

from ddrf.evaluate.datasets import REDUCED, open_dataset
from ddrf.evaluate.methods import parse_methods


def rank(predictor: np.ndarray, error: np.ndarray) -> float:
    return float(spearmanr(predictor.ravel(), error.ravel()).statistic)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="ddrf/assets/models/landsat_ratio4")
    p.add_argument("--dataset", default="fusebox:../shared/data/landsat7_fusebox")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--samples", type=int, default=8)
    args = p.parse_args()
    data = open_dataset(args.dataset, "P034R032", simulate_ratio=4)
    method: Any = parse_methods(f"ddrf:{args.model}", steps=args.steps, samples=args.samples)[0]
    samples = (s for s in data.samples("reduced") if s.protocol == REDUCED)
    for _, sample in zip(range(args.images), samples):
        draws = np.stack(method.fuse_samples(sample))
        variance, error = draws.var(axis=0, ddof=1), np.abs(draws.mean(axis=0) - sample.ref)
        pooled = {k: rank(np.sqrt(uniform_filter(variance, size=(k, k, 1), mode="reflect")), error)
                  for k in (3, 5, 9)}
        oracle = {}
        for k in (3, 5, 9):
            n = k * k
            local = (uniform_filter(error ** 2, size=(k, k, 1), mode="reflect") * n - error ** 2) / (n - 1)
            oracle[k] = rank(np.sqrt(local), error)
        print(f"{sample.name}: spread {rank(np.sqrt(variance), error):.3f}; pooled "
              + ", ".join(f"{k}x{k} {v:.3f}" for k, v in pooled.items()) + "; oracle "
              + ", ".join(f"{k}x{k} {v:.3f}" for k, v in oracle.items()), flush=True)


if __name__ == "__main__":
    main()
