"""A torch model through the runtime's tiling: the same windows, halo, feathered blend and keyed noise as `ddrf-run`.

For measuring tile invariance and scoring checkpoints "through the tiled path" without an export. The windows,
weights, row blending, in-memory scene, and the fills and restores of saturated pixels and strays are ddrf.scenes'
own (`ddrf/scenes/arrays.py`, `member_batches`, `restored`); only the engine (torch sampler instead of ONNX) is a
stand-in.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ddrf.model.scene import recorded, replayed
from ddrf.radiometry import Radiometry
from ddrf.runtime.fuser import InputPreparation
from ddrf.scenes.arrays import ArrayScene, fuse_arrays
from ddrf.scenes.engines import context_inputs, default_tiling, member_batches, preview_radiometry, restored
from ddrf.sampling import by_graph_bands
from ddrf.schedule import CosineSchedule
from ddrf.train.diffusion import Diffusion


@dataclass
class TorchEngine:
    """The pipeline's Engine protocol over a torch DDRF and its card: InputPreparation (radiometry, interp23,
    padding, origin-keyed noise) exactly as the ONNX Fuser, then the torch DDIM sampler."""

    model: Any
    card: Any
    steps: int
    seed: int = 0
    samples: int = 1
    label: str = "torch"
    device: str = "cpu"  # where the model lives; windows go there and their output comes back to the host
    crop: bool = True  # leave out the window border the blend gives no weight (False: compute whole windows)
    radiometry: Radiometry | None = field(default=None, repr=False)
    scene: Any = field(default=None, repr=False)  # the scene being fused (start_scene)

    def __post_init__(self) -> None:
        self.prep = InputPreparation(self.card)
        self.bands, self.ratio, self.multiple = self.card.scene_bands, int(self.card.ratio), self.prep.multiple
        self.spread_calibration = self.card.spread_factor(self.samples)
        self.halo = int(self.card.halo)
        self.default_tile = default_tiling("ort-cpu", halo=self.halo)[0]
        self.diffusion = Diffusion(CosineSchedule.from_dict(self.card.schedule), self.card.target, self.card.residual,
                                   self.card.residual_scale)
        self.contexts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # per member, for scene statistics
        self.margin = 0  # pixels of each window side left uncomputed (start_scene)

    @property
    def members(self) -> list[tuple[int, int]]:
        """(seed, view) per sample: seeds only, no views in the torch path."""
        return [(self.seed + k, 0) for k in range(self.samples)]

    def start_scene(self, scene: Any, border: int = 0) -> None:
        """One normalisation per scene, from the same preview the runtime's ModelEngine reads. The sampler leaves
        out what it can of the `border` the blend gives no weight (whole margin steps; nothing where a window
        statistic makes every pixel depend on the whole window), as the exported graphs do."""
        self.radiometry, self.scene = preview_radiometry(scene, self.card), scene
        self.margin = self.card.croppable(border) if self.crop else 0
        # recorded over the same context windows as the runtime's ModelEngine
        inputs = context_inputs(scene, self.prep, self.radiometry, self.members)
        self.contexts = {k: self._record(*(torch.from_numpy(a).to(self.device) for a in arrays))
                         for k, arrays in inputs.items()}

    def _record(self, lms: torch.Tensor, guide: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return recorded(self.model.scene_tape, lambda: self._sample(lms, guide, noise))

    def prepare(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> Any:
        return pairs, origins  # preparation happens in `fuse`, beside the torch sampler

    def run(self, prepared: Any) -> list[np.ndarray]:
        return self.fuse(*prepared)

    def fuse(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> list[np.ndarray]:
        assert self.radiometry is not None, "start_scene first"
        runs = []
        batches = member_batches(self.prep, self.scene, pairs, self.radiometry, origins, self.members)
        for k, arrays in enumerate(batches):
            lms, guide, noise = (torch.from_numpy(a).to(self.device) for a in arrays)
            sample = functools.partial(self._sample, context=self.contexts.get(k), margin=self.margin)
            fused = by_graph_bands(sample, lms, guide, noise, self.card.graph_bands).float().cpu().numpy()
            fused = np.pad(fused, ((0, 0), (0, 0), *[(self.margin, self.margin)] * 2))
            runs.append([self.radiometry.ms_from_model(np.moveaxis(f[:, :pan.shape[0], :pan.shape[1]], 0, -1))
                         for f, (pan, _) in zip(fused, pairs)])
        # saturated pixels and strays say what ddrf-run's ModelEngine writes there, not the network's guess
        return restored([np.stack([run[i] for run in runs]) for i in range(len(pairs))], pairs, self.scene,
                        self.radiometry, self.card)

    def _sample(self, lms: torch.Tensor, guide: torch.Tensor, noise: torch.Tensor,
                context: tuple[torch.Tensor, torch.Tensor] | None = None, margin: int = 0) -> torch.Tensor:
        """The sampler over one batch of windows, replaying the scene's statistics where given; `margin` pixels of
        each side left out."""
        def run() -> torch.Tensor:
            return self.diffusion.sample(self.model, lms, guide, self.steps, noise=noise, margin=margin)

        return run() if context is None else replayed(self.model.scene_tape, *context, run)

    def summary(self) -> dict[str, Any]:
        return {"kind": "torch", "steps": self.steps}


def fuse_tiled(engine: Any, scene: ArrayScene, tile: int, halo: int | None = None, batch: int = 1) -> np.ndarray:
    """The (H, W, B) blended output `ddrf-run` would write for this scene with this tile, halo and batch."""
    with torch.no_grad():
        return fuse_arrays(engine, scene, tile, halo, batch)


def random_model(cfg: Any, seed: int = 0) -> Any:
    """A DDRF with random weights everywhere, the zero-initialised output and modulation convs included (an untrained
    model returns LMS exactly, which would hide any tile dependence): for measuring tiling without training."""
    from ddrf.model import DDRF

    torch.manual_seed(seed)
    model = DDRF(cfg)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and not module.weight.any():
                torch.nn.init.normal_(module.weight, std=0.05)
                torch.nn.init.normal_(module.bias, std=0.05)  # type: ignore[arg-type]  # every DDRF conv that starts at zero has a bias
    return model.eval()


def staged_prediction(model: Any, lms: torch.Tensor, pan: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                      tile: int, halos: tuple[int, int, int] = (16, 32, 16), split: int = 2) -> torch.Tensor:
    """One v1 network call over one in-memory scene (N = 1, sides multiples of config.multiple) by stages
    (ddrf.model.staged): stages 1 and 3 in windows of `tile` PAN pixels, stage 2 in windows of `tile` of its own
    pixels, each with its halo, cut as ddrf-run's stage windows are (`ddrf.scenes.staged.grid`). Needs
    `staged_replay`."""
    from ddrf.model.staged import (check_stageable, decoder_contexts, deep_levels, pooled_condition, shallow_decoder,
                                   shallow_encoder)
    from ddrf.scenes.staged import grid as stage_grid

    check_stageable(model, split)
    scale, align = 2**split, model.config.multiple
    height, width = x_t.shape[-2:]
    if any(v % align for v in (tile, halos[0], halos[2], height, width)) or halos[1] % 2:
        raise ValueError(f"tile, halos and sides must be multiples of {align} (stage 2's halo of 2)")

    def part(x: torch.Tensor, region: tuple[slice, slice], by: int = 1) -> torch.Tensor:
        rows, cols = region
        return x[:, :, rows.start // by:rows.stop // by, cols.start // by:cols.stop // by]

    temb, contexts = model.time(t), decoder_contexts(model, x_t)
    entry = x_t.new_zeros(1, model.config.widths[split - 1], height // scale, width // scale)
    for window, core, place in stage_grid(height, width, tile, halos[0]):
        cond = model.encode(part(lms, window), part(pan, window))
        part(entry, place, scale)[...] = part(shallow_encoder(model, part(x_t, window), temb, cond, split)[-1],
                                              core, scale)
    pooled = pooled_condition(model, lms, pan, split)
    deep = x_t.new_zeros(1, model.config.widths[split], height // scale, width // scale)
    for window, core, place in stage_grid(height // scale, width // scale, tile, halos[1]):
        part(deep, place)[...] = part(deep_levels(model, part(entry, window), temb, part(pooled, window), contexts,
                                                  split), core)
    prediction = torch.zeros_like(x_t)
    for window, core, place in stage_grid(height, width, tile, halos[2]):
        skips = shallow_encoder(model, part(x_t, window), temb, model.encode(part(lms, window), part(pan, window)),
                                split)
        part(prediction, place)[...] = part(shallow_decoder(model, part(deep, window, scale), skips, temb, contexts,
                                                            split), core)
    return prediction
