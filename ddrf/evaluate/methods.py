"""Methods ddrf-eval compares: classical baselines, DDRF through the ONNX runtime, DDRF from a torch checkpoint.

DDRF fuses through `ddrf-run`'s tiled path by default (its windows, halo, feathered blend and keyed noise, via
ddrf/scenes/arrays.py), so the scores are those of the product users get; `Tiling(whole_image=True)` fuses the whole
image at once. Only `ckpt:` imports torch, and only when it first fuses, so classical (and ONNX) evaluations stay
torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ddrf.card import ModelCard
from ddrf.evaluate.datasets import Sample

if TYPE_CHECKING:
    from ddrf.model import DDRF
    from ddrf.runtime.fuser import Fuser
    from ddrf.scenes.engines import ModelEngine

CLASSICAL_ALIASES = ("all", "classical")
CPU_BACKEND = "ort-cpu"  # checkpoints sample with torch on the CPU: ddrf-run's CPU tiling is theirs


@dataclass(frozen=True)
class Tiling:
    """How DDRF sees an image: ddrf-run's windows (`tile` None: the backend's ddrf-run default) or all at once;
    `views`: the samples are views of each window (ddrf-run --ensemble), not only seeds."""

    whole_image: bool = False
    tile: int | None = None
    views: bool = False

    def __post_init__(self) -> None:
        if self.whole_image and self.tile is not None:
            raise ValueError("--tile and --whole-image exclude each other")
        if self.whole_image and self.views:
            raise ValueError("--views goes through ddrf-run's windows, not --whole-image")
        if self.tile is not None and self.tile < 8:
            raise ValueError(f"--tile {self.tile}: a window side is at least 8 PAN px")

    def resolved(self, backend: str, card: Any) -> tuple[int, int, int]:
        """(tile, halo, batch) as ddrf-run would run this model (its card's halo) on `backend`."""
        from ddrf.scenes.engines import default_tiling

        tile, batch = default_tiling(backend, halo=card.halo)
        return self.tile or tile, card.halo, batch

    def settings(self, backend: str, engine: Any) -> dict[str, Any]:
        """What the report records of the tiling; `engine` the one `fuse` is given (its halo: the card's, or a
        staged model's stage 3's where --tile runs it staged)."""
        if self.whole_image:
            return {"fusion_path": "whole image at once (--whole-image)"}
        tile, _, batch = self.resolved(backend, engine.card)
        staged = getattr(engine, "staged", False)
        return {"fusion_path": "tiled, as ddrf-run (windows, halo, feathered blend, origin-keyed noise)", "tile": tile,
                "halo": engine.halo, "batch": batch, "tile_default": self.tile is None, "views": self.views,
                "staged": dict(engine.card.staged) if staged else None}

    def fuse(self, engine: Any, sample: Sample, backend: str) -> np.ndarray:
        from ddrf.scenes.arrays import ArrayScene, fuse_arrays

        tile, _, batch = self.resolved(backend, engine.card)
        # the engine's halo: the card's, or a staged model's stage 3's where --tile runs it staged (as ddrf-run does)
        return fuse_arrays(engine, ArrayScene(sample.pan, sample.ms, sample.ratio, sample.name), tile, engine.halo,
                           batch)


def seeds_of(seed: int, samples: int) -> list[int]:
    return list(range(seed, seed + samples))


def mean_of(outs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(np.mean(np.stack(outs), axis=0, dtype=np.float64))


@dataclass
class Classical:
    name: str

    def settings(self) -> dict[str, Any]:
        return {"kind": "classical", "lms": "interp23 (circular border)"}

    def fuse(self, sample: Sample) -> np.ndarray:
        from ddrf.baselines import fuse

        return fuse(self.name, sample.pan, sample.ms, sample.ratio, sample.sensor)


@dataclass
class OnnxDDRF:
    """DDRF exported to ONNX, run by the torch-free `Fuser`; the output is the mean of `samples` seeds."""

    model_dir: Path
    steps: int | None = None
    samples: int = 1
    seed: int = 0
    backend: str = "ort-cpu"
    tiling: Tiling = Tiling()
    label: str = ""  # the name in the tables; the folder's name unless another model's folder has that name too
    _fuser: "Fuser | None" = field(default=None, repr=False)

    @property
    def folder(self) -> Path:
        return self.model_dir

    @property
    def name(self) -> str:
        steps = f"-K{self.steps}" if self.steps else ""
        members = f"-{'V' if self.tiling.views else 'N'}{self.samples}" if self.samples > 1 else ""
        return f"DDRF[{self.label or self.folder.name}{steps}{members}]"

    def fuser(self) -> "Fuser":
        if self._fuser is None:
            from ddrf.runtime.backends import BackendUnavailable
            from ddrf.runtime.fuser import Fuser

            try:
                self._fuser = Fuser(self.model_dir, backend=self.backend, steps=self.steps, unrolled="auto")
            except BackendUnavailable as exc:  # the backend cannot run on this machine
                raise ValueError(f"{self.model_dir}: {exc}") from exc
        return self._fuser

    def settings(self) -> dict[str, Any]:
        f = self.fuser()
        return {"kind": "ddrf-onnx", "model_dir": str(self.model_dir), "backend": self.backend, "steps": f.steps,
                "samples": self.samples, "seeds": seeds_of(self.seed, self.samples),
                "card_sensor": f.card.sensor, "card_bands": list(f.card.bands), "card_ratio": f.card.ratio,
                "trained_on": f.card.training.get("acquisitions_used"),
                **self.tiling.settings(self.backend, self.engine(self.seed, 0))}

    def fuse(self, sample: Sample) -> np.ndarray:
        return mean_of(self.fuse_samples(sample))

    def fuse_samples(self, sample: Sample) -> list[np.ndarray]:
        """One (H, W, B) fused image per seed: what `ddrf-run --seed s` writes for each."""
        fuser = self.fuser()
        check_card(fuser.card, sample, self.model_dir)
        if self.tiling.whole_image:
            return [fuser.fuse(sample.pan, sample.ms, seed=s) for s in seeds_of(self.seed, self.samples)]
        return [self.tiling.fuse(self.engine(s, k), sample, self.backend)
                for k, s in enumerate(seeds_of(self.seed, self.samples))]

    def engine(self, seed: int, member: int) -> "ModelEngine":
        """The engine of one member, as ddrf-run builds it for this tile (a staged model may run staged)."""
        from ddrf.scenes.engines import ModelEngine

        return ModelEngine(self.fuser(), seed=seed, first_view=member if self.tiling.views else None,
                           tile=self.tiling.tile)


@dataclass
class CheckpointDDRF:
    """DDRF from a training checkpoint (EMA weights), sampled with the torch DDIM sampler on CPU.

    Normalisation, padding and the start noise (`scene_noise`) match the ONNX runtime, so a checkpoint and its
    export should agree to float tolerance.
    """

    path: Path
    steps: int | None = None
    samples: int = 1
    seed: int = 0
    tiling: Tiling = Tiling()
    label: str = ""  # as OnnxDDRF.label
    _loaded: "tuple[DDRF, ModelCard] | None" = field(default=None, repr=False)

    @property
    def name(self) -> str:
        steps = f"-K{self.steps}" if self.steps else ""
        members = f"-N{self.samples}" if self.samples > 1 else ""
        return f"DDRF-ckpt[{self.label or self.folder.name}{steps}{members}]"

    @property
    def folder(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent

    def load(self) -> "tuple[DDRF, ModelCard]":
        if self._loaded is None:
            from ddrf.train.checkpoint import load_checkpoint

            self._loaded = load_checkpoint(self.path)
        return self._loaded

    def settings(self) -> dict[str, Any]:
        from ddrf.train.tiled import TorchEngine

        model, card = self.load()
        steps = self.steps or card.sampling_steps
        return {"kind": "ddrf-checkpoint", "path": str(self.path), "steps": steps,
                "samples": self.samples, "seeds": seeds_of(self.seed, self.samples),
                "card_sensor": card.sensor, "card_bands": list(card.bands), "card_ratio": card.ratio,
                "trained_on": card.training.get("acquisitions_used"),
                **self.tiling.settings(CPU_BACKEND, TorchEngine(model, card, steps, seed=self.seed))}

    def fuse(self, sample: Sample) -> np.ndarray:
        return mean_of(self.fuse_samples(sample))

    def fuse_samples(self, sample: Sample) -> list[np.ndarray]:
        """One (H, W, B) fused image per seed, tiled by train/tiled.py's torch engine unless whole-image."""
        if self.tiling.whole_image:
            return self._whole_image(sample)
        import torch

        from ddrf.train.tiled import TorchEngine

        model, card = self.load()
        check_card(card, sample, self.path)
        steps = self.steps or card.sampling_steps
        with torch.no_grad():
            return [self.tiling.fuse(TorchEngine(model, card, steps, seed=s), sample, CPU_BACKEND)
                    for s in seeds_of(self.seed, self.samples)]

    def _whole_image(self, sample: Sample) -> list[np.ndarray]:
        import torch

        from ddrf.schedule import CosineSchedule
        from ddrf.train.diffusion import Diffusion

        from ddrf.runtime.fuser import InputPreparation

        model, card = self.load()
        check_card(card, sample, self.path)
        prep = InputPreparation(card)
        radiometry = prep.radiometry(sample.pan, sample.ms)
        diffusion = Diffusion(CosineSchedule.from_dict(card.schedule), card.target, card.residual, card.residual_scale)
        h, w = sample.pan.shape
        outs = []
        for seed in seeds_of(self.seed, self.samples):
            lms, guide, noise = prep.prepare(sample.pan, sample.ms, radiometry, seed)
            fused = diffusion.sample(model, torch.from_numpy(lms[None]), torch.from_numpy(guide[None]),
                                     self.steps or card.sampling_steps, noise=torch.from_numpy(noise[None]))
            outs.append(radiometry.ms_from_model(np.moveaxis(fused[0].numpy()[:, :h, :w], 0, -1)))
        return outs


Method = Union[Classical, OnnxDDRF, CheckpointDDRF]


def check_card(card: ModelCard, sample: Sample, where: Path) -> None:
    """A model fuses only its own ratio and bands; say which when the data differ (`--bands` picks them)."""
    from ddrf.sensors import KNOWN_BAND_NAMES

    named = [b.lower() for b in sample.band_names]
    if card.band_wise and card.ratio == sample.ratio:  # any band set
        return
    if card.ratio != sample.ratio or len(card.bands) != sample.ms.shape[-1]:
        raise ValueError(f"{where}: the model fuses {len(card.bands)} bands at ratio {card.ratio}, "
                         f"image {sample.name} has {sample.ms.shape[-1]} bands at ratio {sample.ratio}"
                         f" (choose them with --bands {','.join(card.bands)})")
    if all(n in KNOWN_BAND_NAMES for n in named) and named != [b.lower() for b in card.bands]:  # named, not b1..
        raise ValueError(f"{where}: the model fuses bands {', '.join(card.bands)}, image {sample.name} has "
                         f"{', '.join(sample.band_names)} (choose them with --bands {','.join(card.bands)})")


def parse_methods(spec: str, steps: int | None = None, samples: int = 1, seed: int = 0,
                  backend: str = "ort-cpu", tiling: Tiling = Tiling()) -> list["Method"]:
    """`EXP,GSA,ddrf:DIR,ckpt:PATH` -> method objects; `all`/`classical` expand to every toolbox baseline,
    `variants` to every named departure from the toolbox (MTF-GLP-HPM-robust ...)."""
    from ddrf.baselines import ALL_METHODS, METHODS, VARIANTS
    from ddrf.runtime.views import check_view_count

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if tiling.views:
        check_view_count(samples, "--views --samples")
    by_lower = {m.lower(): m for m in ALL_METHODS}
    methods: list[Method] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        kind, sep, rest = item.partition(":")
        if sep and kind == "ddrf":
            from ddrf.bundled import model_folder

            path = model_folder(rest)
            if not path.is_dir():
                raise ValueError(f"{path}: not a DDRF model folder")
            methods.append(OnnxDDRF(path, steps, samples, seed, backend, tiling))
        elif sep and kind == "ckpt":
            path = Path(rest)
            if not path.exists():
                raise ValueError(f"{path}: checkpoint does not exist")
            if tiling.views:
                raise ValueError(f"{path}: --views runs exported models (ddrf:DIR), not checkpoints")
            methods.append(CheckpointDDRF(path, steps, samples, seed, tiling))
        elif item.lower() in CLASSICAL_ALIASES:
            methods.extend(Classical(m) for m in METHODS)
        elif item.lower() == "variants":
            methods.extend(Classical(m) for m in VARIANTS)
        elif item.lower() in by_lower:
            methods.append(Classical(by_lower[item.lower()]))
        else:
            raise ValueError(f"--methods: unknown method {item!r}; known: {', '.join(ALL_METHODS)}, "
                             "classical, variants, ddrf:MODEL_DIR, ckpt:PATH")
    if not methods:
        raise ValueError(f"--methods {spec!r}: give at least one method")
    label_apart(methods)
    names = [m.name for m in methods]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--methods {spec!r}: {', '.join(repeated)} given more than once")
    return methods


def label_apart(methods: list["Method"]) -> None:
    """Models whose folders share a name (runs/a/model, runs/b/model) are labelled with as many trailing parts of
    their paths as tell them apart, so that each keeps its own row."""
    groups: dict[str, list[OnnxDDRF | CheckpointDDRF]] = {}
    for m in methods:
        if isinstance(m, (OnnxDDRF, CheckpointDDRF)):
            groups.setdefault(m.name, []).append(m)
    for clash in (g for g in groups.values() if len(g) > 1):
        parts = [m.folder.absolute().parts for m in clash]
        for k in range(2, max(map(len, parts)) + 1):
            labels = ["/".join(p[-k:]) for p in parts]
            if len(set(labels)) == len(labels):
                for m, label in zip(clash, labels):
                    m.label = label
                break
