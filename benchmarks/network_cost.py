"""What one window costs each network on ONNX Runtime: encode + one denoising step (K = 1), random weights.

    PYTHONPATH=. python benchmarks/network_cost.py --side 512 v1 1,2 1,2:s2:w24 1,2:s2:w32

Specs as in benchmarks/receptive_field.py (`v1`, or a v2 model's channel multipliers with `:sN` for the fold and
`:wN` for the base width). Each network is exported with torch.onnx (forward(x_t, t, lms, pan), dynamic sides) and
opened as ddrf-run opens its graphs (`OrtBackend`, CPU, 2 threads) and run on one four-band window; printed: parameters and the
median and best of 5 runs after one warm-up. The cost per model pixel, before any halo; weights do not change it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ddrf.runtime.backends import OrtBackend
from ddrf.train.tiled import random_model
from receptive_field import config


def session(model: torch.nn.Module, threads: int, folder: Path) -> OrtBackend:
    """The network as one graph, opened the way ddrf-run opens its graphs (ddrf.runtime.backends.OrtBackend)."""
    path = folder / "network.onnx"
    args = (torch.randn(1, 4, 64, 64), torch.tensor([999.0]), torch.randn(1, 4, 64, 64), torch.randn(1, 1, 64, 64))
    torch.onnx.export(model, args, str(path), input_names=["x", "t", "lms", "pan"], output_names=["y"],
                      opset_version=17, dynamic_axes={k: {2: "h", 3: "w"} for k in ("x", "lms", "pan")}, dynamo=False)
    return OrtBackend(path, "ort-cpu", threads)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("specs", nargs="+")
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    feed = {"x": rng.standard_normal((1, 4, a.side, a.side), np.float32), "t": np.array([999.0], np.float32),
            "lms": rng.random((1, 4, a.side, a.side), np.float32), "pan": rng.random((1, 1, a.side, a.side), np.float32)}
    for spec in a.specs:
        model = random_model(config(spec))
        with tempfile.TemporaryDirectory() as folder:
            backend = session(model, a.threads, Path(folder))
            backend.run(feed)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                backend.run(feed)
                times.append(time.perf_counter() - start)
        params = sum(q.numel() for q in model.parameters()) / 1e6
        print(f"{spec}: {params:.2f} M parameters, {a.side}^2 window: median {1e3 * np.median(times):.0f} ms, "
              f"best {1e3 * min(times):.0f} ms", flush=True)


if __name__ == "__main__":
    main()
