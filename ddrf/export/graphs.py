"""The exported graphs: thin torch modules around the model's encode/denoise split.

Each has fixed input/output names (docs/ARCHITECTURE.md): the runtime finds tensors by name, never by position.
"""
from __future__ import annotations

import torch
from torch import nn

from ddrf.model import DDRF
from ddrf.schedule import SamplerPlan, ddim_step


class EncoderGraph(nn.Module):
    """lms, pan -> cond_0 .. cond_{n-1}: everything that depends on the condition alone, once per image."""

    def __init__(self, model: DDRF) -> None:
        super().__init__()
        self.model = model

    def forward(self, lms: torch.Tensor, pan: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encode(lms, pan))


class DenoiserGraph(nn.Module):
    """x_t, t, cond_* -> prediction: one sampler step's network call."""

    def __init__(self, model: DDRF) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        return self.model.denoise(x_t, t, *cond)


class UnrolledSamplerGraph(nn.Module):
    """lms, pan, noise -> fused: the whole deterministic K-step sampler in one graph (K and timesteps fixed).

    The update arithmetic is ddrf.schedule's, traced with torch tensors, so it is the same as the runtime's loop.
    """

    def __init__(self, model: DDRF, plan: SamplerPlan, target: str, residual: bool) -> None:
        super().__init__()
        if float(plan.sigma.max()) > 0:
            raise ValueError("only the deterministic sampler (eta = 0) can be unrolled into a graph")
        self.model, self.plan, self.target, self.residual = model, plan, target, residual

    def forward(self, lms: torch.Tensor, pan: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        cond = self.model.encode(lms, pan)
        x = noise
        ones = torch.ones_like(noise[:, 0, 0, 0])  # (N,): keeps the batch axis dynamic in the graph
        for i, t in enumerate(self.plan.timesteps):
            prediction = self.model.denoise(x, ones * float(t), *cond)
            x = ddim_step(self.plan, i, x, prediction, self.target)
        return x + lms if self.residual else x
