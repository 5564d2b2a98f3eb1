"""Patch datasets in normalised [0, 1]: PanCollection files (patches already made) and Wald pairs made from `Pair`s.

Every source draws a patch from a numpy Generator (`draw(rng)`), so the trainer's batches are a function of its
seeded generator and resume / DDP sampling are exact. Items are dicts of float32 tensors lms (C,H,W), pan (G,H,W),
gt (C,H,W), all on the PAN grid of the (reduced-resolution) training pair.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ddrf.radiometry import scene_radiometry

if TYPE_CHECKING:
    from ddrf.data.pair import Pair
    from ddrf.data.pancollection import PanCollectionFile

KEYS = ("lms", "pan", "gt")


class PatchSource(Protocol):
    ms_bands: int
    guide_bands: int
    ratio: int

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]: ...


def augment(arrays: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One of the 8 dihedral transforms (90-degree rotations x horizontal flip), the same for every array."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = {}
    for key, a in arrays.items():
        a = np.rot90(a, k, axes=(1, 2))
        out[key] = np.ascontiguousarray(a[:, :, ::-1] if flip else a)
    return out


def crop(arrays: dict[str, np.ndarray], patch: int, step: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random patch x patch window whose corner is on a multiple of `step` (keeps the MS pixel phase)."""
    h, w = next(iter(arrays.values())).shape[1:]
    y = step * int(rng.integers((h - patch) // step + 1))
    x = step * int(rng.integers((w - patch) // step + 1))
    return {k: a[:, y:y + patch, x:x + patch] for k, a in arrays.items()}


def collate(items: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([it[k] for it in items]).astype(np.float32, copy=False)) for k in KEYS}


def draw_batch(source: PatchSource, rng: np.random.Generator, n: int) -> dict[str, torch.Tensor]:
    return collate([source.draw(rng) for _ in range(n)])


def patch_step(ratio: int, multiple: int) -> int:
    """Patches must be a multiple of both the ratio and the model's size multiple."""
    return ratio * multiple // math.gcd(ratio, multiple)


def _lms_interp23(ms_chw: np.ndarray, ratio: int, border: str) -> np.ndarray:
    from ddrf.filters import interp23

    return np.ascontiguousarray(interp23(ms_chw.transpose(1, 2, 0), ratio, border=border).transpose(2, 0, 1))


Teacher = Callable[[np.ndarray, np.ndarray], np.ndarray]  # PAN (H, W), MS (h, w, B) in DN -> fused (H, W, B) DN


class WaldPatches:
    """Reduced-resolution training pairs by Wald's protocol: the input is (degraded PAN, interp23 of degraded MS),
    the reference is the original MS. The degraded arrays are computed once; draws crop and augment them.

    With a `teacher` (distillation) the reference is the teacher's fusion of the same inputs instead, and with
    `full_resolution` every pair also joins undegraded, its reference the teacher's fusion at the pair's own scale.
    """

    def __init__(self, pairs: Sequence[Any], patch: int, multiple: int = 1, augment: bool = True,
                 sensor: str | None = None, bits: int | None = None, border: str = "symmetric",
                 normalisation: str = "bit_depth", percentiles: tuple[float, float] = (1.0, 99.0),
                 simulate_ratio: int | None = None, teacher: Teacher | None = None, full_resolution: bool = False):
        if not pairs:
            raise ValueError("Wald dataset: no training pairs")
        first = pairs[0]
        for p in pairs:
            if p.ratio != first.ratio:
                raise ValueError(f"pair {p.name!r}: ratio {p.ratio}, pair {first.name!r} ratio {first.ratio}: "
                                 "one run trains one ratio")
            if tuple(p.band_names) != tuple(first.band_names):
                raise ValueError(f"pair {p.name!r}: bands {','.join(p.band_names)}, pair {first.name!r} bands "
                                 f"{','.join(first.band_names)}: one run trains one band set")
        if simulate_ratio and int(first.ratio) != 2:
            raise ValueError(f"data.simulate_ratio needs ratio-2 pairs, pair {first.name!r} has ratio {first.ratio}")
        self.simulated = bool(simulate_ratio)
        self.ratio = int(simulate_ratio or first.ratio)
        self.ms_bands, self.guide_bands = int(first.bands), 1
        self.band_names = tuple(first.band_names)
        self.sensor = sensor or first.sensor
        self.bits = int(bits or first.bits)
        from ddrf.card import Normalisation

        self.normalisation = Normalisation(kind=normalisation, bits=self.bits, low=percentiles[0], high=percentiles[1])
        self.normalisation.validate()
        self.patch, self.augment, self.border = patch, augment, border
        self.step = patch_step(self.ratio, multiple)
        if patch % self.step:
            raise ValueError(f"patch {patch} must be a multiple of {self.step} (ratio {self.ratio}, model multiple "
                             f"{multiple})")
        # the teacher is used here only, not kept: its sessions are freed before training starts
        self.images = [self._prepare(p, teacher) for p in pairs]
        if full_resolution:
            if teacher is None or self.simulated:
                raise ValueError("full-resolution pairs need a teacher and the pairs' own ratio")
            self.images += [self._normalised(pan, ms, teacher(pan, ms)) for pan, ms in map(self._whole_pixels, pairs)]
        areas = np.array([im["gt"].shape[1] * im["gt"].shape[2] for im in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def _whole_pixels(self, pair: "Pair") -> tuple[np.ndarray, np.ndarray]:
        """(PAN, MS) of the pair as floats, cropped to whole MS pixels of the ratio (a degraded grid divides evenly)."""
        r = self.ratio
        h, w = (s - s % r for s in pair.ms.shape[:2])
        return np.asarray(pair.pan[: r * h, : r * w], np.float64), np.asarray(pair.ms[:h, :w], np.float64)

    def _prepare(self, pair: "Pair", teacher: Teacher | None) -> dict[str, np.ndarray]:
        from ddrf.filters import wald_degrade, wald_simulate_ratio

        self._check_patch_fits(pair)
        if self.simulated:  # PAN x2 onto the MS grid, MS x ratio: the original MS stays the reference
            pan_lr, ms_lr, ms = wald_simulate_ratio(pair.pan, pair.ms, self.sensor, self.ratio)
        else:
            pan, ms = self._whole_pixels(pair)
            pan_lr, ms_lr = wald_degrade(pan, ms, self.ratio, self.sensor)
        return self._normalised(pan_lr, ms_lr, ms if teacher is None else teacher(pan_lr, ms_lr))

    def _check_patch_fits(self, pair: "Pair") -> None:
        """Wald's protocol puts the degraded PAN on the MS grid, so a patch (on the training pair's PAN grid) is cut
        from the MS's pixels, those of whole ratio blocks: the refusal says the sizes on that one grid."""
        side = min(s - s % self.ratio for s in pair.ms.shape[:2])
        if side >= self.patch:
            return
        (h, w), (ph, pw) = pair.ms.shape[:2], pair.pan.shape
        fits = f"at most patch {side // self.step * self.step}" if side >= self.step else "no patch fits"
        raise ValueError(f"{pair.source or f'pair {pair.name!r}'}: patch {self.patch} is larger than the training "
                         f"pair: Wald's protocol degrades the PAN by the ratio {pair.ratio}, so patches are cut on the "
                         f"scene's MS grid, where it is {h}x{w} (its PAN {ph}x{pw}); {fits} (data.patch, "
                         f"ddrf-finetune --patch)")

    def _normalised(self, pan: np.ndarray, ms: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs (PAN, interp23 of MS) and reference in model units, by the map the runtime applies: the card
        normalisation with statistics (if per scene) of the model's inputs."""
        radiometry = scene_radiometry(self.normalisation, ms, pan[..., None])
        lms = _lms_interp23(np.asarray(ms, dtype=np.float64).transpose(2, 0, 1), self.ratio, self.border)
        return {"lms": radiometry.ms_to_model(lms.transpose(1, 2, 0)).transpose(2, 0, 1).copy(),
                "pan": radiometry.guide_to_model(pan[..., None]).transpose(2, 0, 1).copy(),
                "gt": radiometry.ms_to_model(reference).transpose(2, 0, 1).copy()}

    def __len__(self) -> int:
        return len(self.images)

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        im = self.images[int(rng.choice(len(self.images), p=self.weights))]
        item = crop(im, self.patch, self.step, rng)
        return augment(item, rng) if self.augment else {k: np.ascontiguousarray(v) for k, v in item.items()}


class OneBandPatches:
    """Each draw of `source` reduced to one of its bands, chosen at random: a band-wise model (one band in and out,
    the same weights for every band) learns from every band of the training pairs and then takes any band set."""

    def __init__(self, source: PatchSource):
        self.source, self.ratio = source, source.ratio
        self.ms_bands, self.guide_bands = 1, source.guide_bands

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        item = self.source.draw(rng)
        band = int(rng.integers(self.source.ms_bands))
        return {**item, "lms": item["lms"][band:band + 1], "gt": item["gt"][band:band + 1]}


class PanCollectionPatches:
    """Patches of a PanCollection-schema file (pansharpening gt/ms/lms/pan, or hyperspectral GT/LRHSI/RGB/HSI_up).

    `lms="interp23"` recomputes the LMS from the MS exactly as the runtime does; "file" keeps the file's.
    A `patch` smaller than the stored patches crops them at random.
    """

    def __init__(self, file: "PanCollectionFile", ratio: int | None = None, patch: int | None = None, multiple: int = 1,
                 augment: bool = True, lms: str = "interp23", border: str = "symmetric"):
        if len(file) == 0:
            raise ValueError(f"{getattr(file, 'path', 'PanCollection file')}: no patches")
        first = file[0]
        if "gt" not in first:
            raise ValueError(f"{getattr(file, 'path', 'PanCollection file')}: no gt (a full-resolution file?); "
                             "training needs reduced-resolution data")
        c, h, w = first["gt"].shape
        self.ms_bands, self.guide_bands = int(c), int(first["pan"].shape[0])
        self.ratio = int(ratio or round(h / first["ms"].shape[1]))
        self.file, self.augment, self.lms, self.border = file, augment, lms, border
        self.step = patch_step(self.ratio, multiple)
        self.patch = int(patch or h)
        if self.patch > min(h, w) or self.patch % self.step:
            raise ValueError(f"patch {self.patch} must be <= {min(h, w)} and a multiple of {self.step}")

    def __len__(self) -> int:
        return len(self.file)

    def item(self, index: int) -> dict[str, np.ndarray]:
        d = self.file[index]
        if self.lms == "interp23":
            lms = _lms_interp23(np.asarray(d["ms"], np.float64), self.ratio, self.border)
        else:
            lms = d["lms"]
        return {"lms": np.asarray(lms, np.float32), "pan": np.asarray(d["pan"], np.float32),
                "gt": np.asarray(d["gt"], np.float32)}

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        item = self.item(int(rng.integers(len(self.file))))
        if self.patch < item["gt"].shape[1] or self.patch < item["gt"].shape[2]:
            item = crop(item, self.patch, self.step, rng)
        return augment(item, rng) if self.augment else {k: np.ascontiguousarray(v) for k, v in item.items()}
