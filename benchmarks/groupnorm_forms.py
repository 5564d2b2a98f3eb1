"""v1's GroupNorm as ONNX Runtime runs it (Reshape -> InstanceNormalization -> Reshape -> Mul -> Add) against the
form that made v2 2.1x faster (statistics by pooling and constant 1x1 convolutions): same weights, same outputs.

    PYTHONPATH=. python benchmarks/groupnorm_forms.py [THREADS]

The bundled v1 model (`landsat_ratio2`) is exported twice from its weights, once with each form; encoder + one
denoiser step on a random 256 x 256 window, median of 5 alternated runs, and the largest output difference.
"""
from __future__ import annotations

import copy
import statistics
import sys
import time
from typing import TypeVar

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from ddrf.export.onnx_export import build_graphs, clean_graph
from ddrf.train.checkpoint import load_checkpoint

M = TypeVar("M", bound=nn.Module)


class PooledGroupNorm(nn.Module):
    """GroupNorm with its group means and variances from global average pooling and a block-averaging 1x1 conv."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        channels, per = norm.num_channels, norm.num_channels // norm.num_groups
        averager = torch.zeros(channels, channels)
        for g in range(norm.num_groups):
            averager[g * per:(g + 1) * per, g * per:(g + 1) * per] = 1.0 / per
        self.averager: torch.Tensor
        self.register_buffer("averager", averager[:, :, None, None])
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - F.conv2d(F.adaptive_avg_pool2d(x, 1), self.averager)
        variance = F.conv2d(F.adaptive_avg_pool2d(centred * centred, 1), self.averager)
        return centred * (torch.rsqrt(variance + self.eps) * self.weight[None, :, None, None]) \
            + self.bias[None, :, None, None]


def pooled(module: M) -> M:
    for name, child in module.named_children():
        setattr(module, name, PooledGroupNorm(child)) if isinstance(child, nn.GroupNorm) else pooled(child)
    return module


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    model, card = load_checkpoint("ddrf/assets/models/landsat_ratio2/model.safetensors")
    card.scene_statistics = False  # the encoder and step graphs, whose GroupNorm takes the window's statistics
    forms = {"GroupNorm (InstanceNormalization)": build_graphs(model.eval(), card),
             "pooling + 1x1 convolutions": build_graphs(pooled(copy.deepcopy(model)).eval(), card)}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    rng = np.random.default_rng(0)
    lms, pan, x = (rng.standard_normal((1, c, 256, 256)).astype(np.float32) for c in (4, 1, 4))
    t = np.array([999.0], np.float32)
    runs, outputs = {}, {}
    for name, graphs in forms.items():
        enc, den = (ort.InferenceSession(clean_graph(graphs[g]).SerializeToString(), options,
                                         providers=["CPUExecutionProvider"]) for g in ("encoder", "denoiser"))
        names = [i.name for i in den.get_inputs()]

        def once(enc: ort.InferenceSession = enc, den: ort.InferenceSession = den, names: list = names) -> np.ndarray:
            return den.run(None, dict(zip(names, [x, t, *enc.run(None, {"lms": lms, "pan": pan})])))[0]

        outputs[name], runs[name] = once(), once
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(5):
        for name, once in runs.items():
            start = time.perf_counter()
            once()
            times[name].append(time.perf_counter() - start)
    first, second = outputs.values()
    difference = float(np.abs(first - second).max())
    print(f"{threads} thread(s), 256 x 256, encoder + one step; max |difference| {difference:.2e}")
    for name, ts in times.items():
        print(f"{name}: {1000 * statistics.median(ts):.0f} ms")


if __name__ == "__main__":
    main()
