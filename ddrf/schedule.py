"""The noise schedule and the DDIM / probability-flow ODE update: the one definition used by training and runtime.

Coefficients are computed here in float64 numpy. The arithmetic helpers only use +, -, * and / on their array
arguments, so the torch trainer passes tensors and the torch-free runtime passes numpy arrays to the same code.
Timesteps are integers 0..T-1 (0 = least noise); the network is always fed the true training timestep of a step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TARGETS = ("eps", "x0", "v")
Array = Any  # numpy.ndarray or torch.Tensor: anything with arithmetic operators


@dataclass(frozen=True)
class CosineSchedule:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2)."""

    num_timesteps: int = 1000
    s: float = 0.008
    max_beta: float = 0.999
    # the sampler's steps taken where the log-SNR of the trailing spacing plus this lies (nats; negative: noisier
    # steps); 0: the trailing spacing itself. A sampling choice, not a training one: the card records it.
    sampling_shift: float = 0.0

    def __post_init__(self) -> None:
        if self.num_timesteps < 1:
            raise ValueError(f"num_timesteps must be >= 1, got {self.num_timesteps}")
        if not np.isfinite(self.sampling_shift):
            raise ValueError(f"sampling_shift must be a finite number, got {self.sampling_shift}")

    @property
    def alpha_bar(self) -> np.ndarray:
        """alpha_bar[t] for t = 0..T-1 (the signal fraction after t+1 noising steps)."""
        steps = np.arange(self.num_timesteps + 1, dtype=np.float64) / self.num_timesteps
        f = np.cos((steps + self.s) / (1 + self.s) * np.pi / 2) ** 2
        betas = np.clip(1 - f[1:] / f[:-1], 0.0, self.max_beta)
        return np.cumprod(1 - betas)

    def to_dict(self) -> dict[str, Any]:
        shift = {"sampling_shift": self.sampling_shift} if self.sampling_shift else {}  # older cards: absent = 0
        return {"kind": "cosine", "num_timesteps": self.num_timesteps, "s": self.s, "max_beta": self.max_beta, **shift}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CosineSchedule":
        if d.get("kind", "cosine") != "cosine":
            raise ValueError(f"unknown schedule kind {d.get('kind')!r}")
        return cls(int(d["num_timesteps"]), float(d.get("s", 0.008)), float(d.get("max_beta", 0.999)),
                   float(d.get("sampling_shift", 0.0)))

    def sampler_timesteps(self, steps: int) -> np.ndarray:
        """The training timesteps of a `steps`-step sampler: the trailing spacing, each step moved to the timestep
        whose log-SNR is nearest its own plus `sampling_shift` (a negative shift leaves the first at T-1)."""
        trailing = sampling_timesteps(self.num_timesteps, steps)
        if not self.sampling_shift:
            return trailing
        log_snr = self.log_snr
        return np.array([int(np.argmin(np.abs(log_snr - (log_snr[t] + self.sampling_shift)))) for t in trailing],
                        dtype=np.int64)

    @property
    def log_snr(self) -> np.ndarray:
        """log(alpha_bar / (1 - alpha_bar)) for t = 0..T-1, descending."""
        ab = self.alpha_bar
        return np.log(ab / (1 - ab))

    def shift_problem(self, steps: int) -> str:
        """Why `sampling_shift` cannot serve a `steps`-step sampler, or "": a step shifted past the schedule's clean
        end lands on timestep 0 (the first one there takes its pure-noise input for a nearly clean image), and one
        after the first shifted past the noisy end lands on T-1 with it (a step that changes nothing). The first step
        staying at T-1 under a negative shift is meant."""
        if not self.sampling_shift:
            return ""
        log_snr, trailing = self.log_snr, sampling_timesteps(self.num_timesteps, steps)
        highest = log_snr[0] - log_snr[trailing[-1]]  # the least noisy step reaches timestep 0
        lowest = log_snr[-1] - log_snr[trailing[1]] if steps > 1 else -np.inf  # the second reaches T-1
        timesteps = self.sampler_timesteps(steps)
        if lowest <= self.sampling_shift <= highest and len(set(timesteps.tolist())) == steps:
            return ""
        return (f"sampling_shift {self.sampling_shift:g} puts the {steps}-step sampler's timesteps "
                f"{', '.join(map(str, timesteps))} on the ends of the schedule, where steps coincide or start from "
                f"noise taken for a clean image: a {steps}-step sampler takes shifts from {lowest:.2f} to "
                f"{highest:.2f}")


