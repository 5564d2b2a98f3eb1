"""`Fuser`: the array-level API of the runtime. PAN and MS in digital numbers in, fused HRMS out; no torch.

One fusion is three stages, each a public method so that ddrf-profile times the path users run: `prepare_batch`
(interp23, normalisation, padding, keyed noise), `fuse_normalised` (the one sampler loop, ddrf.sampling, over the
backend sessions) and `to_digital_numbers` (crop and denormalise).
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np

from ddrf.card import ModelCard
from ddrf.model_dir import CARD_NAME, ONNX_SUFFIX, STAGED_STAGES, ModelDir
from ddrf.radiometry import Radiometry, scene_radiometry
from ddrf.runtime.backends import Backend, backend_info, open_backend
from ddrf.runtime.checks import check_count, check_values
from ddrf.runtime.noise import scene_noise
from ddrf.sampling import StageCallback, by_graph_bands, sample
from ddrf.schedule import CosineSchedule, make_plan
from ddrf.filters import interp23


def model_identity(model: str | os.PathLike[str]) -> tuple[str, str]:
    """What a model path names now, for caches of loaded models: the resolved folder (a relative path names another
    one after os.chdir) and its card's sha256 (a re-export or fine-tune into the folder rewrites the card, which
    records every graph's sha256); no card: empty, and opening it says why."""
    root = Path(model).resolve()
    root = root.parent if root.name == CARD_NAME and root.is_file() else root
    card = root / CARD_NAME
    return str(root), hashlib.sha256(card.read_bytes()).hexdigest() if card.is_file() else ""


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
        if ms.ndim != 3 or not ms.shape[-1]:
            raise ValueError(f"MS must be (h, w, bands), got shape {ms.shape}")
        if ms.shape[-1] != bands and not self.card.band_wise:
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
        # the border the model was trained with (symmetric: a tile's edge is not the wrap-around of its opposite)
        lms = interp23(ms.astype(np.float64), self.card.ratio, border=self.card.lms_border)
        height, width = guide.shape[:2]
        pad = ((0, 0), (0, (-height) % self.multiple), (0, (-width) % self.multiple))
        lms_n = np.pad(np.moveaxis(radiometry.ms_to_model(lms), -1, 0), pad, mode="reflect")
        pan_n = np.pad(np.moveaxis(radiometry.guide_to_model(guide), -1, 0), pad, mode="reflect")
        return lms_n, pan_n, self.start_noise(seed, origin, lms_n.shape)

    def start_noise(self, seed: int, origin: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
        """The (C, H, W) starting noise of the window at `origin`, keyed to those coordinates (ddrf-run's: the
        CRS pixel lattice, `ddrf.scenes.engines.noise_origins`)."""
        bands, height, width = shape
        if self.card.band_wise:  # every band starts from the same noise: a band's output is the same in any band set
            return np.repeat(scene_noise(seed, 1, origin[0], origin[1], height, width), bands, axis=0)
        return scene_noise(seed, bands, origin[0], origin[1], height, width)

    def prepare_batch(self, pairs: list[tuple[np.ndarray, np.ndarray]], radiometry: Radiometry, seed: int = 0,
                      origins: list[tuple[int, int]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`prepare` for same-sized windows, stacked into NCHW batches (LMS, guide, noise)."""
        origins = origins or [(0, 0)] * len(pairs)
        prepared = [self.prepare(pan, ms, radiometry, seed, origin) for (pan, ms), origin in zip(pairs, origins)]
        lms, guide, noise = (np.stack(parts) for parts in zip(*prepared))
        return lms, guide, noise

    def prepare_members(self, pairs: list[tuple[np.ndarray, np.ndarray]], radiometry: Radiometry, seeds: list[int],
                        origins: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """`prepare_batch` for several seeds: LMS and guide once (interp23 does not depend on the seed), the
        starting noise per seed."""
        lms, guide, first = self.prepare_batch(pairs, radiometry, seeds[0], origins)
        noises = [first] + [np.stack([self.start_noise(seed, origin, lms.shape[1:]) for origin in origins])
                            for seed in seeds[1:]]
        return lms, guide, noises

    def to_digital_numbers(self, fused: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]],
                           radiometry: Radiometry) -> list[np.ndarray]:
        """Normalised NCHW HRMS -> (H, W, B) float32 DN per window, cropped to its PAN size."""
        return [radiometry.ms_from_model(np.moveaxis(f[:, :pan.shape[0], :pan.shape[1]], 0, -1))
                for f, (pan, _) in zip(fused, pairs)]


class Fuser(InputPreparation):
    """Fuses PAN/MS arrays with an exported DDRF model on any backend.

    `steps` defaults to the card's sampling_steps; `unrolled` uses the one-graph sampler for that step count, and
    "auto" does where the model directory has it (deterministic sampling only): the same arithmetic as the encoder
    and denoiser graphs, but one session, so the runtime frees the condition features as soon as they are read (per
    256 window 180 MiB less for a v2 model, 88 MiB for v1; time the same within noise: docs/BENCHMARKS.md).
    """

    def __init__(self, model: str | os.PathLike[str] | ModelDir, backend: str = "ort-cpu",
                 steps: int | None = None, precision: str | None = None, unrolled: bool | str = False,
                 threads: int | None = None, allow_fallback: bool = False, eta: float = 0.0) -> None:
        check_count("steps", steps)  # 0 had been the card's default, silently
        check_count("threads", threads)
        self.files = model if isinstance(model, ModelDir) else ModelDir.open(model)
        self.identity = model_identity(self.files.root)  # the model it serves, for caches (ddrf.fuse, scenes)
        super().__init__(self.files.card)
        self.steps = steps or self.card.sampling_steps
        precision = precision or backend_info(backend).precision
        if self.card.scene_statistics:  # its statistics are recorded and replayed by the unrolled graphs only
            if eta:
                raise ValueError(f"{self.files.root}: a model with scene statistics samples deterministically only")
            unrolled = True
        if unrolled == "auto":
            sampler = self.files.path("sampler", precision, self.steps, backend_info(backend).file_suffix)
            unrolled = eta == 0.0 and sampler.is_file()
        self.plan = make_plan(CosineSchedule.from_dict(self.card.schedule), self.steps, eta)
        self.backend_kind, self.precision, self.unrolled = backend, precision, bool(unrolled)
        suffix = backend_info(backend).file_suffix

        def load(stage: str, steps: int | None = None) -> Backend:
            path = self.files.graph(stage, precision, steps, suffix)  # MissingGraph says what would make it
            opened = open_backend(path, backend, threads, allow_fallback, once=stage == "scene")
            self.files.check_io(stage, path, opened.input_names, opened.output_names)
            self.files.check_channels(path, getattr(opened, "input_shapes", {}))
            self.files.check_card(path, opened.metadata())
            return opened

        # one step of a model exported with staged graphs can also run them (`fuse_normalised(deep=)`), whose
        # windows need a short halo (`stage_halo`); ONNX Runtime only, so far
        self.staged = bool(self.card.staged) and self.steps == 1 and suffix == ONNX_SUFFIX and all(
            self.files.path(stage, precision, 1).is_file() for stage in STAGED_STAGES)
        self._load = load
        unrolled_stages: list[tuple[str, int | None]] = [("sampler", self.steps)]
        unrolled_stages += [("scene", self.steps)] if self.card.scene_statistics else []
        split_stages: list[tuple[str, int | None]] = [("encoder", None), ("denoiser", None)]
        opened = self._load_all(unrolled_stages if unrolled else split_stages)
        if unrolled:
            self.sampler = opened[0]
            if self.card.scene_statistics:
                self.scene_pass = opened[1]
        else:
            self.encoder, self.denoiser = opened
            self.files.check_condition(self.encoder.output_names, self.denoiser.input_names)

    def _load_all(self, stages: list[tuple[str, int | None]]) -> list[Backend]:
        if self.backend_kind == "ort-cpu":  # ONNX Runtime optimises each graph without the GIL: side by side, 0.4 s
            with ThreadPoolExecutor(max_workers=len(stages)) as pool:  # less start-up
                return list(pool.map(lambda stage: self._load(*stage), stages))
        return [self._load(*stage) for stage in stages]  # GPU backends: in this thread, whose CUDA context they use

    @cached_property
    def staged_graphs(self) -> tuple[Backend, Backend, Backend]:
        """A staged model's entry, deep and decoder graphs, opened on first use: a run at the default window never
        uses them (opening them took about 0.5 s of start-up on 2 cores, and their sessions memory)."""
        if not self.staged:
            raise ValueError(f"{self.files.root}: this model runs no staged graphs here")
        entry, deep, decoder = self._load_all([(stage, 1) for stage in STAGED_STAGES])
        return entry, deep, decoder

    @property
    def name(self) -> str:
        """What runs: the backend, or the provider it fell back to where that was allowed."""
        return (self.sampler if self.unrolled else self.denoiser).name

    def encode(self, lms: np.ndarray, pan: np.ndarray) -> dict[str, np.ndarray]:
        """Condition features of a batch, keyed by the denoiser's input names (cond_0 ...)."""
        return self.encoder.run({"lms": lms, "pan": pan})

    def denoise(self, x: np.ndarray, t: np.ndarray, cond: dict[str, np.ndarray]) -> np.ndarray:
        return self.denoiser.run({"x_t": x, "t": t, **cond})["prediction"]

    def scene_context(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray) -> dict[str, np.ndarray]:
        """A scene-statistics model's statistics, recorded over the scene's context windows (prepared like any
        window batch: `prepare_batch` at their origins); empty for any other model."""
        if not self.card.scene_statistics:
            return {}
        return self.scene_pass.run({"lms": lms, "pan": pan, "noise": noise})

    def stage_entry(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray, context: dict[str, np.ndarray],
                    last: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1 of a staged model over a batch: (entry, pooled), the deep levels' inputs (ddrf.model.staged);
        `last`: the scene's last stage-1 window (the session's memory is released after it)."""
        out = self.staged_graphs[0].run({"lms": lms, "pan": pan, "noise": noise, **context}, release=last)
        return out["entry"], out["pooled"]

    def stage_deep(self, entry: np.ndarray, pooled: np.ndarray, context: dict[str, np.ndarray],
                   last: bool = False) -> np.ndarray:
        """Stage 2: the deep levels over (part of) stage 1's map; `last` as for `stage_entry`."""
        return self.staged_graphs[1].run({"entry": entry, "pooled": pooled, **context}, release=last)["deep"]

    @property
    def stage_channels(self) -> tuple[int, int, int]:
        """Channels of a staged model's maps (entry, pooled, deep), as the graphs that take them declare."""
        deep_inputs, decoder_inputs = (getattr(g, "input_shapes", {}) for g in self.staged_graphs[1:])
        return int(deep_inputs["entry"][1]), int(deep_inputs["pooled"][1]), int(decoder_inputs["deep"][1])

    @property
    def stage_halo(self) -> int:
        """The halo a staged model's stage-3 windows need."""
        return int(self.card.staged["decoder_halo"])

    @property
    def output_margin(self) -> int:
        """Pixels of each side that the sampler graph leaves out of its output (only the unrolled ones crop)."""
        return self.card.output_margin if self.unrolled else 0

    def widening(self, border: int) -> int:
        """Pixels of reflection added to each side of a window whose caller keeps all but `border` of its edge,
        where the graph's output margin is wider: whole margin steps, which keep the size multiple."""
        step = self.card.margin_step
        return -(-max(0, self.output_margin - border) // step) * step

    def fuse_normalised(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray, seed: int = 0,
                        cache_condition: bool = True, on_stage: StageCallback | None = None,
                        context: dict[str, np.ndarray] | None = None, border: int = 0,
                        deep: np.ndarray | None = None) -> np.ndarray:
        """Normalised NCHW LMS, guide and initial noise -> normalised HRMS (N, C, H, W).

        `cache_condition=False` re-encodes at every step (a profiling reference); `on_stage` see ddrf.sampling.
        A band-wise model's graphs run once per band. `context` is the scene's `scene_context` (a scene-statistics
        model without one takes its statistics from this batch, as if it were the whole scene).
        `border`: outer pixels of each side that the caller discards (ddrf-run's windows: the blend's unweighted
        border). Up to the graph's output margin they come back as zeros, uncomputed; where the margin is wider, the
        inputs are first widened by reflection so that every other pixel is fused.
        `deep`: a staged model's stage-2 map under these windows, taken from the whole scene's
        (ddrf.scenes.staged): the windows then run stage 3 only (no output margin).
        """
        if context is None:
            context = self.scene_context(lms, pan, noise)
        margin, widen = (self.output_margin, self.widening(border)) if deep is None else (0, 0)
        if widen:
            lms, pan, noise = (np.pad(a, ((0, 0), (0, 0), (widen, widen), (widen, widen)), mode="reflect")
                               for a in (lms, pan, noise))
        fused = np.asarray(by_graph_bands(
            lambda lms_g, pan_g, noise_g: self._run_graphs(lms_g, pan_g, noise_g, seed, cache_condition, on_stage,
                                                           context, deep),
            lms, pan, noise, self.card.graph_bands))
        left_out = margin - widen
        return np.pad(fused, ((0, 0), (0, 0), (left_out, left_out), (left_out, left_out))) if left_out else fused

    def _run_graphs(self, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray, seed: int, cache_condition: bool,
                    on_stage: StageCallback | None, context: dict[str, np.ndarray],
                    deep: np.ndarray | None = None) -> np.ndarray:
        """The sampler over the bands the graphs take at once (without the output margin, if the graph has one)."""
        if deep is not None:
            fused = self.staged_graphs[2].run({"lms": lms, "pan": pan, "noise": noise, "deep": deep, **context})["fused"]
            if on_stage is not None:
                on_stage("sample")
            return fused
        if self.unrolled:
            fused = self.sampler.run({"lms": lms, "pan": pan, "noise": noise, **context})["fused"]
            if on_stage is not None:
                on_stage("sample")
            return fused

        def step_noise(i: int) -> np.ndarray:  # only used when eta > 0
            n, c, h, w = noise.shape
            return np.stack([scene_noise(seed + k, c, 0, 0, h, w, step=i + 1) for k in range(n)])

        return np.asarray(sample(self.encode, self.denoise, self.plan, self.card.target, lms, pan,
                                 noise.astype(np.float32), self.card.residual, step_noise, cache_condition, on_stage,
                                 residual_scale=self.card.residual_scale))

    def fuse_batch(self, pairs: list[tuple[np.ndarray, np.ndarray]], seed: int = 0,
                   origins: list[tuple[int, int]] | None = None, radiometry: Radiometry | None = None,
                   context: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Fuse same-sized (pan, ms) windows of one scene in one batch; returns (H, W, B) float32 DN per window.

        Pass the scene's `radiometry` (and, for a scene-statistics model, its `scene_context`) when the windows are
        tiles of a larger scene: otherwise statistics of these windows are used, which would differ from tile to tile.
        """
        for pan, ms in pairs:  # one NaN made the whole output NaN
            check_values("pan", pan)
            check_values("ms", ms)
        radiometry = radiometry or self.radiometry(*pairs[0])
        lms, guide, noise = self.prepare_batch(pairs, radiometry, seed, origins)
        return self.to_digital_numbers(self.fuse_normalised(lms, guide, noise, seed, context=context), pairs,
                                       radiometry)

    def fuse(self, pan: np.ndarray, ms: np.ndarray, seed: int = 0, origin: tuple[int, int] = (0, 0),
             radiometry: Radiometry | None = None) -> np.ndarray:
        """PAN (H, W) or guide (H, W, G) and MS (h, w, B) in digital numbers -> fused (H, W, B) float32 DN.

        `radiometry` defaults to the card's normalisation computed on these arrays.
        """
        return self.fuse_batch([(pan, ms)], seed, [origin], radiometry or self.radiometry(pan, ms))[0]
