"""Torch wrapper of `ddrf.schedule`: training noise, targets, L1 loss, and the DDIM sampler (ddrf.sampling's loop).

Nothing here re-derives the schedule: coefficients are the float64 numpy arrays of `CosineSchedule`, indexed by the
true training timestep, and the arithmetic is `schedule.noise_input / training_target / ddim_step` called on
tensors, so the trainer and the torch-free runtime share one definition.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ddrf import schedule as sch
from ddrf.sampling import sample


class Denoiser(Protocol):
    """What the sampler needs of a model: a condition encoder and a step denoiser (ddrf.model.DDRF has both)."""

    def encode(self, lms: torch.Tensor, pan: torch.Tensor) -> tuple[torch.Tensor, ...]: ...

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, *cond: torch.Tensor, margin: int = 0) -> torch.Tensor:
        """`margin` > 0 (only asked of models that crop: ddrf.model.DDRF): the prediction without that border."""


class Diffusion:
    """Conditional diffusion over the HRMS (residual=False) or over (HRMS - LMS) * residual_scale (residual=True).

    `residual_scale` brings the residual to about unit variance beside unit noise (it shifts log-SNR by
    2 log scale); samples are divided by it before LMS is added back.
    """

    def __init__(self, schedule: sch.CosineSchedule | None = None, target: str = "x0", residual: bool = True,
                 residual_scale: float = 1.0):
        if target not in sch.TARGETS:
            raise ValueError(f"target must be one of {sch.TARGETS}, got {target!r}")
        if not residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {residual_scale}")
        self.schedule = schedule or sch.CosineSchedule()
        self.target = target
        self.residual = residual
        self.residual_scale = float(residual_scale)
        ab = self.schedule.alpha_bar
        self._sqrt_ab = np.sqrt(ab)
        self._sqrt_one_minus_ab = np.sqrt(1.0 - ab)

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) for integer timesteps t (N,), shaped (N, 1, 1, 1) like `like`."""
        idx = t.detach().cpu().numpy().astype(np.int64)
        shape = (-1,) + (1,) * (like.dim() - 1)

        def pick(arr: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(arr[idx], dtype=like.dtype, device=like.device).reshape(shape)

        return pick(self._sqrt_ab), pick(self._sqrt_one_minus_ab)

    def sample_timesteps(self, n: int, generator: torch.Generator | None = None, device: Any = "cpu") -> torch.Tensor:
        """Uniform integer timesteps 0..T-1, drawn on the CPU so a CPU generator gives the same draw on any device."""
        return torch.randint(0, self.num_timesteps, (n,), generator=generator).to(device)

    def clean_variable(self, gt: torch.Tensor, lms: torch.Tensor) -> torch.Tensor:
        """x0 of the diffusion: the scaled residual (HRMS - LMS) * residual_scale, or the HRMS itself."""
        return (gt - lms) * self.residual_scale if self.residual else gt

    def fused(self, x0: torch.Tensor, lms: torch.Tensor) -> torch.Tensor:
        """The HRMS from the denoised variable (inverse of `clean_variable`)."""
        return x0 / self.residual_scale + lms if self.residual else x0

    def training_pair(self, x0: torch.Tensor, t: torch.Tensor,
                      noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, target) for clean variable x0 at timesteps t with the given noise."""
        sa, s1 = self.coefficients(t, x0)
        x_t = sch.noise_input(x0, noise, sa, s1)
        return x_t, sch.training_target(x0, noise, sa, s1, self.target)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
             autocast: Any = None) -> torch.Tensor:
        """L1 between the network output and the target; `model(x_t, t, lms, pan)` may be a DDP wrapper."""
        gt, lms, pan = batch["gt"], batch["lms"], batch["pan"]
        x0 = self.clean_variable(gt, lms)
        t = self.sample_timesteps(x0.shape[0], generator)  # CPU: indexing the coefficients needs no device sync
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t, target = self.training_pair(x0, t, noise)
        with autocast if autocast is not None else nullcontext():
            out = model(x_t, t.to(x0.device, torch.float32), lms, pan)
        return F.l1_loss(out.float(), target.float())

    @torch.no_grad()
    def sample(self, model: Denoiser, lms: torch.Tensor, pan: torch.Tensor, steps: int, eta: float = 0.0,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               margin: int = 0) -> torch.Tensor:
        """DDIM (eta=0: probability-flow ODE) from pure noise; returns the fused HRMS (LMS added back if residual).

        The condition is encoded once; each of the K denoiser calls gets the TRUE training timestep of its step.
        `noise` (K+1, N, C, H, W) or (N, C, H, W) fixes the start noise (and the per-step noise when eta > 0).
        `margin` > 0: the result leaves out that many pixels of every side (`ddrf.sampling.sample`).
        """
        plan = sch.make_plan(self.schedule, steps, eta)
        draws = self._sampler_noise(plan, lms, generator, noise)

        def denoise(x: torch.Tensor, t: torch.Tensor, cond: tuple[torch.Tensor, ...], crop: int = 0) -> torch.Tensor:
            if crop:  # only then: a Denoiser need not know margins unless asked for one
                return model.denoise(x, t.to(torch.float32), *cond, margin=crop).to(x.dtype)
            return model.denoise(x, t.to(torch.float32), *cond).to(x.dtype)

        return sample(model.encode, denoise, plan, self.target, lms, pan, draws[0], self.residual,
                      step_noise=lambda i: draws[i + 1], residual_scale=self.residual_scale, margin=margin)

    def _sampler_noise(self, plan: sch.SamplerPlan, lms: torch.Tensor, generator: torch.Generator | None,
                       noise: torch.Tensor | None) -> list[torch.Tensor]:
        count = plan.steps + 1 if float(plan.sigma.max(initial=0.0)) > 0 else 1
        if noise is None:
            shape = (count,) + tuple(lms.shape)
            noise = torch.randn(shape, generator=generator, dtype=lms.dtype).to(lms.device)
        elif noise.dim() == lms.dim():
            noise = noise.unsqueeze(0)
        if noise.shape[0] < count or noise.shape[1:] != lms.shape:
            raise ValueError(f"sampler noise must be ({count}, *{tuple(lms.shape)}), got {tuple(noise.shape)}")
        return [noise[i].to(lms.dtype) for i in range(count)]

