"""The bundled models, and the one that fits a scene.

Each bundled model is a model directory under one folder (`ddrf/assets/models/<name>/`, or the folder the environment
variable DDRF_BUNDLED_MODELS names), found by listing it: adding a model is exporting it there. Without `--model`,
ddrf-run and the Python API fuse each scene with the bundled model of the scene's ratio whose bands the scene has;
where none fits they refuse with one line naming what would work, never switching method on their own.
Plain Python (no torch): the runtime imports it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ddrf.card import ModelCard
from ddrf.model_dir import CARD_NAME, ModelDir
from ddrf.sensors import listed_bands

FOLDER_VARIABLE = "DDRF_BUNDLED_MODELS"  # another folder of bundled models (tests; a site's own set)
INSTEAD = ("a classical method instead (--method MTF-GLP-HPM-robust, or GSA, MTF-GLP-FS, BDSD-PC ...; method= in "
           "Python), or a model trained for these data (ddrf-finetune or ddrf-train, see README) passed with --model DIR")


class NoFittingModel(ValueError):
    """No bundled model has the scene's ratio and bands; the message says what would work instead."""


@dataclass(frozen=True)
class BundledModel:
    name: str  # its directory name
    path: Path
    card: ModelCard

    def describe(self) -> str:
        bands = "any bands" if self.card.band_wise else ", ".join(self.card.bands)
        return f"{self.name} (ratio {self.card.ratio}, {bands})"


def bundled_folder() -> Path:
    from ddrf.assets import BUNDLED_MODELS

    return Path(os.environ.get(FOLDER_VARIABLE) or BUNDLED_MODELS).resolve()  # reports name the model by it


def bundled_models(folder: Path | None = None) -> list[BundledModel]:
    """Every model directory (a folder with card.json) in the bundled folder, by name; a bad card raises
    ModelDirError naming it."""
    folder = folder or bundled_folder()
    found = sorted(p for p in folder.iterdir() if (p / CARD_NAME).is_file()) if folder.is_dir() else []
    return [BundledModel(p.name, p, ModelDir.open(p).card) for p in found]


def model_folder(given: str | os.PathLike[str]) -> Path:
    """A model directory (resolved) from what the user gave: a path, or else a bundled model's name
    (`landsat_ratio4_band_wise`), so that a bundled model other than the default is named the same way after any
    install. What looks like a path (a slash, a leading dot: `./landsat_ratio2`) is one, never taken for the bundled
    model of its last part."""
    path, spelled = Path(given), os.fspath(given)
    if path.exists():  # resolved: the reports that name it must find it from any folder, read later
        return path.resolve()
    named = {m.name: m.path for m in bundled_models()}
    listed = ", ".join(named) or "none bundled"
    if "/" in spelled or os.sep in spelled or spelled.startswith("."):
        raise ValueError(f"{given}: no model folder there (a path, so not a bundled model's name: {listed})")
    if spelled in named:
        return named[spelled]
    raise ValueError(f"{given}: not a model directory, nor a bundled model ({listed})")



def is_bundled(folder: str | os.PathLike[str]) -> bool:
    """Whether a model folder lies among the bundled ones (the package's own or $DDRF_BUNDLED_MODELS'): a shared asset
    every run of the install uses, however it was named."""
    from ddrf.assets import BUNDLED_MODELS

    path = Path(folder).resolve()
    return any(path.is_relative_to(home.resolve()) for home in (BUNDLED_MODELS, bundled_folder()))

def fits(model: BundledModel, ratio: int, bands: Sequence[str] | None, band_count: int) -> bool:
    """Same ratio, and every band the model needs is in the scene (`bands` None: unnamed arrays, matched by count);
    a band-wise model takes any bands."""
    if int(model.card.ratio) != int(ratio):
        return False
    if model.card.band_wise:
        return band_count >= 1
    if bands is None:
        return len(model.card.bands) == band_count
    return {b.lower() for b in model.card.bands} <= {b.lower() for b in bands}


def bands_used(model: BundledModel, band_count: int) -> int:
    """How many of the scene's bands the model fuses: all of them if band-wise, else its own."""
    return band_count if model.card.band_wise else len(model.card.bands)


def choose_model(what: str, ratio: int, bands: Sequence[str] | None, band_count: int, sensor: str | None = None,
                 models: list[BundledModel] | None = None, instead: str = INSTEAD) -> BundledModel:
    """The bundled model for a scene (`what` names it in the error, `instead` says what would work: the caller's
    own options). Where several fit: the one of the scene's sensor, then the one using most of its bands, then one
    trained for exactly those bands over a band-wise one, then by name."""
    models = bundled_models() if models is None else models
    fitting = [m for m in models if fits(m, ratio, bands, band_count)]
    if not fitting:
        has = f"bands {listed_bands(bands)}" if bands is not None else f"{band_count} unnamed bands"
        offered = "; ".join(m.describe() for m in models) or f"none in {bundled_folder()}"
        raise NoFittingModel(f"{what}: no bundled model fits this scene (ratio {ratio}, {has}; bundled: {offered}); "
                             f"use {instead}")
    return min(fitting, key=lambda m: (m.card.sensor != sensor, -bands_used(m, band_count), m.card.band_wise,
                                       m.name))
