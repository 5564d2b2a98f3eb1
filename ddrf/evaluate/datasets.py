"""Evaluation datasets: `pancollection:FILE.h5`, `fusebox:DIR`, `pairs:DIR` -> samples in digital numbers.

A Sample is what a method fuses (pan, ms) plus the reference when there is one. Reduced-resolution samples come
either from the file (PanCollection gt/ms/pan, already degraded by its authors) or from Wald's protocol applied
here (MTF-matched low-pass + decimation of both PAN and MS, the original MS as reference). Everything is float64
DN: PanCollection's [0, 1] arrays are multiplied back by their divisor, because Q2n casts to uint16 DN.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ddrf.data.pair import Pair
from ddrf.filters import GENERAL_TAPS, interp23_takes, wald_degrade, wald_simulate_ratio
from ddrf.sensors import SENSORS, find_sensor, get_sensor, ms_mtf_gains

if TYPE_CHECKING:
    from ddrf.data.pancollection import PanCollectionFile

REDUCED, FULL = "reduced", "full"
MODES = ("auto", REDUCED, FULL, "both")
SPEC_HELP = "pancollection:FILE.h5, fusebox:DIR or pairs:DIR"
# PanCollection file-name token -> sensor table entry (MTF gains, band names).
PANCOLLECTION_SENSORS = ("WV3", "WV2", "QB", "GF2")  # the sensors PanCollection files come from
# Landsat-8/9 band files of a pairs: folder, band name -> file token, from the sensor table; the fused four by default.
LANDSAT_FILES = {name: f"B{number}" for number, name in SENSORS["Landsat8"].every_band_numbered().items()}
LANDSAT_DEFAULT = SENSORS["Landsat8"].band_names
TIF = (".tif", ".tiff")


@dataclass
class Sample:
    """One image to fuse: pan (H, W), ms (h, w, B) in DN; ref (H, W, B) for reduced resolution, else None."""

    name: str
    protocol: str
    pan: np.ndarray
    ms: np.ndarray
    ref: np.ndarray | None
    ratio: int
    sensor: str
    band_names: tuple[str, ...]
    source: str = ""  # the file it was read from, for messages

    @property
    def where(self) -> str:
        return image_label(self.name, self.source)


def image_label(name: str, source: str) -> str:
    """An image as messages name it: its name (the tables') and the file it came from."""
    return f"image {name}" + (f" ({source})" if source else "")


@dataclass
class Dataset:
    """A parsed dataset spec; `samples(mode)` reads lazily, one image (and its protocols) at a time."""

    spec: str
    kind: str
    path: Path
    has_reference: bool  # whether reduced resolution is possible
    settings: dict[str, Any] = field(default_factory=dict)
    _pairs: Callable[[], Iterator[Pair]] | None = None  # fusebox, pairs
    _pancollection: "PanCollectionFile | None" = None
    simulate_ratio: int | None = None  # fusebox, pairs: a ratio-`simulate_ratio` sensor simulated from ratio 2

    def protocols(self, mode: str) -> list[str]:
        """Protocols to run for `mode`; an impossible request raises with the file named."""
        if mode not in MODES:
            raise ValueError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
        if self.simulate_ratio and mode in (FULL, "both"):
            raise ValueError(f"--simulate-ratio {self.simulate_ratio}: a simulated sensor has no full-resolution "
                             "imagery, only the reduced protocol (its reference is the original MS); use --mode reduced")
        if mode == "auto":
            return [REDUCED] if self.has_reference else [FULL]
        if mode == REDUCED and not self.has_reference:
            raise ValueError(f"{self.path}: no 'gt' key, so no reduced-resolution reference; use --mode full")
        if mode == "both":
            return [REDUCED, FULL] if self.has_reference else [FULL]
        return [mode]

    def samples(self, mode: str) -> Iterator[Sample]:
        protocols = self.protocols(mode)
        if self._pancollection is not None:
            yield from _pancollection_samples(self._pancollection, self.settings, protocols)
            return
        assert self._pairs is not None, "a dataset reads either PanCollection patches or pairs"
        for pair in self._pairs():
            if self.simulate_ratio:
                yield simulated_sample(pair, self.simulate_ratio)
            else:
                yield from wald_samples(pair, protocols)


def parse_spec(spec: str) -> tuple[str, Path]:
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("pancollection", "fusebox", "pairs") or not path:
        raise ValueError(f"dataset {spec!r}: expected {SPEC_HELP}")
    return kind, Path(path)


def open_dataset(spec: str, acquisitions: str = "P034R032", sensor: str | None = None,
                 divisor: float | None = None, simulate_ratio: int | None = None,
                 bands: Sequence[str] | None = None) -> Dataset:
    """Validate the spec and the data it names (missing files, wrong keys) before any fusion starts.

    `bands` (fusebox, pairs): the MS bands to score, by name and in this order (fusebox default: blue, green, red,
    nir; pairs default: all the pair has)."""
    kind, path = parse_spec(spec)
    if simulate_ratio is not None and (kind == "pancollection" or simulate_ratio <= 2):
        raise ValueError(f"--simulate-ratio {simulate_ratio}: needs a ratio above 2 and fusebox: or pairs: data "
                         "(PanCollection files are already degraded)")
    if simulate_ratio is not None and not interp23_takes(simulate_ratio):
        raise ValueError(f"--simulate-ratio {simulate_ratio}: interp23, which upsamples the MS for every method, "
                         f"takes powers of two and ratios up to {GENERAL_TAPS}")
    if kind == "pancollection":
        if bands:
            raise ValueError("--bands: PanCollection files hold a fixed band set; it applies to fusebox: and pairs:")
        return _open_pancollection(spec, path, sensor, divisor)
    if kind == "fusebox" and sensor is not None and find_sensor(sensor) != get_sensor("Landsat7"):
        raise ValueError(f"--sensor {sensor}: FuseBox pairs are Landsat-7 ETM+; --sensor applies to pairs: and "
                         f"pancollection: data")
    data = (_open_fusebox(spec, path, acquisitions, bands) if kind == "fusebox"
            else _open_pairs(spec, path, sensor, bands))
    if simulate_ratio:
        data.simulate_ratio = simulate_ratio
        data.settings.update(simulation_settings(data.settings["sensor"], simulate_ratio))
    return data


# -- Wald's protocol ------------------------------------------------------------------------------------------
def crop_to_ratio(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Top-left crop so the MS size is a multiple of the ratio (Wald decimates the MS by the ratio too)."""
    r = pair.ratio
    h, w = pair.ms.shape[0] - pair.ms.shape[0] % r, pair.ms.shape[1] - pair.ms.shape[1] % r
    if h < r or w < r:
        raise ValueError(f"pair {pair.name!r}: MS {pair.ms.shape[:2]} is too small for ratio {r}")
    return pair.pan[: r * h, : r * w], pair.ms[:h, :w]


def wald_samples(pair: Pair, protocols: Sequence[str]) -> Iterator[Sample]:
    """Reduced (Wald-degraded pair, original MS as reference) and/or full (the pair as is) samples of one pair."""
    pan, ms = crop_to_ratio(pair)
    for protocol in protocols:
        if protocol == REDUCED:
            pan_lr, ms_lr = wald_degrade(pan, ms, pair.ratio, pair.sensor)
            yield Sample(pair.name, REDUCED, pan_lr, ms_lr, ms, pair.ratio, pair.sensor, pair.band_names, pair.source)
        else:
            yield Sample(pair.name, FULL, pan, ms, None, pair.ratio, pair.sensor, pair.band_names, pair.source)


def simulated_sample(pair: Pair, ratio: int) -> Sample:
    """A ratio-`ratio` sample simulated from a ratio-2 pair exactly as training's `data.simulate_ratio` does."""
    if int(pair.ratio) != 2:
        raise ValueError(f"pair {pair.name!r}: --simulate-ratio needs ratio-2 pairs, this one has ratio {pair.ratio}")
    h, w = pair.ms.shape[:2]
    if ratio > min(h, w):  # the simulated MS is the reference MS decimated by the ratio
        raise ValueError(f"--simulate-ratio {ratio}: {image_label(pair.name, pair.source)} has a {h}x{w} MS, so at "
                         f"most --simulate-ratio {min(h, w)} (one MS pixel left)")
    pan, ms, ref = wald_simulate_ratio(pair.pan, pair.ms, pair.sensor, ratio)
    return Sample(pair.name, REDUCED, pan, ms, ref, ratio, pair.sensor, pair.band_names, pair.source)


def simulation_settings(sensor: str, ratio: int) -> dict[str, Any]:
    s = get_sensor(sensor)
    return {"protocol": f"ratio {ratio} simulated from ratio-2 pairs (Wald): reference = original MS, PAN low-passed "
                        f"by its MTF and decimated x2 onto the reference grid, MS low-passed by the MS MTF for ratio "
                        f"{ratio} and decimated x{ratio} (ddrf.filters.wald_simulate_ratio, as training's "
                        "data.simulate_ratio)", "ratio": ratio, "simulate_ratio": ratio, "source_ratio": 2,
            "mtf_pan": s.pan_mtf}


def wald_settings(sensor: str, bands: int, ratio: int) -> dict[str, Any]:
    s = get_sensor(sensor)
    return {"protocol": f"Wald at ratio {ratio}", "sensor": s.name, "ratio": ratio,
            "mtf_ms": [float(g) for g in ms_mtf_gains(s, bands)], "mtf_pan": s.pan_mtf}


# -- PanCollection --------------------------------------------------------------------------------------------
def _pancollection_sensor(path: Path, sensor: str | None) -> str:
    if sensor:
        return get_sensor(sensor).name
    tokens = set(re.split(r"[^a-z0-9]+", f"{path.stem} {path.parent.name}".lower()))
    named = (find_sensor(t) for t in tokens if t)
    found = {s.name for s in named if s is not None and s.name in PANCOLLECTION_SENSORS}
    return found.pop() if len(found) == 1 else "generic"


def band_names_for(sensor: str, bands: int) -> tuple[str, ...]:
    names = get_sensor(sensor).band_names
    return names if len(names) == bands else tuple(f"b{i + 1}" for i in range(bands))


def _open_pancollection(spec: str, path: Path, sensor: str | None, divisor: float | None) -> Dataset:
    from ddrf.data.pancollection import HYPERSPECTRAL, PanCollectionFile

    source = PanCollectionFile(path, divisor)
    if source.kind == HYPERSPECTRAL:
        source.close()
        raise ValueError(f"{path}: hyperspectral (MHIF) files are not supported by ddrf-eval")
    name = _pancollection_sensor(path, sensor)
    bands = int(source[0]["ms"].shape[0])
    settings = {"protocol": "as distributed (PanCollection, Wald at the file's ratio)", "sensor": name,
                "ratio": source.ratio, "divisor": source.divisor, "images": len(source),
                "mtf_ms": [float(g) for g in ms_mtf_gains(name, bands)], "mtf_pan": get_sensor(name).pan_mtf,
                "band_names": list(band_names_for(name, bands)), "scale": "DN = file value x divisor"}
    return Dataset(spec, "pancollection", path, source.has_gt, settings, _pancollection=source)


def _pancollection_samples(source: Any, settings: dict[str, Any], protocols: Sequence[str]) -> Iterator[Sample]:
    sensor, names, ratio = settings["sensor"], tuple(settings["band_names"]), int(source.ratio)
    for i in range(len(source)):
        item = {k: np.moveaxis(v.astype(np.float64) * source.divisor, 0, -1) for k, v in source[i].items()}
        if item["pan"].shape[-1] != 1:
            raise ValueError(f"{source.path}: 'pan' has {item['pan'].shape[-1]} channels, expected 1")
        pan, name = item["pan"][..., 0], f"{source.path.stem}_{i:03d}"
        for protocol in protocols:
            ref = item["gt"] if protocol == REDUCED else None
            yield Sample(name, protocol, pan, item["ms"], ref, ratio, sensor, names, str(source.path))


# -- FuseBox --------------------------------------------------------------------------------------------------
def _fusebox_acquisitions(value: str) -> list[str]:
    from ddrf.data.landsat7 import ACQUISITIONS

    known = list(ACQUISITIONS)
    if value.strip().lower() == "all":
        return known
    chosen = [a.strip().upper() for a in value.split(",") if a.strip()]
    unknown = [a for a in chosen if a not in known]
    if unknown or not chosen:
        raise ValueError(f"--acquisitions {value!r}: choose 'all' or from {', '.join(known)}")
    return chosen


def _open_fusebox(spec: str, path: Path, acquisitions: str, bands: Sequence[str] | None = None) -> Dataset:
    from ddrf.data.landsat7 import (BITS, DEFAULT_BANDS, FILE_BANDS, RATIO, SENSOR, _discover, _scene_dir,
                                    fusebox_acquisition, load_fusebox_scene)

    chosen = _fusebox_acquisitions(acquisitions)
    names = tuple(bands or DEFAULT_BANDS)
    if unknown := [b for b in names if b not in FILE_BANDS]:
        raise ValueError(f"--bands: FuseBox has no band {', '.join(unknown)}; it has {', '.join(FILE_BANDS)}")
    folder = _scene_dir(path)
    scenes = [n for n in _discover(folder) if fusebox_acquisition(n) in chosen]
    if not scenes:
        raise ValueError(f"{folder}: no FuseBox scenes of acquisition(s) {', '.join(chosen)}")
    settings = {**wald_settings(SENSOR, len(names), RATIO), "bits": BITS, "acquisitions": chosen, "scenes": scenes,
                "scored_acquisitions": sorted({fusebox_acquisition(n) for n in scenes}),
                "band_names": list(names), "scale": "DN (8-bit)"}
    return Dataset(spec, "fusebox", path, True, settings,
                   _pairs=lambda: (load_fusebox_scene(folder, n, names) for n in scenes))


# -- GeoTIFF pairs --------------------------------------------------------------------------------------------
def _tifs(folder: Path) -> dict[str, Path]:
    return {p.stem.lower(): p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in TIF}


def _find_pairs(folder: Path, landsat_bands: Sequence[str] | None = None
                ) -> tuple[list[tuple[str, Path, list[Path], bool]], list[tuple[Path, str]]]:
    """(name, pan, [ms...], is_landsat) for NAME_pan.tif + NAME_ms.tif and Landsat *_B8 + one file per band
    (`landsat_bands`, by name; default B2..B5: blue, green, red, nir); and each PAN found without its MS, with the
    MS file names it lacks."""
    numbers = [LANDSAT_FILES[b] for b in landsat_bands or LANDSAT_DEFAULT]
    found, lone = [], []
    for sub in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        files = _tifs(sub)
        for stem, pan in files.items():
            if m := re.fullmatch(r"(.*)_b8", stem):
                wanted = {f"{m.group(1)}_{n.lower()}": f"{pan.stem[:-2]}{n}{pan.suffix} ({b})"
                          for b, n in zip(landsat_bands or LANDSAT_DEFAULT, numbers)}
                if missing := [name for k, name in wanted.items() if k not in files]:
                    lone.append((pan, " + ".join(missing)))
                else:
                    found.append((pan.stem[:-3] or sub.name, pan, [files[k] for k in wanted], True))
            elif m := re.fullmatch(r"(.*?)[_-]?pan", stem):
                names = (f"{m.group(1)}_ms", f"{m.group(1)}-ms", f"{m.group(1)}ms", f"{m.group(1)}_mul")
                ms_path = next((files[k] for k in names if k in files), None)
                if ms_path is not None:
                    found.append((m.group(1) or sub.name, pan, [ms_path], False))
                else:
                    lone.append((pan, " or ".join(f"{k}.tif" for k in names)))
    return found, lone


def _is_floating(path: Path) -> bool:
    """Floating-point data (reflectance, radiance) has no bit depth: it is read with a nominal 16, which scoring never
    uses and DDRF models replace by their card's (per-scene) normalisation."""
    import rasterio

    with rasterio.open(path) as src:
        return not np.issubdtype(np.dtype(src.dtypes[0]), np.integer)


def select_pair_bands(pair: Pair, bands: Sequence[str], where: Path) -> Pair:
    """The pair with only `bands`, in that order; a band it lacks is an error naming the file and what it has."""
    have = [b.lower() for b in pair.band_names]
    if missing := [b for b in bands if b.lower() not in have]:
        raise ValueError(f"{where}: no band {', '.join(missing)} (it has {', '.join(pair.band_names)})")
    index = [have.index(b.lower()) for b in bands]
    if index == list(range(pair.bands)):  # already these bands (Landsat files read by name): no copy
        return pair
    return replace(pair, ms=pair.ms[..., index], band_names=tuple(pair.band_names[i] for i in index))


def _open_pairs(spec: str, path: Path, sensor: str | None, bands: Sequence[str] | None = None) -> Dataset:
    from ddrf.data.geotiff import read_geotiff_pair

    if not path.is_dir():
        raise ValueError(f"{path}: pairs folder does not exist")
    landsat_bands = tuple(bands) if bands and all(b in LANDSAT_FILES for b in bands) else None
    found, lone = _find_pairs(path, landsat_bands)
    wanted = (" + ".join(f"*_{LANDSAT_FILES[b]}.TIF ({b})" for b in landsat_bands) if landsat_bands
              else "*_B2..B5.TIF")
    if not found:
        raise ValueError(f"{path}: no PAN/MS GeoTIFF pairs (expected NAME_pan.tif + NAME_ms.tif, or Landsat "
                         f"*_B8.TIF + {wanted}, in the folder or its sub-folders)")
    if lone:  # scoring the others would leave it out without a word
        raise ValueError(f"{lone[0][0]}: a PAN without its MS (no {lone[0][1]} beside it); give it its MS or move "
                         f"it out of the pairs: folder")
    landsat = all(f[3] for f in found)
    name = get_sensor(sensor or ("Landsat8" if landsat else "generic")).name

    def read(item: tuple[str, Path, list[Path], bool]) -> Pair:
        names = (landsat_bands or LANDSAT_DEFAULT) if item[3] else None
        floating = _is_floating(item[1])
        pair = read_geotiff_pair(item[1], item[2], sensor=name, bits=12 if item[3] else 16 if floating else None,
                                 name=item[0])
        if floating and float(pair.ms.max()) < 256:
            print(f"ddrf-eval: {item[2][0]}: floating-point data up to {float(pair.ms.max()):.3g}: Q2n rounds its inputs "
                  "to uint16 as the toolbox does, so it is meaningless here; scale to DN (reflectance x 10000)",
                  file=sys.stderr)
        if names is None:
            pair.band_names = band_names_for(name, pair.bands) if get_sensor(name).band_names else pair.band_names
        else:
            pair.band_names = names
        return select_pair_bands(pair, bands, item[2][0]) if bands else pair

    settings = {"protocol": "Wald at each pair's ratio (from the pixel sizes)", "sensor": name,
                "mtf_pan": get_sensor(name).pan_mtf, "mtf_ms": list(get_sensor(name).ms_mtf),
                "pairs": [str(f[1]) for f in found], "scale": "DN as stored",
                **({"band_names": list(bands)} if bands else {})}
    return Dataset(spec, "pairs", path, True, settings, _pairs=lambda: (read(f) for f in found))
