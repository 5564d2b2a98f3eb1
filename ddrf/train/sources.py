"""Turn `data.source` (fusebox:DIR, pancollection:FILE.h5, geotiff:PAN.tif,MS.tif, scenes:DIR[,DIR...]) into a patch source plus what
the model card must record about it (bands, ratio, sensor, normalisation, provenance)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddrf.card import Normalisation
from ddrf.files import first_repeated
from ddrf.train.config import DataConfig
from ddrf.train.datasets import OneBandPatches, PanCollectionPatches, PatchSource, WaldPatches

KINDS = ("fusebox", "pancollection", "geotiff", "scenes")


@dataclass
class SourceInfo:
    band_names: list[str]
    guide_names: list[str]
    ratio: int
    sensor: str
    normalisation: Normalisation
    provenance: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # about the data, said once at start-up (constant bands)


def parse_source(source: str) -> tuple[str, list[Path]]:
    kind, sep, rest = source.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise ValueError(f"data.source {source!r}: expected one of {', '.join(k + ':PATH' for k in KINDS)}")
    paths = [Path(p) for p in rest.split(",")]
    twice = first_repeated(paths)
    if twice is not None:  # it would be trained on at double weight
        raise ValueError(f"{rest.split(',')[twice]}: given twice in data.source; name each once")
    for p in paths:
        if not p.exists():
            raise ValueError(f"{p}: data path does not exist (data.source {source!r})")
    if kind == "geotiff" and len(paths) < 2:
        raise ValueError(f"data.source {source!r}: geotiff needs PAN.tif,MS.tif[,MS2.tif...]")
    if kind not in ("geotiff", "scenes") and len(paths) != 1:
        raise ValueError(f"data.source {source!r}: {kind} takes one path")
    return kind, paths


def build_source(cfg: DataConfig, multiple: int) -> tuple[PatchSource, SourceInfo]:
    kind, paths = parse_source(cfg.source)
    if cfg.teacher and kind == "pancollection":  # its patches come made: no pair for the teacher to fuse
        raise ValueError(f"data.teacher takes PAN/MS pairs (fusebox, geotiff, scenes), not data.source {cfg.source!r}")
    warnings: list[str] = []
    if kind == "pancollection":
        source, info = _pancollection(cfg, paths[0], multiple)
    elif kind == "scenes":
        source, info = _wald(cfg, _scene_pairs(cfg, paths, warnings), multiple)
    else:
        pairs = _fusebox_pairs(cfg, paths[0]) if kind == "fusebox" else _geotiff_pairs(cfg, paths, warnings)
        source, info = _wald(cfg, pairs, multiple)
    info.warnings = warnings
    return (OneBandPatches(source), info) if cfg.band_wise else (source, info)


def _fusebox_pairs(cfg: DataConfig, root: Path) -> list[Any]:
    from ddrf.data import load_fusebox, split_by_acquisition
    from ddrf.data.landsat7 import ACQUISITIONS

    if unknown := [a for a in cfg.test_acquisitions if a not in ACQUISITIONS]:  # a typo would hold nothing out
        raise ValueError(f"data.test_acquisitions: {', '.join(unknown)} is no FuseBox acquisition (they are "
                         f"{', '.join(ACQUISITIONS)})")
    kwargs = {"bands": tuple(cfg.bands)} if cfg.bands else {}
    pairs = load_fusebox(root, cfg.scenes, **kwargs)
    train, held = split_by_acquisition(pairs, test=tuple(cfg.test_acquisitions))
    if cfg.scenes is not None and held:  # asked for by number: dropping them would train on less, silently
        raise ValueError(f"{root}: data.scenes lists {', '.join(p.name for p in held)}, of held-out acquisition "
                         f"{', '.join(sorted({p.acquisition for p in held}))} (data.test_acquisitions); list only "
                         f"training scenes, or hold out another acquisition")
    if not train:
        raise ValueError(f"{root}: every pair belongs to a held-out acquisition {cfg.test_acquisitions}")
    return train


def _geotiff_pairs(cfg: DataConfig, paths: list[Path], warnings: list[str]) -> list[Any]:
    """The pair of PAN.tif,MS.tif[,MS2.tif...], its bands named as ddrf-run names them (metadata, band descriptions,
    Landsat file names, conventions), or by data.bands in file order."""
    from ddrf.scenes.discover import name_bands, pair_from_paths

    found = pair_from_paths(paths[0], paths[1:])
    pair = _read_found(cfg, name_bands(found, cfg.bands) if cfg.bands else found, paths[0].stem, warnings)
    if pair.acquisition in cfg.test_acquisitions:
        raise ValueError(f"{paths[0]}: acquisition {pair.acquisition!r} is held out (data.test_acquisitions)")
    return [pair]


def _scene_pairs(cfg: DataConfig, directories: list[Path], warnings: list[str]) -> list[Any]:
    """One pair per scene directory, found and aligned by ddrf-run's own discovery (the bands of data.bands, in that
    order); the directory name is its acquisition, so data.test_acquisitions can hold one out."""
    from ddrf.scenes.discover import discover_scene, select_bands

    pairs = []
    for directory in directories:
        found = discover_scene(directory)
        pairs.append(_read_found(cfg, select_bands(found, cfg.bands) if cfg.bands else found,
                                 directory.resolve().name, warnings))
    held = [p.name for p in pairs if p.acquisition in cfg.test_acquisitions]
    if held:
        raise ValueError(f"{held[0]}: scene directory is held out (data.test_acquisitions)")
    return pairs


def _read_found(cfg: DataConfig, found: Any, name: str, warnings: list[str]) -> Any:
    """Read what discovery found; the bit depth from data.bits, else the scene's metadata, else the sensor's. Its
    constant files are added to `warnings`."""
    from ddrf.data import read_band_pair
    from ddrf.sensors import get_sensor

    sensor = get_sensor(cfg.sensor or found.sensor)
    bits = cfg.bits or found.bits or (sensor.bits if sensor.name != "generic" else None)
    pair = read_band_pair(found.pan, found.ms, sensor.name, bits, found.band_names, name, name)
    warnings += constant_lines(found, pair)
    return pair


def constant_lines(found: Any, pair: Any) -> list[str]:
    """ddrf-run's line for each file with a constant PAN or MS band (`ddrf.geometry.constant_files`: a dead band, 0
    everywhere without a nodata tag), for what training learns from it. The pair's nodata pixels are filled from
    their nearest valid ones, so a band is constant over the pair as over its valid pixels."""
    from ddrf.geometry import constant_fact, constant_files

    lines = []
    for path, bands in constant_files(found.pan, pair.pan.ravel(), found.ms, pair.band_names,
                                      pair.ms.reshape(-1, pair.ms.shape[-1])):
        name = bands[0][1]
        what = ("no PAN detail" if name is None else f"nothing of its {name} band" if len(bands) == 1
                else f"nothing of those {len(bands)} bands")
        lines.append(f"{constant_fact(path, bands)}; training learns {what} from this pair: check the file")
    return lines


def _wald(cfg: DataConfig, pairs: list[Any], multiple: int) -> tuple[PatchSource, SourceInfo]:
    held = set(cfg.test_acquisitions)
    leaked = sorted({p.acquisition for p in pairs} & held)
    if leaked:  # the split guarantees this; keep the promise even if a reader changes
        raise ValueError(f"refusing to train on held-out acquisition(s) {leaked}")
    from ddrf.sensors import get_sensor

    sensor = get_sensor(cfg.sensor or pairs[0].sensor).name
    teacher, taught = _teacher(cfg.teacher, cfg, pairs[0]) if cfg.teacher else (None, {})
    ds = WaldPatches(pairs, cfg.patch, multiple, cfg.augment, sensor, cfg.bits, cfg.lms_border, cfg.normalisation,
                     (float(cfg.percentiles[0]), float(cfg.percentiles[1])), cfg.simulate_ratio, teacher,
                     cfg.teacher_full_resolution)
    info = SourceInfo(
        band_names=list(ds.band_names), guide_names=["pan"], ratio=ds.ratio, sensor=ds.sensor,
        normalisation=ds.normalisation,
        provenance={"data": cfg.source, "protocol": f"wald-simulated-x{ds.ratio}" if ds.simulated else "wald",
                    "pairs": [p.name for p in pairs],
                    "lms": f"interp23/{cfg.lms_border}", "acquisitions_used": sorted({p.acquisition for p in pairs}),
                    "acquisitions_held_out": sorted(held), **taught},
    )
    return ds, info


def _teacher(directory: str, cfg: DataConfig, first: Any) -> tuple[Any, dict[str, Any]]:
    """data.teacher's fusion as ddrf-run computes it (its tiled path, ONNX Runtime on the CPU, the card's steps),
    and what the card records about it; refused where it does not fuse the pairs' ratio and bands."""
    from ddrf.runtime.fuser import Fuser
    from ddrf.scenes.arrays import ArrayScene, fuse_arrays
    from ddrf.scenes.engines import ModelEngine

    engine = ModelEngine(Fuser(directory, unrolled="auto"))
    ratio = int(cfg.simulate_ratio or first.ratio)
    card = engine.card
    if card.ratio != ratio or not (card.band_wise or list(card.bands) == list(first.band_names)):
        raise ValueError(f"{directory}: data.teacher fuses ratio {card.ratio}, bands {', '.join(card.bands)}; "
                         f"the training pairs are ratio {ratio}, bands {', '.join(first.band_names)}")

    def fuse(pan: Any, ms: Any) -> Any:
        return fuse_arrays(engine, ArrayScene(pan, ms, ratio), tile=None)

    return fuse, {"teacher": {"model": directory, "graphs": dict(card.hashes),
                              "steps": engine.fuser.steps, "full_resolution": cfg.teacher_full_resolution}}


