"""Can an unscaled model's steps pay if only the sampler's timesteps move? A screening, no training.

Training with the residual scaled by b is, for the network's input, the same chain as the unscaled one with every
log-SNR raised by 2 log b. So an unscaled model (the ratio-2 default) could be sampled on timesteps whose log-SNR
is shifted that way: K = 2 then takes its second step at t ~ 55 instead of 499 (b = 10.22, `auto` on the ratio-2
training pairs). Each run is K steps x N samples of the torch model through ddrf-run's windows (design_runs.mean_scores),
scored on the held-out P034R032 images (Wald, ratio 2):

    PYTHONPATH=. python benchmarks/shifted_schedule.py ddrf/assets/models/landsat_ratio2/model.safetensors \
        --runs 1:1,10.22:2,3:2,1:2 --samples 1,8

(`B:K`: the card's `schedule.sampling_shift` set to 2 log B, K steps; B = 1 is the trailing spacing itself.
`ddrf-export onnx --sampling-shift` records and bakes such a shift into an exported model.)
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ddrf.schedule import CosineSchedule
from ddrf.train.checkpoint import load_checkpoint
from design_runs import held_out, mean_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--runs", default="1:1,10.22:2")
    ap.add_argument("--samples", default="1")
    ap.add_argument("--data", default="../shared/data/landsat7_fusebox")
    ap.add_argument("--tile", type=int, default=704)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, card = load_checkpoint(a.checkpoint)
    images = held_out(a.data, 2)
    for run in a.runs.split(","):
        scale, steps = float(run.split(":")[0]), int(run.split(":")[1])
        card.schedule = {**card.schedule, "sampling_shift": float(2 * np.log(scale))}  # what the engine samples on
        print(f"shift 2 log {scale}, K = {steps}: timesteps "
              f"{CosineSchedule.from_dict(card.schedule).sampler_timesteps(steps)}")
        for samples in (int(n) for n in a.samples.split(",")):
            m = mean_scores(model, card, images, steps, 2, a.tile, samples)
            print(f"  N = {samples}: SAM {m['SAM']:.4f} ERGAS {m['ERGAS']:.4f} Q2n {m['Q2n']:.4f} "
                  f"({m['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
