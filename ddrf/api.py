"""The Python entry points for notebooks and other services (torch-free, like `ddrf-run`).

    import ddrf
    fused = ddrf.fuse(pan, ms)                    # numpy: PAN (H, W), MS (h, w, B) in DN -> (H, W, B) float32
    fused = ddrf.fuse(pan_da, ms_da)              # xarray (band, y, x) DataArrays -> DataArray on the PAN grid + CRS
    path = ddrf.fuse_scene("SCENE_DIR", "out/")   # a scene directory, GeoTIFF pair or STAC Item -> GeoTIFF path

`fuse` holds the whole image in memory (one window); `fuse_scene` streams a scene of any size in windows, exactly as
`ddrf-run` does, and writes the JSON report and the STAC Item beside the GeoTIFF.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union, overload

import numpy as np

from ddrf.runtime.checks import check_options, check_values

if TYPE_CHECKING:
    import xarray

PathLike = Union[str, Path]


def _fuser(model: Path, backend: str, steps: int | None, threads: int | None) -> Any:
    """The model's Fuser, loaded once per process while the path names the same folder with the same card (the
    path string alone served a replaced model, or another folder's after os.chdir)."""
    from ddrf.runtime.fuser import model_identity

    return _open_fuser(model_identity(model), backend, steps, threads)


@lru_cache(maxsize=4)
def _open_fuser(identity: tuple[str, str], backend: str, steps: int | None, threads: int | None) -> Any:
    from ddrf.runtime.fuser import Fuser

    return Fuser(identity[0], backend, steps, unrolled="auto", threads=threads)


def _fuse_arrays(pan: np.ndarray, ms: np.ndarray, model: PathLike | None, method: str | None, steps: int | None,
                 seed: int, backend: str, sensor: str, threads: int | None, ensemble: int = 0,
                 noise_origin: tuple[int, int] = (0, 0), band_names: Sequence[str] | None = None) -> np.ndarray:
    check_ensemble(ensemble, method)
    check_options(seed, steps, threads, backend)
    from ddrf.sensors import get_sensor

    sensor = get_sensor(sensor).name  # a misspelt name was ignored: the classical methods fell back to generic MTFs
    if pan.ndim != 2 or ms.ndim != 3:
        raise ValueError(f"pan must be (H, W) and ms (h, w, bands); got {pan.shape} and {ms.shape}")
    for name, values in (("pan", pan), ("ms", ms)):
        check_values(name, values)
    ratio = pan.shape[0] // max(ms.shape[0], 1)
    if ratio < 1 or pan.shape != (ms.shape[0] * ratio, ms.shape[1] * ratio):
        raise ValueError(f"PAN {pan.shape} must be MS {ms.shape[:2]} times an integer ratio")
    if method is not None:
        from ddrf.baselines import fuse as fuse_classical

        gains = get_sensor(sensor).for_bands(band_names_known(band_names))  # each named band's own MTF gain
        return fuse_classical(method, pan.astype(np.float64), ms.astype(np.float64), ratio, gains).astype(np.float32)
    from ddrf.bundled import choose_model, model_folder

    if model is None:
        # the one whose bands the arrays have, as ddrf-run picks for a scene (by count alone: another's model)
        model = choose_model(f"arrays PAN {pan.shape}, MS {ms.shape}", ratio, band_names_known(band_names),
                             ms.shape[-1]).path
    fuser = _fuser(model_folder(model), backend, steps, threads)
    if ratio != fuser.card.ratio:
        raise ValueError(f"PAN/MS ratio {ratio}, but the model fuses ratio {fuser.card.ratio}")
    from ddrf.scenes.arrays import ArrayScene, fuse_arrays
    from ddrf.scenes.engines import ModelEngine

    order = card_order(band_names, fuser.card, ms.shape[-1])  # named bands in the order the model takes them
    ms = ms[..., order]
    fuser.check_inputs(pan, ms)  # a band count the model does not take: its own one-line error, before any window
    # ddrf-run's windows, halo, blend and scene statistics: the same pixels ddrf-run writes, in bounded memory
    engine = ModelEngine(fuser, seed, max(ensemble, 1), first_view=0 if ensemble else None)
    fused = fuse_arrays(engine, ArrayScene(pan, ms, ratio, noise_origin=noise_origin), tile=None)
    return fused[..., np.argsort(order)].astype(np.float32)  # back in the caller's band order