def _normalisation(divisor: float, ms_bands: int, guide_bands: int) -> Normalisation:
    """bit_depth when divisor = 2^bits - 1 (PanCollection's 2047 / 1023), else a fixed per-band scale (e.g. 1)."""
    bits = round(math.log2(divisor + 1)) if divisor > 0 else 0
    if bits >= 2 and 2**bits - 1 == divisor:
        return Normalisation(kind="bit_depth", bits=bits)
    return Normalisation(kind="fixed", ms_offset=[0.0] * ms_bands, ms_scale=[float(divisor)] * ms_bands,
                         guide_offset=[0.0] * guide_bands, guide_scale=[float(divisor)] * guide_bands)


def _pancollection(cfg: DataConfig, path: Path, multiple: int) -> tuple[PatchSource, SourceInfo]:
    from ddrf.data import PanCollectionFile

    file = PanCollectionFile(path, divisor=cfg.divisor)
    ds = PanCollectionPatches(file, cfg.ratio, cfg.patch, multiple, cfg.augment, cfg.lms, cfg.lms_border)
    divisor = getattr(file, "divisor", None) or cfg.divisor or 1.0
    bands = list(cfg.bands) if cfg.bands else [f"b{i + 1}" for i in range(ds.ms_bands)]
    if len(bands) != ds.ms_bands:
        raise ValueError(f"{path}: data.bands names {len(bands)} bands, the file has {ds.ms_bands}")
    guides = ["pan"] if ds.guide_bands == 1 else [f"guide{i + 1}" for i in range(ds.guide_bands)]
    info = SourceInfo(
        band_names=bands, guide_names=guides, ratio=ds.ratio, sensor=cfg.sensor or "generic",
        normalisation=_normalisation(float(divisor), ds.ms_bands, ds.guide_bands),
        provenance={"data": cfg.source, "protocol": "pancollection", "patches": len(ds),
                    "lms": cfg.lms if cfg.lms == "file" else f"interp23/{cfg.lms_border}",
                    "acquisitions_used": [path.name], "acquisitions_held_out": sorted(cfg.test_acquisitions)},
    )
    return ds, info
