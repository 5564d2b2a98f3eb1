"""How far a window edge reaches into the output: random-weight models through ddrf-run's tiling.

    PYTHONPATH=. python benchmarks/receptive_field.py v1 1,2,2,4 1,2,4 1,4 1,2
    PYTHONPATH=. python benchmarks/receptive_field.py --halos 32,48,64 1,2:s2:w24

Each argument is `v1` (the bundled topology, `DDRFConfig.small`) or the channel multipliers of a v2 model
(`DDRFConfig.small_v2` with those levels), optionally followed by `:sN` (the network folded N x N,
`space_to_depth`) and `:wN` (base width). A 256 x 256 smooth random scene (ratio 2, 4 bands) is fused with K = 1
through ddrf.scenes' windows (feathered blend; each halo h of `--halos`, default 32, with windows of 2h + 64) and as one window over
the whole scene; printed:
the worst band's p99 and max |difference| in % of that band's std. Random weights include the zero-initialised
output and modulation convs (std 0.05), so no path is silent; trained weights usually listen less far.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ddrf.card import ModelCard, Normalisation
from ddrf.model import DDRFConfig
from ddrf.scenes.arrays import ArrayScene, tile_differences
from ddrf.train.tiled import TorchEngine, fuse_tiled, random_model


def config(spec: str) -> DDRFConfig:
    if spec == "v1":
        return DDRFConfig.small(4)
    mults, *options = spec.split(":")
    overrides = {{"s": "space_to_depth", "w": "base_width"}[o[0]]: int(o[1:]) for o in options}
    return DDRFConfig.from_dict({**DDRFConfig.small_v2(4).to_dict(), "channel_mults": [int(c) for c in mults.split(",")],
                                 **overrides})


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    size = 256
    pan = gaussian_filter(rng.random((size, size)), 2) * 1000
    ms = np.stack([gaussian_filter(rng.random((size // 2, size // 2)), 1.5) * 800 + 100 * b for b in range(4)], -1)
    scene = ArrayScene(pan, ms, 2)
    args = sys.argv[1:]
    halos = [32]
    if args[:1] == ["--halos"]:
        halos, args = [int(h) for h in args[1].split(",")], args[2:]
    for spec in args:
        cfg = config(spec)
        card = ModelCard(model=cfg.to_dict(), bands=["b1", "b2", "b3", "b4"], ratio=2,
                         normalisation=Normalisation(kind="scene"))
        engine = TorchEngine(random_model(cfg), card, steps=1)
        for halo in halos:
            whole = fuse_tiled(engine, scene, tile=4096, halo=halo)  # the same halo: the same padding at the edges
            tile = 2 * halo + 64  # 128 at halo 32, as before; 64 pixels kept per window
            figures = tile_differences({tile: fuse_tiled(engine, scene, tile=tile, halo=halo)}, whole)[tile]
            print(f"{spec}, halo {halo}: p99 {100 * figures['p99']:.2f} %, max {100 * figures['max']:.2f} % of band std",
                  flush=True)


if __name__ == "__main__":
    main()
