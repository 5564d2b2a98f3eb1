"""Engines for scenes: what turns a batch of (PAN, MS) windows into fused windows, a model or a classical method.

`EngineSpec` says how to build one (hashable, so a process builds each model once: see `get_engine`).
Never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ddrf.card import ModelCard, Normalisation, default_window, unweighted_border
from ddrf.geometry import constant_fact
from ddrf.runtime.backends import GPU_BACKENDS
from ddrf.runtime.views import VIEWS, from_view, to_view
from ddrf.saturation import (CLASSICAL_OUTLIER_UNITS, OUTLIER_UNITS, Ceilings, fill_outliers, network_inputs,
                             restore_outliers, restore_saturated)
from ddrf.scenes import report as reports
from ddrf.scenes.tiling import DEFAULT_HALO, fit_window
from ddrf.sensors import Sensor, get_sensor

if TYPE_CHECKING:
    from ddrf.baselines import Fit as MethodFit  # this module's `Fit` is what a scene must match
    from ddrf.radiometry import Radiometry
    from ddrf.runtime.fuser import Fuser
    from ddrf.scenes.scene import Scene


def default_tiling(backend: str, method: str | None = None, halo: int = DEFAULT_HALO) -> tuple[int, int]:
    """(tile, batch): a model's default window on the backend's device (`ddrf.card.default_window`).

    Classical baselines are cheap per pixel, so they take large windows (fewer halos to recompute).
    """
    if method:
        return 1024, 1
    return default_window(halo, "cuda" if backend in GPU_BACKENDS else "cpu")


class Engine(Protocol):
    """Fuses same-sized windows; returns per window (samples, H, W, B) float DN."""

    label: str
    bands: list[str] | None  # bands it needs from the scene, in order (None: all the scene has)
    ratio: int | None
    multiple: int
    samples: int
    spread_calibration: float  # the spread of its samples times this is the 1-sigma error (ModelCard.spread_factor)
    spread_problem: str | None  # why that factor does not calibrate its spread (None: it does)
    spread_note: str | None  # what to know of a calibrated spread from so few samples (ModelCard.spread_widening)
    halo: int  # the context margin its windows need (PAN pixels)
    default_tile: int  # window side when none is asked for

    def start_scene(self, scene: "Scene", border: int = 0) -> None:
        """Called once per scene before its windows (e.g. for scene-wide radiometric statistics); `border`: the
        outer pixels of each window side that the blend gives no weight (the engine need not compute them)."""

    def prepare(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> Any:
        """The CPU work before the engine proper (ddrf-run does it in its reader thread, beside `run`)."""

    def run(self, prepared: Any) -> list[np.ndarray]:
        """`prepare`'s result -> per window (samples, H, W, B) float DN."""

    def summary(self) -> dict[str, Any]: ...


