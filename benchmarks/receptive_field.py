"""How far a window edge reaches into the output: random-weight models through ddrf-run's tiling.

    PYTHONPATH=. python benchmarks/receptive_field.py v1 1,2,2,4 1,2,4 1,4 1,2

Each argument is `v1` (the bundled topology, `DDRFConfig.small`) or the channel multipliers of a v2 model
(`DDRFConfig.small_v2` with those levels). A 256 x 256 smooth random scene (ratio 2, 4 bands) is fused with K = 1
through ddrf.scenes' windows (tile 128, halo 32, feathered blend) and as one window over the whole scene; printed:
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
    return DDRFConfig.from_dict({**DDRFConfig.small_v2(4).to_dict(), "channel_mults": [int(c) for c in spec.split(",")]})


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    size = 256
    pan = gaussian_filter(rng.random((size, size)), 2) * 1000
    ms = np.stack([gaussian_filter(rng.random((size // 2, size // 2)), 1.5) * 800 + 100 * b for b in range(4)], -1)
    scene = ArrayScene(pan, ms, 2)
    for spec in sys.argv[1:]:
        cfg = config(spec)
        card = ModelCard(model=cfg.to_dict(), bands=["b1", "b2", "b3", "b4"], ratio=2,
                         normalisation=Normalisation(kind="scene"))
        engine = TorchEngine(random_model(cfg), card, steps=1)
        whole = fuse_tiled(engine, scene, tile=4096)
        figures = tile_differences({128: fuse_tiled(engine, scene, tile=128)}, whole)[128]
        print(f"{spec}: p99 {100 * figures['p99']:.2f} %, max {100 * figures['max']:.2f} % of band std", flush=True)


if __name__ == "__main__":
    main()