def band_names_known(names: Sequence[str] | None) -> list[str] | None:
    """Band labels that are band names (lower case), or None: unnamed, or labelled otherwise (B2, 1)."""
    from ddrf.sensors import KNOWN_BAND_NAMES

    lowered = [str(n).lower() for n in names] if names is not None else None
    return lowered if lowered is not None and set(lowered) <= KNOWN_BAND_NAMES else None


def card_order(names: Sequence[str] | None, card: Any, count: int) -> list[int]:
    """Indices that put `count` bands named as the card names them into the card's order (unnamed, labelled with
    other than band names such as B2, band-wise, or already in order: as given); bands named otherwise than the
    model's are a ValueError naming them."""
    lowered = band_names_known(names)
    if lowered is None or card.band_wise or lowered == list(card.bands):
        return list(range(count))
    if sorted(lowered) != sorted(card.bands):
        raise ValueError(f"ms bands {', '.join(lowered)}: the model fuses {', '.join(card.bands)}")
    return [lowered.index(band) for band in card.bands]


def check_ensemble(ensemble: int, method: str | None) -> None:
    if ensemble == 1 or ensemble < 0:
        raise ValueError(f"ensemble needs at least 2 views, got {ensemble}")
    if ensemble and method is not None:
        raise ValueError("ensemble applies to the diffusion model, not to a classical method")


@overload
def fuse(pan: np.ndarray, ms: np.ndarray, model: PathLike | None = None, *, method: str | None = None,
         steps: int | None = None, seed: int = 0, backend: str = "ort-cpu", sensor: str = "generic",
         threads: int | None = None, ensemble: int = 0) -> np.ndarray: ...


@overload
def fuse(pan: "xarray.DataArray", ms: "xarray.DataArray", model: PathLike | None = None, *, method: str | None = None,
         steps: int | None = None, seed: int = 0, backend: str = "ort-cpu", sensor: str = "generic",
         threads: int | None = None, ensemble: int = 0) -> "xarray.DataArray": ...


def fuse(pan: Any, ms: Any, model: PathLike | None = None, *, method: str | None = None, steps: int | None = None,
         seed: int = 0, backend: str = "ort-cpu", sensor: str = "generic", threads: int | None = None,
         ensemble: int = 0) -> Any:
    """Pansharpen PAN and MS arrays in digital numbers.

    numpy: `pan` (H, W), `ms` (h, w, B) with H = ratio * h -> (H, W, B) float32, a model fused through ddrf-run's
    windows (its default tile, the model's halo and blend); the noise is keyed to the arrays' own rows and columns,
    so the pixels are those ddrf-run writes for a raster whose grid starts at its CRS's origin (xarray input with a
    transform is keyed like ddrf-run: its pixels are ddrf-run's).
    xarray (rioxarray's layout): `pan` (band=1, y, x) or (y, x), `ms` (band, y, x) -> (band, y, x) float32 DataArray
    with the PAN's y/x coordinates, the MS band coordinate, and the PAN's CRS and transform when rioxarray is
    installed.
    `model`: a model directory or a bundled model's name (default: the bundled model of the arrays' ratio and band
    count, the MS bands in its card's order; none fits: ValueError naming what would); `method`: a classical baseline
    instead (e.g. "GSA");
    `steps`: sampler steps (default: the model card's); `seed`: the noise seed; `ensemble` N >= 2: the mean of N
    views (turns and flips) of every window, as `ddrf-run --ensemble N`.
    """
    if hasattr(pan, "dims") and hasattr(ms, "dims"):
        return _fuse_dataarrays(pan, ms, model, method, steps, seed, backend, sensor, threads, ensemble)
    for name, values in (("pan", pan), ("ms", ms)):
        if np.ma.is_masked(values):  # np.asarray would drop the mask and fuse the masked values as data
            raise ValueError(f"{name} is a masked array with masked values: {FILL_FIRST}")
    return _fuse_arrays(np.asarray(pan), np.asarray(ms), model, method, steps, seed, backend, sensor, threads,
                        ensemble)


