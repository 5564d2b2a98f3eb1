"""The exported graphs: thin torch modules around the model's encode/denoise split.

Each has fixed input/output names (docs/ARCHITECTURE.md): the runtime finds tensors by name, never by position.
"""
from __future__ import annotations

import torch
from torch import nn

from ddrf.model import DDRF
from ddrf.model.scene import recorded, replayed
from ddrf.sampling import sample
from ddrf.schedule import SamplerPlan


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
    """lms, pan, noise -> fused: the whole deterministic K-step sampler in one graph (K and timesteps fixed), fused
    without its outer `margin` pixels on every side (the card's output_margin).

    Traced through ddrf.sampling.sample, the loop the runtime runs step by step, so the two cannot drift apart.
    """

    def __init__(self, model: DDRF, plan: SamplerPlan, target: str, residual: bool,
                 residual_scale: float = 1.0, margin: int = 0) -> None:
        super().__init__()
        if float(plan.sigma.max()) > 0:
            raise ValueError("only the deterministic sampler (eta = 0) can be unrolled into a graph")
        self.model, self.plan, self.target, self.residual = model, plan, target, residual
        self.residual_scale, self.margin = float(residual_scale), margin

    def forward(self, lms: torch.Tensor, pan: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        def denoise(x: torch.Tensor, t: torch.Tensor, cond: tuple[torch.Tensor, ...], margin: int = 0) -> torch.Tensor:
            return self.model.denoise(x, t, *cond, margin=margin)

        return sample(self.model.encode, denoise, self.plan, self.target, lms, pan, noise, self.residual,
                      residual_scale=self.residual_scale, margin=self.margin)


class SceneSamplerGraph(UnrolledSamplerGraph):
    """lms, pan, noise, scene_stats, scene_tokens -> fused: the unrolled sampler with the scene's statistics
    replayed in every window (ddrf.model.scene), for a card with scene_statistics."""

    def forward(self, lms: torch.Tensor, pan: torch.Tensor, noise: torch.Tensor,  # type: ignore[override]
                scene_stats: torch.Tensor, scene_tokens: torch.Tensor) -> torch.Tensor:
        return replayed(self.model.scene_tape, scene_stats, scene_tokens, lambda: super(SceneSamplerGraph, self)
                        .forward(lms, pan, noise))


class ScenePassGraph(UnrolledSamplerGraph):
    """lms, pan, noise of a scene's context windows (a batch) -> scene_stats, scene_tokens: the same unrolled
    sampler, recording each window statistic jointly over the batch (over whole windows: no margin)."""

    def forward(self, lms: torch.Tensor, pan: torch.Tensor,  # type: ignore[override]
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return recorded(self.model.scene_tape, lambda: super(ScenePassGraph, self).forward(lms, pan, noise))
