"""The model card: everything needed to apply a model to new data, carried by every artifact.

A checkpoint's JSON, an ONNX file's metadata, an engine's sidecar and a fused GeoTIFF's run report all hold one.
numpy-free on purpose: the card is plain data.
"""
from __future__ import annotations

import copy
import json
import math
import numbers
import os
import types
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ddrf.files import write_text_atomic

CARD_VERSION = 1
LMS_BORDERS = ("symmetric", "circular")  # ddrf.filters.interp23's borders
# Default (window side in PAN px, batch) per device. The CPU is fed one window at a time. On a GPU one 1024 window
# per call beat four 576 windows on kept pixels per second and on device memory (an H200, PyTorch:
# docs/BENCHMARKS.md, "On a GPU"): this small network is launch-bound, so pixels per call matter, not the batch.
DEFAULT_WINDOWS = {"cpu": (256, 1), "cuda": (1024, 1)}


@dataclass
class Normalisation:
    """Maps digital numbers to the model's range: value = (dn - offset) / scale, per band (guide bands after MS).

    kind "bit_depth": offset 0, scale 2^bits - 1 for every band. kind "fixed": per-band offset and scale (robust
    statistics of the training sensor). Both are fixed by the card, so a model applies to any scene of its sensor.
    kind "scene": offset and scale from robust statistics of each input scene (percentiles `low`/`high` of every
    band over its valid pixels; ddrf.radiometry), which makes a model independent of bit depth and calibration, so
    it carries across sensors (e.g. trained on 8-bit Landsat-7, applied to 16-bit Landsat-8).
    """

    kind: str = "bit_depth"
    bits: int = 8
    low: float = 1.0
    high: float = 99.0
    ms_offset: list[float] = field(default_factory=list)
    ms_scale: list[float] = field(default_factory=list)
    guide_offset: list[float] = field(default_factory=list)
    guide_scale: list[float] = field(default_factory=list)

    def affine(self, which: str, n_bands: int) -> tuple[list[float], list[float]]:
        """Per-band (offset, scale) of the MS bands (`which`="ms") or the guide bands ("guide")."""
        if self.kind == "bit_depth":
            return [0.0] * n_bands, [float(2**self.bits - 1)] * n_bands
        if self.kind == "scene":
            raise ValueError("scene normalisation depends on the scene: use ddrf.radiometry.scene_radiometry")
        offset, scale = (self.ms_offset, self.ms_scale) if which == "ms" else (self.guide_offset, self.guide_scale)
        if len(scale) != n_bands or len(offset) != n_bands:
            raise ValueError(f"normalisation has {len(scale)} {which} scales for {n_bands} bands")
        return list(offset), list(scale)

    def mapping(self) -> "Normalisation":
        """This normalisation less what does not change how it maps values: `bits` counts for kind bit_depth only
        (a scene-normalised model fine-tuned on 12-bit data maps values as its 8-bit base did)."""
        return self if self.kind == "bit_depth" else replace(self, bits=Normalisation.bits)

    def validate(self) -> None:
        check_types(self, "normalisation.")
        if self.kind not in ("bit_depth", "fixed", "scene"):
            raise ValueError(f"normalisation kind must be 'bit_depth', 'fixed' or 'scene', got {self.kind!r}")
        if self.kind == "scene" and not 0 <= self.low < self.high <= 100:
            raise ValueError(f"scene normalisation percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}")
        if self.kind == "bit_depth" and not 1 <= self.bits <= 32:
            raise ValueError(f"bit depth must be 1..32, got {self.bits}")
        if self.kind == "fixed" and not (self.ms_scale and self.guide_scale):
            raise ValueError("fixed normalisation needs ms_scale and guide_scale")


# a window is at least seven halos (`default_window`): past this, one window would not fit any machine's memory, and
# tracing an export at twice the skipped border would need tens of GB
MAX_HALO = 1024

# what a spread fit writes into a card; weights other than those it was fitted on must not carry it
# `ddrf-export onnx --staged`: one sampler step of a v1 network in three graphs (ddrf.model.staged), split at level
# 2 with each stage's halo (stages 1 and 3 in PAN pixels, stage 2 in its own level's): the halos with which
# benchmarks/staged_execution.py reproduced one window over the whole scene
STAGED_DEFAULTS = {"split": 2, "encoder_halo": 16, "deep_halo": 32, "decoder_halo": 16}