FILL_FIRST = "fill them first, or fuse the raster with ddrf.fuse_scene, which reads its no data"


def check_nodata(name: str, array: "xarray.DataArray") -> None:
    """No pixel at a no-data value the DataArray declares (rioxarray's `_FillValue`, the older per-band
    `nodatavals`): they were fused as data, pulling their neighbours with them (a NaN one: `check_values`)."""
    declared = [array.attrs.get("_FillValue"), *np.ravel(array.attrs.get("nodatavals", ()))]
    for value in {float(v) for v in declared if v is not None and not np.isnan(float(v))}:
        count = int((array.values == value).sum())
        if count:
            raise ValueError(f"{name} has {count} pixel(s) at its nodata value {value:g}: {FILL_FIRST}")


def _fuse_dataarrays(pan: "xarray.DataArray", ms: "xarray.DataArray", model: PathLike | None, method: str | None,
                     steps: int | None, seed: int, backend: str, sensor: str,
                     threads: int | None, ensemble: int = 0) -> "xarray.DataArray":
    import xarray as xr

    pan2d = pan.squeeze("band", drop=True) if "band" in pan.dims and pan.sizes["band"] == 1 else pan
    if pan2d.dims != ("y", "x") or ms.dims != ("band", "y", "x"):
        raise ValueError(f"pan must have dims (band=1, y, x) or (y, x), ms (band, y, x); got {dict(pan.sizes)}, "
                         f"{dict(ms.sizes)}")
    check_grids(pan, ms)
    check_nodata("pan", pan)
    check_nodata("ms", ms)
    labels = ms.coords["band"].values if "band" in ms.coords else np.arange(1, ms.sizes["band"] + 1)
    names = [str(n) for n in labels] if all(isinstance(n, str) for n in labels) else None
    fused = _fuse_arrays(pan2d.values, np.moveaxis(ms.values, 0, -1), model, method, steps, seed, backend, sensor,
                         threads, ensemble, _lattice_origin(pan), names)
    result = xr.DataArray(np.moveaxis(fused, -1, 0), dims=("band", "y", "x"),
                          coords={"band": labels, **{k: pan2d.coords[k] for k in ("y", "x") if k in pan2d.coords}},
                          name="fused", attrs=band_attrs(ms.attrs, names, len(labels)))
    try:
        import rioxarray  # noqa: F401  (registers the .rio accessor)
    except ImportError:
        return result
    if pan.rio.crs is not None:
        result = result.rio.write_crs(pan.rio.crs).rio.write_transform(pan.rio.transform())
    return result


def band_attrs(attrs: dict[str, Any], names: list[str] | None, count: int) -> dict[str, Any]:
    """The output's attributes: a band name per band (rioxarray writes `long_name` as the band descriptions) and
    the MS's scale and offset to physical units (the output is in its DN)."""
    long_name = attrs.get("long_name")
    per_band = names or (list(long_name) if isinstance(long_name, (list, tuple)) and len(long_name) == count
                         else None)
    kept: dict[str, Any] = {key: attrs[key] for key in ("scale_factor", "add_offset", "units") if key in attrs}
    return {**({"long_name": per_band} if per_band else {}), **kept}


