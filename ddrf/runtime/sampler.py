"""The few-step DDIM/ODE sampler over any backend: encode the condition once, then K denoiser calls.

The update arithmetic is ddrf.schedule's, the same code the torch trainer uses.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ddrf.runtime.backends import Backend
from ddrf.schedule import SamplerPlan, ddim_step


def encode(encoder: Backend, lms: np.ndarray, pan: np.ndarray) -> dict[str, np.ndarray]:
    """Condition features of a batch, keyed by the denoiser's input names (cond_0 ...)."""
    return encoder.run({"lms": lms, "pan": pan})


def sample_stepwise(encoder: Backend, denoiser: Backend, lms: np.ndarray, pan: np.ndarray, plan: SamplerPlan,
                    target: str, noise: np.ndarray,
                    step_noise: Callable[[int], np.ndarray] | None = None) -> np.ndarray:
    """The denoised variable x0 (N, C, H, W), from initial noise x_T = `noise`; `step_noise(i)` when eta > 0."""
    cond = encode(encoder, lms, pan)
    x = noise.astype(np.float32)
    for i, t in enumerate(plan.timesteps):
        timestep = np.full((x.shape[0],), float(t), dtype=np.float32)
        prediction = denoiser.run({"x_t": x, "t": timestep, **cond})["prediction"]
        extra = step_noise(i) if plan.sigma[i] > 0 and step_noise is not None else None
        x = ddim_step(plan, i, x, prediction, target, extra).astype(np.float32)
    return x


def sample_unrolled(sampler: Backend, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """One call of the graph with the K steps unrolled; returns the fused (normalised) HRMS."""
    return sampler.run({"lms": lms, "pan": pan, "noise": noise})["fused"]
