"""`Fuser`: the array-level API of the runtime. PAN and MS in digital numbers in, fused HRMS out; no torch."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ddrf.card import ModelCard
from ddrf.model_dir import ModelDir
from ddrf.radiometry import Radiometry, scene_radiometry
from ddrf.runtime.backends import Backend, backend_info, open_backend
from ddrf.runtime.noise import scene_noise
from ddrf.runtime.sampler import sample_stepwise, sample_unrolled
from ddrf.schedule import CosineSchedule, make_plan
from ddrf.filters import interp23


@dataclass
class PreparedBatch:
    """Model inputs of a batch of windows (normalised, padded), with what turns the output back into DN."""

    lms: np.ndarray
    guide: np.ndarray
    noise: np.ndarray
    seed: int
    radiometry: Radiometry
    shapes: list[tuple[int, int]]  # (H, W) of each window before padding


class InputPreparation:
    """What the model's inputs need from a card alone: checks, radiometry, interp23, padding and keyed noise.

    Usable without loading any graph (evaluation of a checkpoint, the profiler's pre-processing stage).
    """

    def __init__(self, card: ModelCard) -> None:
        self.card = card

    @property
    def multiple(self) -> int:
        return self.card.size_multiple

    def check_inputs(self, pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """PAN as (H, W, G); errors name what does not fit the model."""
        guide = pan[..., None] if pan.ndim == 2 else pan
        bands, ratio = len(self.card.bands), self.card.ratio
        if ms.ndim != 3 or ms.shape[-1] != bands:
            raise ValueError(f"the model fuses {bands} MS bands ({', '.join(self.card.bands)}), got shape {ms.shape}")
        if guide.shape[-1] != len(self.card.guide_bands):
            raise ValueError(f"the model needs {len(self.card.guide_bands)} guide bands, got {guide.shape[-1]}")
        if guide.shape[:2] != (ms.shape[0] * ratio, ms.shape[1] * ratio):
            raise ValueError(f"PAN {guide.shape[:2]} is not MS {ms.shape[:2]} times the ratio {ratio}")
        return guide

    def radiometry(self, pan: np.ndarray, ms: np.ndarray) -> Radiometry:
        """The card's normalisation for these arrays (whole-image statistics when it is per scene)."""
        return scene_radiometry(self.card.normalisation, ms, pan[..., None] if pan.ndim == 2 else pan)

    def prepare(self, pan: np.ndarray, ms: np.ndarray, radiometry: Radiometry, seed: int = 0,
                origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised (C, H, W) LMS, (G, H, W) guide and initial noise, padded to the size multiple.

        `origin` is the window's (row, col) on the scene's PAN grid: the noise is keyed to it, so overlapping
        tiles of one scene see the same noise.
        """
        guide = self.check_inputs(pan, ms)
        # symmetric borders, as in training: a tile's edge is not the wrap-around of its opposite edge
        lms = interp23(ms.astype(np.float64), self.card.ratio, border="symmetric")
        height, width = guide.shape[:2]
        pad = ((0, 0), (0, (-height) % self.multiple), (0, (-width) % self.multiple))
        lms_n = np.pad(np.moveaxis(radiometry.ms_to_model(lms), -1, 0), pad, mode="reflect")
        pan_n = np.pad(np.moveaxis(radiometry.guide_to_model(guide), -1, 0), pad, mode="reflect")
        noise = scene_noise(seed, lms_n.shape[0], origin[0], origin[1], *lms_n.shape[1:])
        return lms_n, pan_n, noise


class Fuser(InputPreparation):
    """Fuses PAN/MS arrays with an exported DDRF model on any backend.

    `steps` defaults to the card's sampling_steps; `unrolled` uses the one-graph sampler for that step count.
    """

    def __init__(self, model: str | os.PathLike[str] | ModelDir, backend: str = "ort-cpu",
                 steps: int | None = None, precision: str = "fp32", unrolled: bool = False,
                 threads: int | None = None, allow_fallback: bool = False, eta: float = 0.0) -> None:
        self.files = model if isinstance(model, ModelDir) else ModelDir.open(model)
        super().__init__(self.files.card)
        self.steps = steps or self.card.sampling_steps
        self.plan = make_plan(CosineSchedule.from_dict(self.card.schedule), self.steps, eta)
        self.backend_kind, self.precision, self.unrolled = backend, precision, unrolled
        suffix = backend_info(backend).file_suffix

        def load(stage: str, steps: int | None = None) -> Backend:
            path = self.files.graph(stage, precision, steps, suffix)
            opened = open_backend(path, backend, threads, allow_fallback)
            self.files.check_io(stage, path, opened.input_names, opened.output_names)
            self.files.check_channels(path, getattr(opened, "input_shapes", {}))
            return opened

        if unrolled:
            self.sampler = load("sampler", self.steps)
        else:
            self.encoder, self.denoiser = load("encoder"), load("denoiser")

    def fuse_normalised(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray,
                        seed: int = 0) -> np.ndarray:
        """Normalised NCHW LMS, guide and initial noise -> normalised HRMS (N, C, H, W)."""
        if self.unrolled:
            return sample_unrolled(self.sampler, lms, pan, noise)

        def step_noise(i: int) -> np.ndarray:  # only used when eta > 0
            n, c, h, w = noise.shape
            return np.stack([scene_noise(seed + k, c, 0, 0, h, w, step=i + 1) for k in range(n)])

        x0 = sample_stepwise(self.encoder, self.denoiser, lms, pan, self.plan, self.card.target, noise, step_noise)
        return x0 + lms if self.card.residual else x0

    def prepare_batch(self, pairs: list[tuple[np.ndarray, np.ndarray]], seed: int = 0,
                      origins: list[tuple[int, int]] | None = None,
                      radiometry: Radiometry | None = None) -> "PreparedBatch":
        """Everything before the graphs (interp23, normalisation, keyed noise): runs in ddrf-run's reader thread."""
        origins = origins or [(0, 0)] * len(pairs)
        radiometry = radiometry or self.radiometry(*pairs[0])
        prepared = [self.prepare(pan, ms, radiometry, seed, origin) for (pan, ms), origin in zip(pairs, origins)]
        lms, guide, noise = (np.stack(parts) for parts in zip(*prepared))
        return PreparedBatch(lms, guide, noise, seed, radiometry, [pan.shape[:2] for pan, _ in pairs])

    def finish_batch(self, batch: "PreparedBatch") -> list[np.ndarray]:
        """The graphs on a prepared batch; returns (H, W, B) float32 DN per window."""
        fused = self.fuse_normalised(batch.lms, batch.guide, batch.noise, batch.seed)
        return [batch.radiometry.ms_from_model(np.moveaxis(f[:, :h, :w], 0, -1))
                for f, (h, w) in zip(fused, batch.shapes)]

    def fuse_batch(self, pairs: list[tuple[np.ndarray, np.ndarray]], seed: int = 0,
                   origins: list[tuple[int, int]] | None = None,
                   radiometry: Radiometry | None = None) -> list[np.ndarray]:
        """Fuse same-sized (pan, ms) windows of one scene in one batch; returns (H, W, B) float32 DN per window.

        Pass the scene's `radiometry` when the windows are tiles of a larger scene (otherwise statistics of the
        first window are used, which would differ from tile to tile under per-scene normalisation).
        """
        return self.finish_batch(self.prepare_batch(pairs, seed, origins, radiometry))

    def fuse(self, pan: np.ndarray, ms: np.ndarray, seed: int = 0, origin: tuple[int, int] = (0, 0),
             radiometry: Radiometry | None = None) -> np.ndarray:
        """PAN (H, W) or guide (H, W, G) and MS (h, w, B) in digital numbers -> fused (H, W, B) float32 DN.

        `radiometry` defaults to the card's normalisation computed on these arrays.
        """
        return self.fuse_batch([(pan, ms)], seed, [origin], radiometry or self.radiometry(pan, ms))[0]