def check_grids(pan: "xarray.DataArray", ms: "xarray.DataArray") -> None:
    """With rioxarray: the MS in the PAN's CRS, north-up, and on the PAN's grid coarsened by an integer ratio from
    the same corner give or take half an MS pixel (Landsat's PAN corner is a quarter of one off), which the arrays
    are fused as (rasters on other grids: `fuse_scene` aligns them). Without x/y coordinates both are plain arrays
    (rioxarray reads an identity transform, flipped and never nested); one of the two with them is a ValueError."""
    placed = ["x" in a.coords and "y" in a.coords for a in (pan, ms)]
    if placed[0] != placed[1]:
        raise ValueError(f"{'pan' if placed[0] else 'ms'} has x/y coordinates, {'ms' if placed[0] else 'pan'} none: "
                         f"give both their coordinates, or neither (fused as plain arrays)")
    if not placed[0]:
        return
    try:
        import rioxarray  # noqa: F401  (registers the .rio accessor)

        crs = (pan.rio.crs, ms.rio.crs)
        pan_t, ms_t = pan.rio.transform(), ms.rio.transform()
    except Exception:  # no rioxarray, or coordinates it cannot read a transform from: plain arrays
        return
    from ddrf.geometry import crs_names, same_crs

    if None not in crs and not same_crs(crs[0], crs[1], pan_t, (pan.sizes["y"], pan.sizes["x"])):  # ddrf-run's rule
        names = crs_names(crs[1], crs[0])
        raise ValueError(f"ms CRS {names[0]} differs from pan CRS {names[1]}")
    ratio = ms_t.a / pan_t.a if pan_t.a else 0.0
    nested = (pan_t.e < 0 and ms_t.e < 0 and pan_t.b == pan_t.d == ms_t.b == ms_t.d == 0 and ratio >= 1
              and abs(ms_t.e / pan_t.e - ratio) < 1e-9 * ratio
              and abs(ms_t.c - pan_t.c) < abs(ms_t.a) / 2 and abs(ms_t.f - pan_t.f) < abs(ms_t.e) / 2)
    if not nested:
        raise ValueError(f"ms grid {tuple(ms_t)[:6]} is not the pan grid {tuple(pan_t)[:6]} coarsened by an integer "
                         f"ratio from the same north-up corner (within half an MS pixel): write both as rasters and "
                         f"use ddrf.fuse_scene, which aligns them")


def _lattice_origin(pan: "xarray.DataArray") -> tuple[int, int]:
    """Where ddrf-run keys the noise of a raster with this PAN's transform (`ddrf.geometry.lattice_origin`); (0, 0)
    without rioxarray or a transform."""
    try:
        import rioxarray  # noqa: F401  (registers the .rio accessor)

        transform = pan.rio.transform()
    except Exception:  # no rioxarray, or coordinates it cannot read a transform from
        return 0, 0
    from ddrf.geometry import lattice_origin

    return lattice_origin(transform)


