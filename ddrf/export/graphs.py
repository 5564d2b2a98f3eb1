"""The exported graphs: thin torch modules around the model's encode/denoise split.

Each has fixed input/output names (docs/ARCHITECTURE.md): the runtime finds tensors by name, never by position.
"""
from __future__ import annotations

import torch
from torch import nn

from ddrf.model import DDRF
from ddrf.model.scene import recorded, replayed
from ddrf.model.staged import (decoder_contexts, deep_levels, pooled_condition, shallow_decoder, shallow_encoder,
                               staged_replay)
from ddrf.sampling import batch_ones, sample
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


class StagedGraph(UnrolledSamplerGraph):
    """A stage of the one-step sampler run in three graphs (ddrf.model.staged), replaying the scene's statistics by
    module from `starts` (ddrf.model.staged.owner_starts, found before tracing: its call-order pass over a dummy
    window is no part of any graph). The timestep is the one-step plan's, baked in as in the unrolled samplers."""

    def __init__(self, model: DDRF, plan: SamplerPlan, target: str, residual: bool, residual_scale: float,
                 split: int, starts: dict[int, int]) -> None:
        super().__init__(model, plan, target, residual, residual_scale)
        if len(plan.timesteps) != 1:
            raise ValueError(f"staged graphs run one sampler step, not {len(plan.timesteps)}")
        self.split, self.starts = split, starts

    def temb(self, like: torch.Tensor) -> torch.Tensor:
        """The step's time embedding for a batch as large as `like`'s (sample() feeds the denoiser the same t)."""
        return self.model.time(batch_ones(like) * float(self.plan.timesteps[0]))


class StagedEntryGraph(StagedGraph):
    """lms, pan, noise, scene_stats, scene_tokens -> entry, pooled: stage 1, level `split`'s input and [LMS, PAN]
    pooled to that level. The step's x_t is the sampler's start, the noise."""

    def forward(self, lms: torch.Tensor, pan: torch.Tensor, noise: torch.Tensor,  # type: ignore[override]
                scene_stats: torch.Tensor, scene_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with staged_replay(self.model, scene_stats, scene_tokens, self.starts):
            skips = shallow_encoder(self.model, noise, self.temb(noise), self.model.encode(lms, pan), self.split)
        return skips[-1], pooled_condition(self.model, lms, pan, self.split)


class StagedDeepGraph(StagedGraph):
    """entry, pooled, scene_stats, scene_tokens -> deep: stage 2, the levels >= split at that level's resolution."""

    def forward(self, entry: torch.Tensor, pooled: torch.Tensor,  # type: ignore[override]
                scene_stats: torch.Tensor, scene_tokens: torch.Tensor) -> torch.Tensor:
        with staged_replay(self.model, scene_stats, scene_tokens, self.starts):
            return deep_levels(self.model, entry, self.temb(entry), pooled, decoder_contexts(self.model, entry),
                               self.split)


class StagedDecoderGraph(StagedGraph):
    """lms, pan, noise, deep, scene_stats, scene_tokens -> fused: stage 3 (the shallow encoder again, then the
    shallow decoder from `deep`) as the network call of ddrf.sampling.sample, so the sampler arithmetic is the
    unrolled samplers'. The whole window comes out (no output margin)."""

    def forward(self, lms: torch.Tensor, pan: torch.Tensor, noise: torch.Tensor,  # type: ignore[override]
                deep: torch.Tensor, scene_stats: torch.Tensor, scene_tokens: torch.Tensor) -> torch.Tensor:
        def denoise(x: torch.Tensor, t: torch.Tensor, cond: tuple[torch.Tensor, ...]) -> torch.Tensor:
            temb = self.model.time(t)
            skips = shallow_encoder(self.model, x, temb, cond, self.split)
            return shallow_decoder(self.model, deep, skips, temb, decoder_contexts(self.model, x), self.split)

        with staged_replay(self.model, scene_stats, scene_tokens, self.starts):
            return sample(self.model.encode, denoise, self.plan, self.target, lms, pan, noise, self.residual,
                          residual_scale=self.residual_scale)
