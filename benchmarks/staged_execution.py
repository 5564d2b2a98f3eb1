"""Staged execution of a v1 network (prototype): shallow levels in full-resolution windows with a short halo, the deep
levels over the scene at 1/2^split resolution, then the shallow decoder in windows again.

    PYTHONPATH=. python benchmarks/staged_execution.py [MODEL_DIR] [--tiles 128,256,512] [--split 2]
        [--halos 16,32,16]

With the scene's statistics replayed a v1 network is a local operator, so each stage needs only the halo of its own
receptive field, measured in its own pixels: no window of any stage has to carry the whole network's halo (96 px
for the ratio-2 default). Printed: |staged - one window over the whole scene| (worst band's p99 and max, % of
that band's std, as benchmarks/tile_invariance.py) per tile, and each stage's share of multiply-adds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ddrf.model.staged import staged_replay
from ddrf.evaluate.datasets import REDUCED, open_dataset
from ddrf.scenes.arrays import ArrayScene
from ddrf.schedule import make_plan
from ddrf.train.checkpoint import load_checkpoint
from ddrf.train.tiled import TorchEngine, fuse_tiled, staged_prediction

sys.path.insert(0, str(Path(__file__).parent))
from tile_invariance import sample_scene  # noqa: E402


def captured_window(engine: TorchEngine, scene: Any) -> dict[str, Any]:
    """The prepared inputs (LMS, PAN, noise) and scene statistics of one window over the whole padded scene, as
    ddrf-run's tiling prepares them (through `fuse_tiled` with a tile larger than the scene)."""
    captured: dict[str, Any] = {}
    run = engine._sample

    def capture(lms: Tensor, guide: Tensor, noise: Tensor, context: Any = None, margin: int = 0) -> Tensor:
        if context is not None:
            captured.update(lms=lms, guide=guide, noise=noise, context=context)
        return run(lms, guide, noise, context=context, margin=margin)

    engine._sample = capture  # type: ignore[method-assign]
    try:
        fuse_tiled(engine, scene, tile=1 << 16)
    finally:
        engine._sample = run  # type: ignore[method-assign]
    return captured


def compare(engine: TorchEngine, scene: Any, tiles: list[int], halos: tuple[int, int, int], split: int) -> None:
    model = engine.model
    window = captured_window(engine, scene)
    lms, guide, x_t = window["lms"], window["guide"], window["noise"]  # one step: x_T is the start noise
    t = torch.full((1,), float(make_plan(engine.diffusion.schedule, 1).timesteps[0]))
    with torch.no_grad():
        model.scene_tape.replay(*window["context"])
        clock = time.perf_counter()
        reference = model.denoise(x_t, t, *model.encode(lms, guide))
        whole_s = time.perf_counter() - clock
        model.scene_tape.window()
        fused = engine.diffusion.fused(reference, lms)[0].reshape(lms.shape[1], -1).numpy()
        std = fused.std(axis=1)  # issue 9's yardstick: each output band's spread
        print(f"{scene.name}: padded window {tuple(lms.shape[-2:])}, one window {whole_s:.2f} s", flush=True)
        with staged_replay(model, *window["context"]):
            for tile in tiles:
                clock = time.perf_counter()
                pred = staged_prediction(model, lms, guide, x_t, t, tile, halos, split)
                seconds = time.perf_counter() - clock
                diff = (engine.diffusion.fused(pred, lms) - engine.diffusion.fused(reference, lms))[0]
                diff = diff.abs().reshape(lms.shape[1], -1).numpy()
                p99, worst = np.percentile(diff, 99, axis=1) / std, diff.max(axis=1) / std
                print(f"  tile {tile}: p99 {100 * p99.max():.4f} %, max {100 * worst.max():.4f} % of band std, "
                      f"{seconds:.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=Path("ddrf/assets/models/landsat_ratio2"))
    parser.add_argument("--tiles", default="128,256,512,4096")
    parser.add_argument("--split", type=int, default=2)
    parser.add_argument("--halos", default="16,32,16", help="stage 1 and 3 in full-resolution px, stage 2 in its own")
    parser.add_argument("--dataset", default="fusebox:/work/shared/data/landsat7_fusebox")
    parser.add_argument("--images", type=int, default=1, help="held-out images (reduced protocol) after the sample")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, card = load_checkpoint(args.model / "model.safetensors")
    engine = TorchEngine(model, card, steps=1, crop=False)
    scenes = [sample_scene()]
    if args.images:
        data = open_dataset(args.dataset, "P034R032")
        samples = (s for s in data.samples("reduced") if s.protocol == REDUCED)
        scenes += [ArrayScene(s.pan, s.ms, s.ratio, s.name) for _, s in zip(range(args.images), samples)]
    halos = tuple(int(h) for h in args.halos.split(","))
    for scene in scenes:
        compare(engine, scene, [int(t) for t in args.tiles.split(",")], halos, args.split)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
