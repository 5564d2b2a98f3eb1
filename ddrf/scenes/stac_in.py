"""`ddrf-run ITEM.json|URL -o OUT`: fuse the PAN and MS assets that a STAC Item names.

Band identity comes from the Item, never from asset keys or order: STAC 1.0 `eo:bands` (`common_name`) or STAC 1.1
`bands` (`eo:common_name`), on the asset or, for a single-raster Item, on the Item. The PAN is the asset whose only
band is `pan`; the MS bands are those with a visible or near-infrared common name, in single-band assets (Landsat
Collection 2: `blue`, `green`, `red`, `nir08`, ...) or in one multi-band asset (Maxar-style `ms_analytic`).

Remote assets are read where they are, through GDAL's virtual file systems (`/vsicurl/` for http(s), `/vsis3/`,
`/vsigs/`, `/vsiaz/`): cloud-optimised GeoTIFFs are read window by window with range requests, never downloaded
whole. Each band is wrapped in a small local VRT that names it (band description = the project's band name), so
the scene code sees ordinary single-band rasters; the VRTs live in `OUT/.ddrf-stac/<item id>/`. MS bands are put
in spectral order (coastal, blue, green, yellow, red, red edge, NIR), whatever the Item's asset or band order.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pystac
import rasterio

from ddrf.files import STAC_WORK_DIR
from ddrf.rasters import VrtSource, vrt_document
from ddrf.scenes.jobs import SceneJob
from ddrf.scenes.stac_out import COMMON_NAMES

VSI_PREFIXES = {"http://": "/vsicurl/", "https://": "/vsicurl/", "s3://": "/vsis3/", "gs://": "/vsigs/",
                "az://": "/vsiaz/"}
MS_COMMON = {"coastal", "blue", "green", "yellow", "red", "rededge", "nir", "nir08", "nir09"}
SPECTRAL_ORDER = ["coastal", "blue", "green", "yellow", "red", "red_edge", "nir", "nir1", "nir2"]  # output band order


def is_item_reference(argument: str) -> bool:
    """A URL, or a local .json path that is no directory (a mistyped Item is an unreadable Item, not a scene)."""
    lowered = argument.lower()
    return lowered.startswith(("http://", "https://")) or (lowered.endswith(".json") and not Path(argument).is_dir())


def read_item(reference: str) -> pystac.Item:
    try:
        return pystac.Item.from_file(reference)
    except Exception as exc:  # pystac raises many kinds for a bad document or an unreachable URL
        raise ValueError(f"{reference}: not a readable STAC Item ({' '.join(str(exc).split())[:200]})") from exc


@dataclass(frozen=True)
class BandSource:
    href: str  # as GDAL opens it: a local path or a /vsi... path
    band: int  # 1-based band in that file
    name: str  # the project's band name (blue, nir, nir1, red_edge, pan, ...)
    nodata: float | None = None  # what the Item declares for this band (raster:bands or bands), where the file does not


def gdal_path(href: str) -> str:
    """A STAC href as GDAL opens it: a remote one through /vsi...; a local one (a path or a file: URI, which is
    percent-encoded: a space is %20) as the file's path."""
    for scheme, prefix in VSI_PREFIXES.items():
        if href.lower().startswith(scheme):
            return prefix + (href if prefix == "/vsicurl/" else href[len(scheme):])
    if href.lower().startswith("file:"):
        parsed = urlparse(href)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{href}: a file URI on another host ({parsed.netloc}); mount it, or serve it over https")
        return unquote(parsed.path)
    return unquote(href)


def common_names(asset: pystac.Asset, item: pystac.Item) -> list[str | None]:
    """Per band of the asset, its eo common name (None where the Item does not say)."""
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands")
    if bands is None and asset.roles and "data" in asset.roles:
        rasters = [a for a in item.assets.values() if a.media_type and "tiff" in a.media_type.lower()]
        if len(rasters) == 1:
            bands = item.properties.get("eo:bands") or item.properties.get("bands")
    return [b.get("common_name") or b.get("eo:common_name") for b in bands or []]


