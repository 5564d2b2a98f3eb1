"""The torch reference path (TorchEngine: `ddrf-eval ckpt:`, design runs) with and without the output margin.

    PYTHONPATH=. python benchmarks/torch_margin.py [--checkpoint ddrf/assets/models/landsat_ratio2/model.safetensors]
        [--dataset fusebox:../shared/data/landsat7_fusebox] [--tile 704] [--reps 2]

One held-out image (the first of P034R032, reduced protocol) through ddrf-run's windows and blend, whole windows
(`crop=False`) and cropped alternately, two torch threads; prints each wall time and the largest difference in DN.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ddrf.evaluate.datasets import REDUCED, open_dataset
from ddrf.evaluate.methods import parse_methods
from ddrf.scenes.arrays import ArrayScene
from ddrf.train.tiled import TorchEngine, fuse_tiled


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="ddrf/assets/models/landsat_ratio2/model.safetensors")
    p.add_argument("--dataset", default="fusebox:../shared/data/landsat7_fusebox")
    p.add_argument("--tile", type=int, default=704)
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args()
    (method,) = parse_methods(f"ckpt:{args.checkpoint}")
    model, card = method.load()
    torch.set_num_threads(2)
    sample = next(iter(open_dataset(args.dataset, "P034R032").samples(REDUCED)))
    scene = ArrayScene(sample.pan, sample.ms, sample.ratio)
    out = {}
    for _ in range(args.reps):
        for crop in (False, True):
            start = time.perf_counter()
            out[crop] = fuse_tiled(TorchEngine(model, card, card.sampling_steps, crop=crop), scene, args.tile)
            print(f"crop={crop}: {time.perf_counter() - start:.2f} s", flush=True)
    print(f"max |difference| {float(np.abs(out[True] - out[False]).max()):.3g} DN")


if __name__ == "__main__":
    main()
