"""Methods ddrf-eval compares: classical baselines, DDRF through the ONNX runtime, DDRF from a torch checkpoint.

Only `ckpt:` imports torch, and only when it first fuses, so classical (and ONNX) evaluations stay torch-free.
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

CLASSICAL_ALIASES = ("all", "classical")


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
    _fuser: "Fuser | None" = field(default=None, repr=False)

    @property
    def name(self) -> str:
        steps = f"-K{self.steps}" if self.steps else ""
        return f"DDRF[{self.model_dir.name}{steps}" + (f"-N{self.samples}]" if self.samples > 1 else "]")

    def fuser(self) -> "Fuser":
        if self._fuser is None:
            from ddrf.runtime.backends import BackendUnavailable
            from ddrf.runtime.fuser import Fuser

            try:
                self._fuser = Fuser(self.model_dir, backend=self.backend, steps=self.steps)
            except BackendUnavailable as exc:  # the backend cannot run on this machine
                raise ValueError(f"{self.model_dir}: {exc}") from exc
        return self._fuser

    def settings(self) -> dict[str, Any]:
        f = self.fuser()
        return {"kind": "ddrf-onnx", "model_dir": str(self.model_dir), "backend": self.backend, "steps": f.steps,
                "samples": self.samples, "seeds": list(range(self.seed, self.seed + self.samples)),
                "card_sensor": f.card.sensor, "card_bands": list(f.card.bands), "card_ratio": f.card.ratio}

    def fuse(self, sample: Sample) -> np.ndarray:
        fuser = self.fuser()
        check_card(fuser.card, sample, self.model_dir)
        outs = [fuser.fuse(sample.pan, sample.ms, seed=s) for s in range(self.seed, self.seed + self.samples)]
        return np.asarray(np.mean(np.stack(outs), axis=0, dtype=np.float64))


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
    _loaded: "tuple[DDRF, ModelCard] | None" = field(default=None, repr=False)

    @property
    def name(self) -> str:
        steps = f"-K{self.steps}" if self.steps else ""
        label = self.path.name if self.path.is_dir() else self.path.parent.name
        return f"DDRF-ckpt[{label}{steps}" + (f"-N{self.samples}]" if self.samples > 1 else "]")

    def load(self) -> "tuple[DDRF, ModelCard]":
        if self._loaded is None:
            from ddrf.train.checkpoint import load_checkpoint

            self._loaded = load_checkpoint(self.path)
        return self._loaded

    def settings(self) -> dict[str, Any]:
        card = self.load()[1]
        return {"kind": "ddrf-checkpoint", "path": str(self.path), "steps": self.steps or card.sampling_steps,
                "samples": self.samples, "seeds": list(range(self.seed, self.seed + self.samples)),
                "card_sensor": card.sensor, "card_bands": list(card.bands), "card_ratio": card.ratio}

    def fuse(self, sample: Sample) -> np.ndarray:
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
        for seed in range(self.seed, self.seed + self.samples):
            lms, guide, noise = prep.prepare(sample.pan, sample.ms, radiometry, seed)
            fused = diffusion.sample(model, torch.from_numpy(lms[None]), torch.from_numpy(guide[None]),
                                     self.steps or card.sampling_steps, noise=torch.from_numpy(noise[None]))
            outs.append(radiometry.ms_from_model(np.moveaxis(fused[0].numpy()[:, :h, :w], 0, -1)))
        return np.asarray(np.mean(np.stack(outs), axis=0, dtype=np.float64))


Method = Union[Classical, OnnxDDRF, CheckpointDDRF]


def check_card(card: ModelCard, sample: Sample, where: Path) -> None:
    """A model fuses only its own ratio and band count; say which when the data differ."""
    if card.ratio != sample.ratio or len(card.bands) != sample.ms.shape[-1]:
        raise ValueError(f"{where}: the model fuses {len(card.bands)} bands at ratio {card.ratio}, "
                         f"image {sample.name} has {sample.ms.shape[-1]} bands at ratio {sample.ratio}")


def parse_methods(spec: str, steps: int | None = None, samples: int = 1, seed: int = 0,
                  backend: str = "ort-cpu") -> list["Method"]:
    """`EXP,GSA,ddrf:DIR,ckpt:PATH` -> method objects; `all`/`classical` expand to every toolbox baseline,
    `variants` to every named departure from the toolbox (MTF-GLP-HPM-robust ...)."""
    from ddrf.baselines import ALL_METHODS, METHODS, VARIANTS

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    by_lower = {m.lower(): m for m in ALL_METHODS}
    methods: list[Method] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        kind, sep, rest = item.partition(":")
        if sep and kind == "ddrf":
            path = Path(rest)
            if not path.is_dir():
                raise ValueError(f"{path}: DDRF model folder does not exist")
            methods.append(OnnxDDRF(path, steps, samples, seed, backend))
        elif sep and kind == "ckpt":
            path = Path(rest)
            if not path.exists():
                raise ValueError(f"{path}: checkpoint does not exist")
            methods.append(CheckpointDDRF(path, steps, samples, seed))
        elif item.lower() in CLASSICAL_ALIASES:
            methods.extend(Classical(m) for m in METHODS)
        elif item.lower() == "variants":
            methods.extend(Classical(m) for m in VARIANTS)
        elif item.lower() in by_lower:
            methods.append(Classical(by_lower[item.lower()]))
        else:
            raise ValueError(f"--methods: unknown method {item!r}; known: {', '.join(ALL_METHODS)}, "
                             "classical, variants, ddrf:MODEL_DIR, ckpt:PATH")
    names = [m.name for m in methods]
    if not methods or len(set(names)) != len(names):
        raise ValueError(f"--methods {spec!r}: give at least one method, each once")
    return methods