def project_name(common: str, all_common: set[str]) -> str:
    """eo common name -> the project's band name (two NIR bands: nir1/nir2, as WorldView-2/3 are named)."""
    if common in ("nir08", "nir") and "nir09" in all_common:
        return "nir1"
    if common == "nir08":
        return "nir"
    reverse = {v: k for k, v in COMMON_NAMES.items()}
    return reverse.get(common, common)


def band_sources(item: pystac.Item, reference: str) -> tuple[BandSource, list[BandSource]]:
    """(PAN, MS bands) the Item names; a one-line error naming the Item when it has no PAN or no MS."""
    per_asset = {key: common_names(asset, item) for key, asset in item.assets.items()}
    all_common = {c for names in per_asset.values() for c in names if c}
    pans, ms = [], []
    for key, names in per_asset.items():
        href = gdal_path(item.assets[key].get_absolute_href() or item.assets[key].href)
        nodata = declared_nodata(item.assets[key])
        if names == ["pan"]:
            pans.append(BandSource(href, 1, "pan", nodata[0]))
        ms += [BandSource(href, i + 1, project_name(c, all_common), nodata[i]) for i, c in enumerate(names)
               if c in MS_COMMON]
    if len(pans) != 1:
        what = "no asset whose only band is pan" if not pans else f"{len(pans)} PAN assets"
        raise ValueError(f"{reference}: {what} (band identity is read from eo:bands / bands)")
    if not ms:
        raise ValueError(f"{reference}: no MS bands (no asset band with a visible or NIR eo common name)")
    ms_names = [b.name for b in ms]
    if len(set(ms_names)) != len(ms_names):
        raise ValueError(f"{reference}: MS band names repeat ({', '.join(ms_names)})")
    return pans[0], sorted(ms, key=lambda b: SPECTRAL_ORDER.index(b.name))


def write_vrt(source: BandSource, path: Path) -> Path:
    """A one-band VRT over `source` (read from its header: remote headers cost a range request or two)."""
    try:
        with rasterio.open(source.href) as src:
            dtype, width, height = src.dtypes[source.band - 1], src.width, src.height
            block = src.block_shapes[source.band - 1]
            crs, transform, src_nodata = src.crs, src.transform, src.nodatavals[source.band - 1]
    except rasterio.errors.RasterioIOError as exc:
        raise ValueError(f"{source.href}: cannot open ({' '.join(str(exc).split())[:200]})") from exc
    value = src_nodata if src_nodata is not None else source.nodata
    path.write_text(vrt_document(width, height, crs, transform, dtype,
                                 [[VrtSource(source.href, source.band, width, height, block=block)]], value,
                                 [source.name]))
    return path


def declared_nodata(asset: pystac.Asset) -> dict[int, float | None]:
    """Per band (0-based) of the asset, the nodata value the Item declares for it (raster:bands, or STAC 1.1 bands),
    None where it declares none: a QA asset's nodata is not the data's."""
    declared: dict[int, float | None] = {}
    for bands in (asset.extra_fields.get("raster:bands") or [], asset.extra_fields.get("bands") or []):
        for index, band in enumerate(bands):
            if isinstance(band, dict) and band.get("nodata") is not None and declared.get(index) is None:
                declared[index] = float(band["nodata"])
    return defaultdict(lambda: None, declared)


def refuse_outputs_over_inputs(raster: Path, reference: str, bands: list[BandSource]) -> None:
    """The Item file and its local assets are inputs: no output (raster, report, Item, ...) may replace them."""
    from ddrf.scenes.jobs import output_that_is_input
    from ddrf.scenes.streaming import Outputs

    local = [reference] if not reference.lower().startswith(("http://", "https://")) else []
    local += [b.href for b in bands if not b.href.startswith("/vsi")]
    clash = output_that_is_input(Outputs.for_raster(raster, True, True), [Path(p) for p in local])
    if clash is not None:
        raise ValueError(f"{clash}: is an input of STAC Item {reference}; choose another output directory "
                         "(inputs are never overwritten)")


