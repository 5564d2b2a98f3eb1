"""How high can Spearman(predicted sigma, |error|) go? Issue 9 asks >= 0.5 of the N-sample spread.

    PYTHONPATH=. python benchmarks/spread_ceiling.py [MODEL] [--images 2] [--steps 2] [--samples 8] [--ratio 4]

Per held-out image (P034R032 at ratio 2, or ratio 4 simulated; through ddrf-eval's tiled path), rank correlations
with the per-pixel |N-sample mean - reference|:
- the N-sample spread itself, and pooled over k x k neighbourhoods (the variance averaged: a less noisy estimate);
- the 3 x 3 pooled spread combined with the local structure (log-linear in it and in the 5 x 5 RMS of the detail the
  model added, |mean - LMS|, of the PAN's and of the LMS's high-pass), fitted on the first image by least squares of
  log |error|: what the inputs add to the spread;
- an oracle that knows the error: its own local RMS over the k x k neighbours, the centre pixel left out. No spread
  can rank |error| better than the error's own neighbourhood does, so this is about the ceiling of the goal;
- per pixel rather than per pixel and band: the spread's RMS over the bands against the error vector's RMS (one
  value per location, its draw noise averaged over the bands).
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter, uniform_filter
from scipy.stats import spearmanr

from ddrf.evaluate.datasets import REDUCED, open_dataset
from ddrf.evaluate.methods import parse_methods
from ddrf.filters import interp23


def rank(predictor: np.ndarray, error: np.ndarray) -> float:
    return float(spearmanr(predictor.ravel(), error.ravel()).statistic)


def local_rms(x: np.ndarray, k: int) -> np.ndarray:
    return np.sqrt(uniform_filter(x ** 2, size=(k, k, 1), mode="reflect"))


def structure(variance: np.ndarray, mean: np.ndarray, pan: np.ndarray, lms: np.ndarray) -> np.ndarray:
    """(pixels, 5): log of the pooled spread, the added detail, the PAN's and the LMS's detail; and a constant."""
    pan = np.broadcast_to((pan if pan.ndim == 3 else pan[..., None])[..., :1], mean.shape)
    def detail(x: np.ndarray) -> np.ndarray:
        return local_rms(x - gaussian_filter(x, (1.5, 1.5, 0)), 5)

    features = [np.sqrt(uniform_filter(variance, size=(3, 3, 1), mode="reflect")), local_rms(mean - lms, 5),
                detail(pan), detail(lms)]
    return np.stack([np.log(f.ravel() + 1e-3) for f in features] + [np.ones(mean.size)], axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="ddrf/assets/models/landsat_ratio4")
    p.add_argument("--dataset", default="fusebox:../shared/data/landsat7_fusebox")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--ratio", type=int, choices=(2, 4), default=4, help="2: the pairs as they are; 4: simulated")
    args = p.parse_args()
    data = open_dataset(args.dataset, "P034R032", simulate_ratio=4 if args.ratio == 4 else None)
    method: Any = parse_methods(f"ddrf:{args.model}", steps=args.steps, samples=args.samples)[0]
    samples = (s for s in data.samples("reduced") if s.protocol == REDUCED)
    weights = None
    for _, sample in zip(range(args.images), samples):
        draws = np.stack(method.fuse_samples(sample))
        variance, error = draws.var(axis=0, ddof=1), np.abs(draws.mean(axis=0) - sample.ref)
        lms = interp23(sample.ms.astype(np.float64), sample.ratio, border="symmetric")
        features = structure(variance, draws.mean(axis=0), sample.pan.astype(np.float64), lms)
        if weights is None:  # fitted on the first image, applied to it and to the others
            weights = np.linalg.lstsq(features, np.log(error.ravel() + 1e-2), rcond=None)[0]
        pooled = {k: rank(np.sqrt(uniform_filter(variance, size=(k, k, 1), mode="reflect")), error)
                  for k in (3, 5, 9)}
        oracle = {}
        for k in (3, 5, 9):
            n = k * k
            local = (uniform_filter(error ** 2, size=(k, k, 1), mode="reflect") * n - error ** 2) / (n - 1)
            oracle[k] = rank(np.sqrt(local), error)
        print(f"{sample.name}: spread {rank(np.sqrt(variance), error):.3f}; pooled "
              + ", ".join(f"{k}x{k} {v:.3f}" for k, v in pooled.items())
              + f"; with the structure {rank(features @ weights, error):.3f}; oracle "
              + ", ".join(f"{k}x{k} {v:.3f}" for k, v in oracle.items())
              + f"; per pixel {rank(np.sqrt(variance.mean(axis=-1)), np.sqrt((error ** 2).mean(axis=-1))):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
