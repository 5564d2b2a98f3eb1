"""One window through the one-graph sampler against the three staged graphs, ONNX Runtime on the CPU.

    PYTHONPATH=. python benchmarks/staged_graphs.py [MODEL_DIR] [--side 512] [--threads 2] [--runs 5]

On fixed random inputs of `side` x `side` (statistics recorded by the scene graph over a 128 x 128 corner), the
median seconds of `sampler_k1` (which computes only the window without its output margin) and of each staged graph
over the whole window (stage 2 over its 1/4-resolution map); and the largest |difference| of the staged output from
the sampler's on the sampler's interior.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ddrf.card import read_card
from ddrf.runtime.backends import open_backend


def median_seconds(run: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=Path("ddrf/assets/models/landsat_ratio2"))
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    graphs = {name: open_backend(args.model / f"{name}.onnx", "ort-cpu", args.threads) for name in
              ("sampler_k1", "scene_k1", "staged_entry_k1", "staged_deep_k1", "staged_decoder_k1")}
    rng, side = np.random.default_rng(0), args.side
    lms, pan = rng.random((1, 4, side, side), np.float32), rng.random((1, 1, side, side), np.float32)
    noise = rng.standard_normal((1, 4, side, side)).astype(np.float32)
    corner = {"lms": lms[..., :128, :128], "pan": pan[..., :128, :128], "noise": noise[..., :128, :128]}
    context = graphs["scene_k1"].run(corner)
    images = {"lms": lms, "pan": pan, "noise": noise, **context}
    sampler_s, reference = median_seconds(lambda: graphs["sampler_k1"].run(images)["fused"], args.runs)
    entry_s, entry = median_seconds(lambda: graphs["staged_entry_k1"].run(images), args.runs)
    deep_s, deep = median_seconds(lambda: graphs["staged_deep_k1"].run({**entry, **context})["deep"], args.runs)
    decoder_s, fused = median_seconds(lambda: graphs["staged_decoder_k1"].run({**images, "deep": deep})["fused"],
                                      args.runs)
    margin = read_card(args.model / "card.json").output_margin
    interior = fused[..., margin:side - margin, margin:side - margin]
    print(f"{side} x {side}, {args.threads} threads, median of {args.runs}: sampler_k1 {sampler_s:.3f} s "
          f"({reference.shape[-2]} x {reference.shape[-1]} out); staged entry {entry_s:.3f} + deep {deep_s:.3f} "
          f"({deep.shape[-2]} x {deep.shape[-1]} map) + decoder {decoder_s:.3f} = "
          f"{entry_s + deep_s + decoder_s:.3f} s; "
          f"max |staged - sampler| on its interior {float(np.abs(interior - reference).max()):.1e}")


if __name__ == "__main__":
    main()
