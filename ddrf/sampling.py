"""The few-step DDIM / probability-flow ODE sampler loop: the one loop that every caller runs.

Encode the condition once (or again at every step: the profiler's "uncached" reference), then K denoiser calls, each
followed by ddrf.schedule's update, and the LMS added back when the model predicts the residual. Callers pass
`encode(lms, pan) -> cond` and `denoise(x_t, t, cond) -> prediction`: ONNX Runtime or TensorRT sessions in the
runtime (numpy arrays), the torch model in training, checkpoint evaluation and the profiler, and the exported
unrolled graph, which is traced through this very loop. Duck-typed like ddrf.schedule: it never imports torch.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from ddrf.schedule import Array, SamplerPlan, ddim_step

Condition = Any  # whatever `encode` returns and `denoise` takes: named arrays (runtime) or a tuple of tensors (torch)
Encode = Callable[[Array, Array], Condition]
Denoise = Callable[..., Array]  # (x_t, t, cond) -> prediction; (x_t, t, cond, margin) -> the cropped one
StageCallback = Callable[[str], None]  # called with "encode", "step" (each step) or "sample" (one unrolled graph)


def batch_ones(x: Array) -> Array:
    """Ones of shape (N,), x's dtype and device, for an NCHW numpy array or torch tensor.

    Taken with the array's own library (already imported by whoever made it), so a traced graph keeps its batch
    axis dynamic (ones_like of a slice, not a constant) and this module needs no torch.
    """
    library = sys.modules[type(x).__module__.split(".")[0]]
    return library.ones_like(x[:, 0, 0, 0])


def sample(encode: Encode, denoise: Denoise, plan: SamplerPlan, target: str, lms: Array, pan: Array, noise: Array,
           residual: bool, step_noise: Callable[[int], Array] | None = None, cache_condition: bool = True,
           on_stage: StageCallback | None = None, residual_scale: float = 1.0, margin: int = 0) -> Array:
    """The fused (normalised) HRMS from initial noise x_T = `noise`, all NCHW.

    `step_noise(i)` supplies step i's extra noise when the plan's sigma is > 0 (eta > 0). A residual model diffuses
    (HRMS - LMS) * `residual_scale` (the card's), so the sample is divided by it before LMS is added back.
    `on_stage("encode")` and `on_stage("step")` are called as each stage finishes (the profiler's clock).
    `margin` > 0: the result leaves out the outer `margin` pixels of every side, which the last step then does not
    compute (`denoise(x, t, cond, margin)` returns the cropped prediction; earlier steps need the whole window).
    """
    cond = encode(lms, pan) if cache_condition else None
    if cache_condition and on_stage is not None:
        on_stage("encode")
    ones = batch_ones(noise)
    x = noise
    last = len(plan.timesteps) - 1
    for i, t in enumerate(plan.timesteps):
        args = (x, ones * float(t), cond if cache_condition else encode(lms, pan))
        if i == last and margin:
            inner = (Ellipsis, slice(margin, -margin), slice(margin, -margin))
            prediction, x, lms = denoise(*args, margin), x[inner], lms[inner]
        else:
            prediction = denoise(*args)
        extra = step_noise(i) if step_noise is not None and plan.sigma[i] > 0 else None
        x = ddim_step(plan, i, x, prediction, target, extra)
        if on_stage is not None:
            on_stage("step")
    return x / residual_scale + lms if residual else x


def by_graph_bands(fuse: Callable[[Array, Array, Array], Array], lms: Array, pan: Array, noise: Array,
                   graph_bands: int) -> Array:
    """`fuse(lms, pan, noise)` over the bands its graphs take (the card's `graph_bands`): all at once, or, for a
    band-wise model (1), once per band with the same guide, the bands stacked back on the channel axis (numpy or
    torch).

    Band by band, not bands folded into the batch: a window needs the memory of one band, and a TensorRT profile's
    batch limit still holds."""
    if lms.shape[1] == graph_bands:
        return fuse(lms, pan, noise)
    library = sys.modules[type(lms).__module__.split(".")[0]]
    return library.concatenate([fuse(lms[:, b:b + 1], pan, noise[:, b:b + 1]) for b in range(lms.shape[1])], axis=1)