CALIBRATION_FIELDS = ("spread_calibration", "spread_calibration_samples", "spread_calibration_steps",
                      "spread_calibration_views")


@dataclass
class ModelCard:
    model: dict[str, Any]  # the network configuration (ddrf.model.DDRFConfig as a dict)
    bands: list[str]  # names of the fused bands, in order (e.g. blue, green, red, nir); band-wise: those trained on
    guide_bands: list[str] = field(default_factory=lambda: ["pan"])
    ratio: int = 4
    sensor: str = "generic"
    normalisation: Normalisation = field(default_factory=Normalisation)
    schedule: dict[str, Any] = field(default_factory=lambda: {"kind": "cosine", "num_timesteps": 1000, "s": 0.008})
    target: str = "x0"
    residual: bool = True
    residual_scale: float = 1.0  # the network diffuses (HRMS - LMS) * residual_scale; fused = LMS + x0 / scale
    sampling_steps: int = 4
    # the per-pixel std of N samples times this is the 1-sigma error, fitted on held-out data (`ddrf-run
    # --uncertainty N` writes the calibrated spread); 1.0 = uncalibrated
    spread_calibration: float = 1.0
    # the N that c was fitted with; for another N, `spread_factor` widens or narrows c by the noise of an N-sample
    # std. None (cards calibrated before this field, uncalibrated ones): c at every N
    spread_calibration_samples: int | None = None
    # the sampler steps K that c was fitted at (the spread of K-step samples grows with K); None: the card's
    # sampling_steps, at which every card fitted before this field was
    spread_calibration_steps: int | None = None
    # the same for the spread of N geometric views (`ddrf-run --ensemble N --uncertainty N`): one {"c", "samples",
    # "steps"} per N and K fitted (`ddrf-eval --views --fit-spread`); each holds only at its own N and K (the views
    # are the first N of eight fixed ones, not independent draws, so Student's t does not carry c to another N).
    # Cards of the thirteenth session hold one fit as a dict, read as a list of one
    spread_calibration_views: list[dict[str, Any]] = field(default_factory=list)
    # interp23's border when the MS is upsampled to the LMS, as in training (data.lms_border); cards written before
    # this field existed were all trained and run with "symmetric"
    lms_border: str = "symmetric"
    # the network fuses one band at a time (model ms_bands 1, the same weights for every band), so it takes any band
    # set: the runtime runs its graphs once per band
    band_wise: bool = False
    # the network's window statistics (v1: GroupNorm, attention keys) are taken once per scene: the runtime runs the
    # scene graph scene_k{K} over the scene's context windows and feeds what it records to the sampler sampler_k{K}
    # (ddrf.model.scene); without it a v1 model's output depends on the tile
    scene_statistics: bool = False
    # context margin, in PAN pixels, that each window needs so that tiles reproduce the whole image
    # (docs/EVALUATION.md, "Tile invariance"); cards written before this field existed ran with 32
    halo: int = 32
    # the unrolled sampler graphs return their input without its outer output_margin pixels on every side, left
    # uncomputed (ddrf.model.DDRF.decoder_crops): ddrf-run's blend gives them no weight (`unweighted_border` of the
    # halo). 0: the whole input (cards written before this field)
    output_margin: int = 0
    # with scene_statistics: the one-step sampler is also exported as three graphs staged_entry_k1, staged_deep_k1
    # and staged_decoder_k1 (ddrf.model.staged), each tiled with its own halo; keys those of STAGED_DEFAULTS. {}: not
    # staged (cards written before this field)
    staged: dict[str, int] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # data, acquisitions, iterations, seed, commands
    hashes: dict[str, str] = field(default_factory=dict)
    card_version: int = CARD_VERSION

    @property
    def size_multiple(self) -> int:
        """Every tile side must be a multiple of this: the fold, then one halving per UNet level below the top
        (ddrf.model.DDRFConfig.multiple, read here without importing the model's torch code)."""
        return int(self.model.get("space_to_depth", 1)) * 2 ** (len(self.model.get("channel_mults", [1])) - 1)

    def croppable(self, border: int) -> int:
        """The widest margin of a window's `border` that this network may leave uncomputed: the border in whole
        margin steps, or 0 where a statistic spans the window (a v1 network that takes no scene statistics), so
        every output pixel depends on the whole window."""
        if self.model.get("arch", "v1") == "v1" and not self.scene_statistics:
            return 0
        return border // self.margin_step * self.margin_step

    @property
    def margin_step(self) -> int:
        """An output margin is a multiple of this, so that padding both sides by it keeps the size multiple."""
        return max(1, self.size_multiple // 2)

    @property
    def graph_bands(self) -> int:
        """MS channels of the graphs: 1 for a band-wise model, else every fused band."""
        return 1 if self.band_wise else len(self.bands)

    @property
    def scene_bands(self) -> list[str] | None:
        """The bands to read from a scene, in order: the card's, or None (every band) for a band-wise model."""
        return None if self.band_wise else list(self.bands)

    @property
    def spread_steps(self) -> int:
        """The sampler steps K at which the spread factor holds."""
        return self.spread_calibration_steps or self.sampling_steps

    def spread_problem(self, steps: int, views: int = 0) -> str | None:
        """Why this card's factor does not calibrate the spread of `steps`-step samples (of `views` views of each
        window, if > 0), or None when it does (unfitted: 1.0 with no N of fit, the default)."""
        if views:
            if not self.spread_calibration_views:
                return "has no spread_calibration_views fitted for --ensemble on its card"
            if self.views_fit(views, steps) is None:
                fitted = ", ".join(f"{f['samples']} views at {f['steps']} step(s)"
                                   for f in self.spread_calibration_views)
                return (f"has its spread_calibration_views fitted at {fitted}, not {views} views at {steps} sampler "
                        "step(s)")
            return None
        if self.spread_calibration_samples is None and self.spread_calibration == 1.0:
            return "has no fitted spread_calibration on its card"
        if self.spread_steps != steps:
            return (f"has its spread_calibration fitted at {self.spread_steps} sampler step(s), not {steps} (the "
                    "spread of the samples grows with the steps)")
        return None

    def views_fit(self, views: int, steps: int) -> dict[str, Any] | None:
        """The spread_calibration_views entry fitted at `views` views of `steps`-step samples, if any."""
        return next((f for f in self.spread_calibration_views if (f["samples"], f["steps"]) == (views, steps)), None)

    def spread_factor(self, samples: int, views: bool = False, steps: int | None = None) -> float:
        """What the std of `samples` draws (of that many views of `steps`-step samples, default the card's, with
        `views`) is multiplied by to give the calibrated 1-sigma error (1.0 where no views fit matches)."""
        if views:
            fit = self.views_fit(samples, steps or self.sampling_steps)
            return float(fit["c"]) if fit else 1.0
        return self.spread_calibration * samples_factor(self.spread_calibration_samples, samples)

    def spread_widening(self, samples: int) -> str | None:
        """None, or a sentence saying that the std of so few draws is too noisy a per-pixel estimate: to keep its
        coverage the calibrated map must be at least twice as wide as from the N of the fit (N = 2 against the
        bundled cards' 8: 5.4x, the t quantile of one degree of freedom)."""
        fitted = self.spread_calibration_samples
        widening = samples_factor(fitted, samples)
        if widening < 2:
            return None
        return (f"the spread of {samples} samples is a noisy estimate of each pixel's: to cover as often, its "
                f"calibrated map is {widening:.1f}x wider than one from the {fitted} samples the factor was fitted "
                f"with; --uncertainty {fitted} gives a sharper map")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def calibration(self) -> dict[str, Any]:
        """The spread fit as card fields, for the card of weights that inherit it (a fine-tuned descendant); the K it
        was fitted at is made explicit, since the receiving card's sampling_steps may differ."""
        fit = {name: copy.deepcopy(getattr(self, name)) for name in CALIBRATION_FIELDS}
        fit["spread_calibration_steps"] = self.spread_steps
        return fit

    def uncalibrated(self) -> "ModelCard":
        """A copy without spread calibration, for weights other than those it was fitted on."""
        fresh = ModelCard(model=self.model, bands=self.bands)  # every other field at its default
        return replace(self, **{name: getattr(fresh, name) for name in CALIBRATION_FIELDS})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        d = dict(d)
        if int(d.get("card_version", CARD_VERSION)) > CARD_VERSION:
            raise ValueError(f"model card version {d['card_version']} is newer than this ddrf ({CARD_VERSION})")
        d["normalisation"] = Normalisation(**d.get("normalisation", {}))
        views = d.get("spread_calibration_views")
        d["spread_calibration_views"] = [views] if isinstance(views, dict) else list(views or [])
        known = set(cls.__dataclass_fields__)
        card = cls(**{k: v for k, v in d.items() if k in known})
        card.validate()
        return card

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        return cls.from_dict(json.loads(text))

    def validate(self) -> None:
        check_types(self)
        for name in ("bands", "guide_bands"):
            names = getattr(self, name)
            if not names or not all(names) or len(set(names)) < len(names):
                raise ValueError(f"{name} must name each band once, got {names}")
        if self.ratio < 2:
            raise ValueError(f"ratio must be >= 2, got {self.ratio}")
        if not self.residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {self.residual_scale}")
        if not self.spread_calibration > 0:
            raise ValueError(f"spread_calibration must be > 0, got {self.spread_calibration}")
        if self.spread_calibration_samples is not None and self.spread_calibration_samples < 2:
            raise ValueError(f"spread_calibration_samples must be >= 2, got {self.spread_calibration_samples}")
        if self.spread_calibration_steps is not None and self.spread_calibration_steps < 1:
            raise ValueError(f"spread_calibration_steps must be >= 1, got {self.spread_calibration_steps}")
        for fit in self.spread_calibration_views:
            if not (isinstance(fit, dict) and set(fit) == {"c", "samples", "steps"} and fit["c"] > 0
                    and fit["samples"] >= 2 and fit["steps"] >= 1):
                raise ValueError(f"spread_calibration_views entries must be {{c > 0, samples >= 2, steps >= 1}}, "
                                 f"got {fit}")
        fitted_at = [(f["samples"], f["steps"]) for f in self.spread_calibration_views]
        if len(set(fitted_at)) < len(fitted_at):
            raise ValueError(f"spread_calibration_views has two fits at the same views and steps: {fitted_at}")
        if self.target not in ("eps", "x0", "v"):
            raise ValueError(f"target must be eps, x0 or v, got {self.target!r}")
        if not 0 <= self.halo <= MAX_HALO:
            raise ValueError(f"halo must be 0..{MAX_HALO} PAN pixels, got {self.halo}")
        if self.sampling_steps < 1:
            raise ValueError(f"sampling_steps must be >= 1, got {self.sampling_steps}")
        self.validate_schedule()
        if self.output_margin < 0 or self.output_margin % self.margin_step:
            raise ValueError(f"output_margin must be a multiple of {self.margin_step} >= 0 (a window padded by the "
                             f"margin keeps its size multiple), got {self.output_margin}")
        if self.scene_statistics and self.model.get("arch", "v1") != "v1":
            raise ValueError("scene_statistics is for v1 networks (v2 has no window statistics)")
        self.validate_staged()
        if self.lms_border not in LMS_BORDERS:
            raise ValueError(f"lms_border must be one of {', '.join(LMS_BORDERS)}, got {self.lms_border!r}")
        self.normalisation.validate()

    def validate_staged(self) -> None:
        """The staged graphs' split and halos: a level inside the network, halos that keep each stage's windows on
        its size multiple (stage 2's windows at level `split` are cut at even pixels, as its downsamplings need)."""
        if not self.staged:
            return
        got = ", ".join(f"{k} {v!r}" for k, v in self.staged.items())
        if set(self.staged) != set(STAGED_DEFAULTS) or not all(fits(v, int) for v in self.staged.values()):
            raise ValueError(f"staged must give the integers {', '.join(STAGED_DEFAULTS)}, got {got}")
        if (not self.scene_statistics or self.model.get("arch", "v1") != "v1"
                or self.model.get("space_to_depth", 1) != 1):
            raise ValueError("staged graphs are for v1 networks without a fold that take scene_statistics")
        levels = len(self.model.get("channel_mults", [1]))
        multiple = self.size_multiple
        if not 1 <= self.staged["split"] < levels:
            raise ValueError(f"staged split must be a level between 1 and {levels - 1}, got {got}")
        encoder, deep, decoder = (self.staged[k] for k in ("encoder_halo", "deep_halo", "decoder_halo"))
        if min(encoder, deep, decoder) < 0 or encoder % multiple or decoder % multiple or deep % 2:
            raise ValueError(f"staged halos must be >= 0, encoder_halo and decoder_halo multiples of {multiple}, "
                             f"deep_halo even, got {got}")

    def validate_schedule(self) -> None:
        """The schedule ddrf.schedule.CosineSchedule.from_dict reads: a cosine one, of at least sampling_steps
        timesteps."""
        kind, timesteps, s = (self.schedule.get(key, default)
                              for key, default in (("kind", "cosine"), ("num_timesteps", 0), ("s", 0.008)))
        if kind != "cosine":
            raise ValueError(f"schedule.kind must be 'cosine' (the only schedule ddrf knows), got {kind!r}")
        if not fits(timesteps, int) or timesteps < self.sampling_steps:
            raise ValueError(f"schedule.num_timesteps must be an integer >= sampling_steps ({self.sampling_steps}), "
                             f"got {timesteps!r}")
        if not fits(s, float) or s < 0:
            raise ValueError(f"schedule.s must be a number >= 0, got {s!r}")
        shift = self.schedule.get("sampling_shift", 0.0)
        if not fits(shift, float) or not math.isfinite(shift):
            raise ValueError(f"schedule.sampling_shift must be a finite number, got {shift!r}")


def fits(value: Any, hint: Any) -> bool:
    """Whether a value read from JSON has the annotated type: an int is a whole number (2.0 is not), a float any
    number, and a bool neither (JSON's true is no number here, though Python counts it one)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(fits(value, arg) for arg in args)
    if hint is Any:
        return True
    if origin in (list, tuple):  # a tuple field (`tuple[int, ...]`) reads as a list from JSON and YAML
        kinds = (list, tuple) if origin is tuple else list
        return isinstance(value, kinds) and all(fits(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint in (int, float):
        kind = numbers.Integral if hint is int else numbers.Real
        return isinstance(value, kind) and not isinstance(value, bool)
    return isinstance(value, hint)


def check_types(obj: Any, prefix: str = "") -> None:
    """Every field of a card dataclass holds its annotated type; the error names the field."""
    for name, hint in typing.get_type_hints(type(obj)).items():
        if not fits(getattr(obj, name), hint):
            written = type(obj).__annotations__[name]
            raise ValueError(f"{prefix}{name} must be of type {written}, got {getattr(obj, name)!r}")


def samples_factor(fitted_with: int | None, samples: int) -> float:
    """How much wider an interval from the std of `samples` draws must be than one from `fitted_with` draws to cover
    as much: the ratio of Student's t 97.5 % quantiles, since the fewer the draws, the noisier their std
    (docs/EVALUATION.md, "The spread at any N")."""
    if fitted_with is None or samples == fitted_with or samples < 2:
        return 1.0
    from scipy.stats import t  # only --uncertainty needs it: imported here, not at every start

    return float(t.ppf(0.975, samples - 1) / t.ppf(0.975, fitted_with - 1))


def unweighted_border(halo: int) -> int:
    """Outer pixels of each window side that ddrf-run's blend gives no weight (ddrf.scenes.tiling.axis_weights): the
    first 3/4 halo, where the network saw the window's edge instead of the scene."""
    return (3 * halo + 2) // 4 if halo > 0 else 0


def default_window(halo: int, device: str) -> tuple[int, int]:
    """(window side, batch) for a model with this halo on "cpu" or "cuda": the device's default, widened to at
    least seven halos (rounded up to 64 px) so that more than half of each window is kept. Seven, not six, since
    the decoder skips the unweighted border (`output_margin`): the bundled ratio-2 model's 704 window is 1.1x faster
    than 576 and stays under 1 GiB (docs/BENCHMARKS.md, "Twelfth session")."""
    side, batch = DEFAULT_WINDOWS[device]
    return max(side, -(-7 * halo // 64) * 64), batch


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read a card from a JSON file, with the file named in any error."""
    path = Path(path)
    try:
        return ModelCard.from_json(path.read_text())
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path}: not a valid model card ({exc})") from exc


def write_card(card: ModelCard, path: str | os.PathLike[str]) -> None:
    write_text_atomic(path, card.to_json() + "\n")