def fuse_scene(source: PathLike, out: PathLike, *, model: PathLike | None = None, method: str | None = None,
               steps: int | None = None, seed: int = 0, backend: str = "ort-cpu", tile: int | None = None,
               cog: bool = False, overwrite: bool = False, ensemble: int = 0,
               statistics_from: PathLike | None = None, bands: str | Sequence[str] = (),
               sensor: str | None = None) -> Path:
    """Fuse a scene directory or a STAC Item (path or URL) into a GeoTIFF; returns its path.

    `out`: a directory (the output is OUT/<scene name>.tif) or a .tif path (scene directories only). Windowed like
    `ddrf-run`, with the JSON report and the STAC Item (`<name>.item.json`) beside the GeoTIFF. A scene that cannot
    be fused raises ValueError with a one-line reason naming the file. `model`: default, the bundled model of the
    scene's ratio and bands. `ensemble` N >= 2: the mean of N views of every window (`ddrf-run --ensemble N`).
    `statistics_from`: a scene directory whose normalisation and statistics this scene takes (`ddrf-run
    --statistics-from`), so that overlapping scenes give the same pixels. `bands` (the MS band names in file order)
    and `sensor`: as `ddrf-run --bands` and `--sensor`, for a scene directory and the `statistics_from` scene.
    A finished output already there is kept and its path returned, with a warning (ddrf-run skips it too);
    `overwrite=True` fuses the scene again.
    """
    check_ensemble(ensemble, method)
    check_options(seed, steps, None, backend)
    from ddrf.bundled import model_folder
    from ddrf.sensors import get_sensor
    from ddrf.scenes.engines import EngineSpec, StatisticsScene, default_tiling
    from ddrf.scenes.jobs import SceneJob, run_job
    from ddrf.scenes.preflight import band_names
    from ddrf.scenes.runner import describe_outputs
    from ddrf.scenes.stac_in import is_item_reference, job_from_item, tidy_after
    from ddrf.scenes.streaming import RunSettings

    out = Path(out).absolute()
    try:
        bands = band_names(bands) if bands else ()
    except ValueError as exc:
        raise ValueError(f"bands {exc}") from None
    sensor = get_sensor(sensor).name if sensor else None
    is_item = is_item_reference(str(source))
    raster = scene_output(source, out, is_item, bool(bands or sensor))
    # no model: the bundled one that fits the scene (named in the report)
    chosen = str(model_folder(model)) if model and not method else None  # a path, or a bundled model's name
    spec = EngineSpec(model=chosen, backend=backend, steps=steps, seed=seed, tile=tile,
                      method=method, samples=max(ensemble, 1), views=bool(ensemble),
                      statistics_from=StatisticsScene(str(Path(statistics_from).absolute()), sensor, bands)
                      if statistics_from else None)
    settings = RunSettings(tile=tile, batch=default_tiling(backend, method)[1], cog=cog, overwrite=overwrite,
                           progress=False)
    with output_folder(raster.parent if raster else out):
        job, item = (job_from_item(str(source), out) if raster is None else
                     (SceneJob(raster.stem, raster, directory=Path(source).absolute(), bands=bands, sensor=sensor),
                      None))
        entry = describe_outputs(run_job(job, spec, settings), job, settings, None, item)
        tidy_after(entry, job, item is not None)  # as ddrf-run: a failed Item scene leaves no band wrappers
        if entry["status"] == "failed":
            raise ValueError(entry["error"])
    if entry["status"] == "skipped":
        import warnings

        warnings.warn(f"{job.raster}: a finished output of these inputs and settings is already there and was kept "
                      f"(overwrite=True fuses the scene again)", stacklevel=2)
    return job.raster


def scene_output(source: PathLike, out: Path, is_item: bool, named: bool) -> Path | None:
    """The raster a scene directory is fused into (None for a STAC Item, which names its own), refusing before
    anything is written what ddrf-run refuses: bands or sensor (`named`) or a .tif for an Item, an output in the
    scene (its outputs were written into the scene folder)."""
    from ddrf.scenes.preflight import output_in_scene

    as_file = out.suffix.lower() in (".tif", ".tiff")
    if is_item:
        if named:
            raise ValueError(f"{source}: bands and sensor are for scene directories; a STAC Item names its bands")
        if as_file:
            raise ValueError(f"{out}: for a STAC Item, out names a directory")
        return None
    directory = Path(source).absolute()
    raster = out if as_file else out / f"{directory.name}.tif"
    inside = output_in_scene(raster.parent.resolve(), directory.resolve())
    if inside:
        raise ValueError(inside)
    return raster


@contextmanager
def output_folder(folder: Path) -> Iterator[None]:
    """`folder` made, with its missing parents, for a call's outputs; where the call fails, those it made are
    removed again while empty (each failed call left an empty folder behind)."""
    made = [path for path in (folder, *folder.parents) if not path.exists()]  # the deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for path in made:
            try:
                path.rmdir()
            except OSError:  # something was written there
                break
        raise