def job_from_item(reference: str, output_dir: Path, wrappers: Path | None = None,
                  written: list[SceneJob] | None = None) -> tuple[SceneJob, pystac.Item]:
    """The SceneJob for one Item: its bands as named VRTs in OUT/.ddrf-stac/<id>/ (or `wrappers`/<id>/: a dry run
    writes nothing under OUT), output OUT/<id>.tif.

    `written`: the jobs whose wrapper folders this invocation made, for remove_wrappers should it stop before their
    scenes run. The job joins it before its VRTs are written (so that a failure partway is covered too) when its
    folder is new or one that a job in the list made; a folder already there (an earlier run's, a published
    scene's) never joins."""
    os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")  # no directory listing per remote file
    item = read_item(reference)
    pan, ms = band_sources(item, reference)
    if item.id in ("", ".", "..") or Path(item.id).name != item.id:  # the id names the output files
        raise ValueError(f"{reference}: Item id {item.id!r} is no plain file name; the outputs are named after it")
    refuse_outputs_over_inputs(output_dir / f"{item.id}.tif", reference, [pan, *ms])
    work = (wrappers or output_dir / STAC_WORK_DIR) / item.id
    pan_vrt, ms_vrts = work / "pan.vrt", tuple(work / f"ms_{b.name}.vrt" for b in ms)
    job = SceneJob(item.id, output_dir / f"{item.id}.tif", pan=pan_vrt, ms=ms_vrts,
                   wraps=tuple(zip([pan_vrt, *ms_vrts], [b.href for b in [pan, *ms]])), item=reference)
    if written is not None and (not work.exists() or any(j.pan is not None and j.pan.parent == work
                                                          for j in written)):
        written.append(job)
    work.mkdir(parents=True, exist_ok=True)
    for source, path in zip([pan, *ms], [pan_vrt, *ms_vrts]):
        try:
            write_vrt(source, path)
        except ValueError as exc:  # an asset that cannot be read fails this scene alone, as a bad scene folder does
            return replace(job, problem=f"{reference}: {source.name} asset {exc}"), item
    return job, item


def tidy_after(entry: dict[str, Any], job: SceneJob, from_item: bool) -> None:
    """After any scene (a batch, a Dask cluster, the API): an Item scene that failed or was abandoned leaves no band
    wrappers (remove_wrappers). Only Item scenes: another job's files are the user's inputs."""
    if from_item and entry["status"] in ("failed", "abandoned"):
        remove_wrappers(job)


def remove_wrappers(job: SceneJob) -> None:
    """After an Item scene that failed or was abandoned: its band VRTs in OUT/.ddrf-stac/<id>/ go, then that folder
    and .ddrf-stac itself where this leaves them empty, so a failure leaves no litter. Kept where a raster is
    published (its report names them) or another process holds the output's lock (it may be reading them). Only
    the files job_from_item wrote go; a folder holding anything else (another Item's wrappers) is kept."""
    from ddrf.files import Busy, exclusive

    work = job.pan.parent if job.pan is not None else None
    if work is None or work.name != job.name or work.parent.name != STAC_WORK_DIR:
        return  # not wrappers under OUT (a dry run's temporary folder, a scene directory's job)
    try:
        with exclusive(job.raster):
            if job.raster.is_file():
                return
            for path in (job.pan, *job.ms):
                if path is not None and path.parent == work:
                    path.unlink(missing_ok=True)
            for folder in (work, work.parent):
                folder.rmdir()
    except (Busy, OSError):  # busy, or a folder not empty (what is left there is not this scene's) or gone
        return