class ModelEngine:
    """A runtime Fuser; `samples` members, member j with seed `seed + j` (the spread, or an ensemble, is wanted when
    there are several); `first_view` None: every member fuses the window as it is, else member j fuses view
    `first_view + j` of it (ddrf.runtime.views: a geometric self-ensemble); `chosen_by` says why this model (given
    with --model, or the bundled one that fits the scene), for the report."""

    def __init__(self, fuser: "Fuser", seed: int = 0, samples: int = 1, chosen_by: str = "--model",
                 first_view: int | None = None, statistics_from: "StatisticsScene | None" = None,
                 tile: int | None = None) -> None:
        self.fuser, self.seed, self.samples, self.chosen_by = fuser, seed, samples, chosen_by
        self.statistics_from = statistics_from
        self.first_view = first_view
        self.members = [(seed + j, 0 if first_view is None else (first_view + j) % len(VIEWS))
                        for j in range(samples)]  # (seed, view) per member
        self.card = fuser.card
        self.bands: list[str] | None = self.card.scene_bands  # None: every band, like a classical method
        self.ratio: int | None = int(self.card.ratio)
        self.multiple = int(fuser.multiple)
        self.label = f"model ({fuser.files.root})"
        views = first_view is not None
        self.spread_calibration = self.card.spread_factor(samples, views, fuser.steps)
        self.spread_problem = self.card.spread_problem(fuser.steps, samples if views else 0)
        self.spread_note = None if views else self.card.spread_widening(samples)  # views: fitted at their own N
        # Windows smaller than the model's default (`tile`) run a staged model staged: stages 1 and 2 once over the
        # scene, stage 3 in each window with a short halo (ddrf.scenes.staged), faster there and possible below
        # four of the card's halos; at the default window the one-graph sampler was as fast (docs/BENCHMARKS.md).
        # Both give the output of one window over the scene. Each view of a self-ensemble would need maps of its
        # own: views run the sampler.
        self.default_tile = default_tiling(fuser.backend_kind, halo=int(self.card.halo))[0]
        self.staged = (bool(getattr(fuser, "staged", False)) and first_view is None and tile is not None
                       and tile < self.default_tile)
        self.halo = int(fuser.stage_halo if self.staged else self.card.halo)
        self.deep_maps: dict[int, Any] = {}  # per member: a staged model's scene maps (start_scene)
        self.radiometry: Radiometry | None = None
        self.border = 0  # the window border the blend gives no weight (start_scene)
        self.contexts: dict[int, dict[str, np.ndarray]] = {}  # per member: a scene-statistics model's statistics
        self.scene: Any = None  # the scene being fused (start_scene): its saturation values, where its noise is keyed

    def window_limits(self) -> tuple[int, int, int] | None:
        """(smallest side, largest side, largest batch) of a window the backend takes, where it has a fixed
        optimisation profile (TensorRT); None when any size goes."""
        first = getattr(self.fuser, "sampler", None) or getattr(self.fuser, "encoder", None)
        profile_range = getattr(first, "profile_range", None)
        if profile_range is None:
            return None
        lo, hi = profile_range("pan")
        return int(lo[2]), int(hi[2]), int(hi[0])

    def window_side(self, tile: int, halo: int) -> int:
        """The side the backend runs for a `tile` window with this halo: wider where a halo below the card's keeps
        border pixels the graph's output margin leaves out (the Fuser widens such windows by reflection)."""
        return tile if self.staged else tile + 2 * self.fuser.widening(unweighted_border(halo))

    def start_scene(self, scene: "Scene", border: int = 0) -> None:
        """One normalisation for the whole scene, so that tiles agree (per-scene statistics come from a preview),
        and a scene-statistics model's statistics; both from the --statistics-from scene where there is one."""
        self.border, self.scene = border, scene
        self.radiometry, self.contexts = (self.reference_statistics() if self.statistics_from
                                          else self.scene_statistics(scene))
        if self.statistics_from and len(self.radiometry.ms_offset) != len(scene.band_names):  # a band-wise model
            raise ValueError(f"{scene.name}: {len(scene.band_names)} MS bands, the --statistics-from scene "
                             f"{self.statistics_from.directory} has {len(self.radiometry.ms_offset)}: "
                             "give one with the same bands")
        for old in self.deep_maps.values():
            old.values.close()
        self.deep_maps = {}
        if self.staged:
            from ddrf.scenes.staged import deep_maps

            radiometry = self.radiometry

            def prepare(pairs: Any, origins: Any, members: Any) -> Any:
                return member_batches(self.fuser, scene, pairs, radiometry, origins, members)

            self.deep_maps = deep_maps(scene, self.fuser, self.members, self.contexts, prepare)

    def scene_statistics(self, scene: "Scene") -> tuple["Radiometry", dict[int, dict[str, np.ndarray]]]:
        radiometry = preview_radiometry(scene, self.card)
        return radiometry, {j: self.fuser.scene_context(*inputs) for j, inputs in
                            context_inputs(scene, self.fuser, radiometry, self.members).items()}

    def reference_statistics(self) -> tuple["Radiometry", dict[int, dict[str, np.ndarray]]]:
        """`scene_statistics` of the --statistics-from scene, taken once per process for this model and members."""
        assert self.statistics_from is not None
        key = (str(self.fuser.files.root), self.fuser.backend_kind, self.fuser.steps, self.statistics_from,
               tuple(self.members))
        if key not in _REFERENCES:
            _REFERENCES[key] = self.scene_statistics(reference_scene(self.statistics_from, self))
        return _REFERENCES[key]

    def prepare(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> Any:
        """(pairs, radiometry, [(LMS, guide, noise) per member, in its view], origins): interp23, normalisation, keyed
        noise; the origins find a staged run's maps under the windows."""
        radiometry = self.radiometry or self.fuser.radiometry(*pairs[0])
        batches = member_batches(self.fuser, self.scene, pairs, radiometry, origins, self.members)
        return pairs, radiometry, batches, origins

    def run(self, prepared: Any) -> list[np.ndarray]:
        pairs, radiometry, batches, origins = prepared

        def deep(j: int, lms: np.ndarray) -> np.ndarray | None:
            return self.deep_maps[j].under(origins, *lms.shape[-2:]) if j in self.deep_maps else None

        runs = [self.fuser.to_digital_numbers(from_view(
            self.fuser.fuse_normalised(lms, guide, noise, seed, context=self.contexts.get(j), border=self.border,
                                       deep=deep(j, lms)),
            view), pairs, radiometry)
            for j, ((seed, view), (lms, guide, noise)) in enumerate(zip(self.members, batches))]
        return restored([np.stack([run[i] for run in runs]) for i in range(len(pairs))], pairs, self.scene,
                        radiometry, self.card)

    def outliers(self) -> tuple["Radiometry", float] | None:
        """The scene's range and how far past it a value is a stray to the network (None before a scene, or where
        each window is normalised by itself)."""
        return None if self.radiometry is None else (self.radiometry, OUTLIER_UNITS)

    def summary(self) -> dict[str, Any]:
        root = self.fuser.files.root
        return {"kind": "model", "model_dir": str(root), "card": reports.card_summary(self.card),
                "model": {"name": root.name, "path": str(root), "chosen_by": self.chosen_by},
                "card_sha256": self.fuser.identity[1],  # the card as loaded: the folder may be re-exported later
                "radiometry": self.radiometry.to_dict() if self.radiometry is not None else None,
                "backend": self.fuser.backend_kind, "precision": self.fuser.precision, "steps": self.fuser.steps,
                "unrolled": self.fuser.unrolled, "seed": self.seed, "samples": self.samples,
                # border pixels of each window left uncomputed (a staged run's stage 3 computes whole windows)
                "output_margin": 0 if self.staged else self.fuser.output_margin,
                # stages 1 and 2 over the scene, stage 3 in the windows (ddrf.scenes.staged); None: whole windows
                "staged": dict(self.card.staged) if self.staged else None,
                "views": [view for _, view in self.members] if self.first_view is not None else None,
                "statistics_from": self.statistics_from and self.statistics_from.directory,  # None: its own
                "spread_factor": self.spread_calibration,  # kept by the report beside a spread map only
                "spread_fitted": self.spread_problem is None}


class BaselineEngine:
    """A classical method from ddrf.baselines (deterministic: one sample)."""

    def __init__(self, method: str, sensor: str = "generic") -> None:
        from ddrf.baselines import ALL_METHODS

        if method not in ALL_METHODS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(ALL_METHODS)}")
        self.method, self.sensor = method, sensor
        self.label, self.multiple, self.samples = f"baseline {method}", 1, 1
        self.spread_calibration = 1.0
        self.spread_problem: str | None = None  # deterministic: no spread to fit
        self.spread_note: str | None = None
        self.halo = DEFAULT_HALO
        self.default_tile = default_tiling("ort-cpu", method)[0]
        self.bands: list[str] | None = None  # every MS band the scene has
        self.ratio: int | None = None  # any ratio
        self.gains: str | Sensor = sensor  # the sensor's MTF gains for the scene's bands (start_scene)
        self.percentiles: Radiometry | None = None  # the scene's 1st..99th percentiles: where its outliers begin
        self.fit: MethodFit | None = None  # the method's coefficients, fitted once per scene (start_scene)
        self.fitted_on: str | None = None  # where, in words (None: the method fits nothing)

    def start_scene(self, scene: "Scene", border: int = 0) -> None:
        """Each scene band's own MTF gain, by its name, the scene's range, and the method's coefficients fitted once
        on the scene (`fit_window`) for every window to apply: fitted on each window, GSA's output depended on the
        tile (128 px windows moved the sample scene's by p99 up to 61 % of a band's std)."""
        self.gains = get_sensor(self.sensor).for_bands(scene.band_names)
        self.percentiles = scene_range(scene, SCENE_RANGE)
        self.fit, self.fitted_on = self.scene_fit(scene)

    def scene_fit(self, scene: "Scene") -> tuple["MethodFit | None", str | None]:
        """The method's coefficients on the scene's `fit_window`, its inputs read and filled as every window's are
        (nodata by `read_pair`, outliers in `fuse`), and where that window lies, in words."""
        from ddrf.baselines import FITS, fit_method

        if self.method not in FITS:
            return None, None
        box = fit_window(scene.height, scene.width, scene.ratio)
        pan, ms, _ = scene.read_pair(box.row, box.col, box.height, box.width)
        assert self.percentiles is not None
        filled = fill_outliers(pan, ms, self.percentiles, CLASSICAL_OUTLIER_UNITS)
        where = ("the whole scene" if box.height >= scene.height and box.width >= scene.width else
                 f"the central {box.height} x {box.width} px window at row {box.row}, column {box.col}")
        return fit_method(self.method, *filled, ms_ratio(pan, ms), self.gains), where

    def prepare(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> Any:
        return pairs

    def run(self, prepared: Any) -> list[np.ndarray]:
        return [self.fuse(pan, ms) for pan, ms in prepared]

    def fuse(self, pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """(1, H, W, B): the method on the window with its outliers filled as a model's are (ddrf.saturation; a few
        pixels at 1e30 left the PAN no detail beside its mean in float64), their MS part added back upsampled."""
        from ddrf.baselines import fuse

        ratio = ms_ratio(pan, ms)
        if self.percentiles is None:  # no scene started: nothing tells an outlier
            return fuse(self.method, pan, ms, ratio, self.gains)[None]
        units = CLASSICAL_OUTLIER_UNITS
        fused = fuse(self.method, *fill_outliers(pan, ms, self.percentiles, units), ratio, self.gains, self.fit)[None]
        # the methods' interp23 border ("circular"); an outlier at a window's edge lies in its unweighted halo
        return restore_outliers(fused, pan, ms, (None, None), self.percentiles, ratio, "circular", units)

    def outliers(self) -> tuple["Radiometry", float] | None:
        """The scene's range and how far past it a value is a stray to this method (None before a scene)."""
        return None if self.percentiles is None else (self.percentiles, CLASSICAL_OUTLIER_UNITS)

    def summary(self) -> dict[str, Any]:
        return {"kind": "baseline", "method": self.method, "sensor": self.sensor,
                "fitted_on": self.fitted_on}  # where its coefficients were fitted (None: none to fit)


def preview_radiometry(scene: "Scene", card: Any) -> "Radiometry":
    """The card's normalisation for the whole scene, from its decimated preview: one for every tile."""
    return scene_range(scene, card.normalisation)


# the bundled models' normalisation: the range outside which a classical method's input is an outlier
SCENE_RANGE = Normalisation(kind="scene", low=1.0, high=99.0)


def scene_range(scene: "Scene", normalisation: Normalisation) -> "Radiometry":
    """`normalisation` for the whole scene, from its decimated preview."""
    from ddrf.radiometry import scene_radiometry

    pan, pan_valid, ms, ms_valid = scene.preview()
    return scene_radiometry(normalisation, ms, pan[..., None], ms_valid, pan_valid, *scene_ceilings(scene))


def noise_origins(scene: "Scene | None", origins: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Windows' origins (scene row, column) as the noise is keyed: on the scene's CRS pixel lattice
    (`Scene.noise_origin`), so that a pixel draws the same noise in every scene that holds it; in-memory arrays
    keep their own coordinates."""
    row0, col0 = getattr(scene, "noise_origin", (0, 0))
    return [(row0 + row, col0 + col) for row, col in origins]


def scene_ceilings(scene: "Scene | None") -> Ceilings:
    """(MS, PAN) saturation values of the scene's files; unknown (None) for in-memory arrays."""
    return getattr(scene, "ceilings", (None, None))


def context_inputs(scene: "Scene", preparation: Any, radiometry: "Radiometry",
                   members: list[tuple[int, int]]) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per member (seed, view), the prepared (LMS, guide, noise) batch of the scene's context windows
    (ddrf.scenes.tiling.context_windows), in the member's view, for a scene-statistics model's scene pass (each view
    needs its own: the scene's attention tokens are not the same seen turned); empty for any other model."""
    from ddrf.scenes.tiling import context_windows, window_alignment

    if not preparation.card.scene_statistics:
        return {}
    boxes = context_windows(scene.height, scene.width, window_alignment(scene.ratio, preparation.multiple))
    pairs = [scene.read_pair(b.row, b.col, b.height, b.width)[:2] for b in boxes]  # read once for every seed
    origins = [(b.row, b.col) for b in boxes]
    return dict(enumerate(member_batches(preparation, scene, pairs, radiometry, origins, members)))


def member_batches(preparation: Any, scene: "Scene | None", pairs: list[tuple[np.ndarray, np.ndarray]],
                   radiometry: "Radiometry", origins: list[tuple[int, int]],
                   members: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per member (seed, view), its prepared (LMS, guide, noise) batch of `scene`'s windows in its view: saturated
    pixels filled and outliers bounded (ddrf.saturation), the noise keyed to the scene's CRS pixel lattice
    (`noise_origins`), for the windows and the scene pass's context windows alike."""
    seen = [network_inputs(pan, ms, scene_ceilings(scene), radiometry) for pan, ms in pairs]
    seeds = [seed for seed, _ in members]
    lms, guide, noises = preparation.prepare_members(seen, radiometry, seeds, noise_origins(scene, origins))
    return [viewed((lms, guide, noise), view) for (_, view), noise in zip(members, noises)]


def restored(fused: list[np.ndarray], pairs: list[tuple[np.ndarray, np.ndarray]], scene: "Scene | None",
             radiometry: "Radiometry", card: Any) -> list[np.ndarray]:
    """Each window's (samples, H, W, B) DN saying what is known where `member_batches` filled the network's inputs:
    the saturated pixels' values and the strays' upsampled MS (ddrf.saturation); for ModelEngine and the torch
    path's TorchEngine alike, so that both write the same there."""
    ceilings, ratio, border = scene_ceilings(scene), int(card.ratio), card.lms_border
    return [restore_saturated(restore_outliers(f, pan, ms, ceilings, radiometry, ratio, border), pan, ms, ceilings,
                              ratio, border) for f, (pan, ms) in zip(fused, pairs)]


def viewed(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], view: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A prepared (LMS, guide, noise) batch in view `view`."""
    lms, guide, noise = arrays
    return to_view(lms, view), to_view(guide, view), to_view(noise, view)


class Fit(Protocol):
    """What a scene must match: an engine, or a model's card (`CardFit`)."""

    @property
    def ratio(self) -> int | None: ...

    @property
    def bands(self) -> list[str] | None: ...


def check_fit(scene: "Scene", engine: Fit, path: str) -> None:
    if engine.ratio is not None and int(scene.ratio) != int(engine.ratio):
        raise ValueError(f"{path}: scene ratio {scene.ratio} but the model fuses ratio {engine.ratio}")
    if engine.bands is not None and len(scene.band_names) != len(engine.bands):
        raise ValueError(f"{path}: scene has {len(scene.band_names)} MS bands, the model needs {len(engine.bands)} "
                         f"({', '.join(engine.bands)})")


@dataclass(frozen=True)
class StatisticsScene:
    """--statistics-from: the scene directory whose statistics every scene takes, its bands named as the run names
    its scenes' (--sensor, --bands), so that each band's statistics go to the same band of every scene."""

    directory: str
    sensor: str | None = None
    bands: tuple[str, ...] = ()


def reference_scene(reference: StatisticsScene, engine: Fit) -> "Scene":
    """The --statistics-from scene with the bands `engine` fuses, checked to fit it (ratio, bands)."""
    from ddrf.scenes.discover import discover_scene, name_scene, select_bands
    from ddrf.scenes.scene import Scene

    source = Path(reference.directory)
    if not source.is_dir():  # an Item's assets or a --pan/--ms pair can serve from a folder of VRTs over them
        raise ValueError(f"--statistics-from {source}: " + (
            "a file, not a scene directory; it takes a folder ddrf-run would fuse as a scene (for a STAC Item's "
            "assets or a --pan/--ms pair: a folder holding pan.vrt and ms.vrt over them)" if source.exists()
            else "no such directory"))
    try:
        files = name_scene(discover_scene(reference.directory), reference.sensor, reference.bands)
        scene = Scene(select_bands(files, engine.bands) if engine.bands is not None else files)
    except (ValueError, OSError) as exc:  # discovery names the file; say which option gave it
        raise ValueError(f"--statistics-from: {exc}") from exc
    check_fit(scene, engine, f"--statistics-from {reference.directory}")
    if constant := scene.constant_bands():  # its percentiles would scale every scene by a floor, not by data
        (path, bands), *_ = constant
        raise ValueError(f"--statistics-from {reference.directory}: {constant_fact(path, bands[:1])}: no statistics "
                         "to give the other scenes")
    return scene


@dataclass(frozen=True)
class CardFit:
    """What `check_fit` asks of an engine, from a model's card alone (no sessions): for a client that leaves the
    models to its cluster's workers."""

    ratio: int
    bands: list[str] | None

    @classmethod
    def of(cls, card: ModelCard) -> "CardFit":
        return cls(int(card.ratio), card.scene_bands)


def ms_ratio(pan: np.ndarray, ms: np.ndarray) -> int:
    return pan.shape[0] // ms.shape[0]


@dataclass(frozen=True)
class EngineSpec:
    """How to build the engine; hashable, so a process (a Dask worker) builds each one once."""

    model: str | None = None  # None (and no method): the bundled model that fits each scene (ddrf.bundled)
    backend: str = "ort-cpu"
    steps: int | None = None
    seed: int = 0
    samples: int = 1
    method: str | None = None
    threads: int | None = None
    views: bool = False  # the samples are views of each window (a geometric self-ensemble), not only seeds
    statistics_from: StatisticsScene | None = None  # the scene whose normalisation and statistics every scene takes
    tile: int | None = None  # the window asked for (--tile): below the model's default, a staged model runs staged


_FUSERS: dict[EngineSpec, "Fuser"] = {}  # per process: a worker loads each model once
_REFERENCES: dict[tuple[Any, ...], tuple["Radiometry", dict[int, dict[str, np.ndarray]]]] = {}  # --statistics-from


def get_engine(spec: EngineSpec, sensor: str = "generic", chosen_by: str = "--model") -> Engine:
    if spec.method:
        return BaselineEngine(spec.method, sensor)
    key = EngineSpec(model=spec.model, backend=spec.backend, steps=spec.steps, threads=spec.threads)
    if spec.model is None:
        raise ValueError("no model given")
    from ddrf.runtime.fuser import Fuser, model_identity

    if key not in _FUSERS or _FUSERS[key].identity != model_identity(spec.model):  # replaced, or another folder
        _FUSERS[key] = Fuser(spec.model, spec.backend, spec.steps, unrolled="auto", threads=spec.threads)
    return ModelEngine(_FUSERS[key], spec.seed, spec.samples, chosen_by, 0 if spec.views else None,
                       spec.statistics_from, spec.tile)