def training_part(schedule: dict[str, Any]) -> dict[str, Any]:
    """A card's schedule without what only sampling chooses (`sampling_shift`): the schedule a network was trained
    on, which an export may not change."""
    return {key: value for key, value in schedule.items() if key != "sampling_shift"}


def sampling_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """The true training timesteps of a `steps`-step sampler, descending, first = T-1 ("trailing" spacing).

    Starting at T-1 matches the pure-noise start of sampling; the respaced index (0..steps-1) is never used.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in 1..{num_timesteps}, got {steps}")
    t = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)).astype(np.int64) - 1
    return t


@dataclass(frozen=True)
class SamplerPlan:
    """Per-step coefficients of a DDIM sampler; step i goes from timesteps[i] to timesteps[i+1] (or to x0)."""

    timesteps: np.ndarray  # (K,) int64, descending
    sqrt_ab: np.ndarray  # sqrt(alpha_bar_t)
    sqrt_one_minus_ab: np.ndarray  # sqrt(1 - alpha_bar_t)
    sqrt_ab_prev: np.ndarray  # sqrt(alpha_bar) of the next (less noisy) step; 1 after the last
    direction: np.ndarray  # sqrt(1 - alpha_bar_prev - sigma^2), the weight of the predicted noise
    sigma: np.ndarray  # eta-scaled noise of the step; all 0 for the deterministic ODE sampler

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])


def make_plan(schedule: CosineSchedule, steps: int, eta: float = 0.0) -> SamplerPlan:
    ab = schedule.alpha_bar
    t = schedule.sampler_timesteps(steps)
    ab_t = ab[t]
    ab_prev = np.append(ab[t[1:]], 1.0)
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
    direction = np.sqrt(np.clip(1 - ab_prev - sigma**2, 0.0, None))
    return SamplerPlan(t, np.sqrt(ab_t), np.sqrt(1 - ab_t), np.sqrt(ab_prev), direction, sigma)


def noise_input(x0: Array, noise: Array, sqrt_ab: Any, sqrt_one_minus_ab: Any) -> Array:
    """q(x_t | x0): the noisy variable the network sees in training."""
    return sqrt_ab * x0 + sqrt_one_minus_ab * noise


def training_target(x0: Array, noise: Array, sqrt_ab: Any, sqrt_one_minus_ab: Any, target: str) -> Array:
    """What the network is trained to output for a given target parametrisation."""
    if target == "x0":
        return x0
    if target == "eps":
        return noise
    if target == "v":
        return sqrt_ab * noise - sqrt_one_minus_ab * x0
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def split_prediction(x_t: Array, output: Array, sqrt_ab: Any, sqrt_one_minus_ab: Any, target: str) -> tuple[Array, Array]:
    """(x0, eps) implied by the network output at a step."""
    if target == "x0":
        return output, (x_t - sqrt_ab * output) / sqrt_one_minus_ab
    if target == "eps":
        return (x_t - sqrt_one_minus_ab * output) / sqrt_ab, output
    if target == "v":
        x0 = sqrt_ab * x_t - sqrt_one_minus_ab * output
        eps = sqrt_one_minus_ab * x_t + sqrt_ab * output
        return x0, eps
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def ddim_step(plan: SamplerPlan, i: int, x_t: Array, output: Array, target: str, noise: Array | None = None) -> Array:
    """One DDIM update from step i's noisy variable and network output; `noise` is needed only when sigma > 0."""
    x0, eps = split_prediction(x_t, output, float(plan.sqrt_ab[i]), float(plan.sqrt_one_minus_ab[i]), target)
    x_prev = float(plan.sqrt_ab_prev[i]) * x0 + float(plan.direction[i]) * eps
    sigma = float(plan.sigma[i])
    if sigma > 0:
        if noise is None:
            raise ValueError("eta > 0 needs a noise array at every step")
        x_prev = x_prev + sigma * noise
    return x_prev
