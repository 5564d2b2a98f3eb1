"""A STAC Item beside every fused GeoTIFF (`<name>.tif` -> `<name>.item.json`), and an optional static catalogue.

The Item is STAC 1.1.0, made with rio-stac (footprint, bbox, projection extension) and pystac, from the GeoTIFF and
the run report beside it (`<name>.json`). Band metadata uses STAC 1.1 common `bands` (name, data_type, nodata,
statistics: what the raster extension held before 1.1) with the eo extension's `eo:common_name`; the processing
extension names the software; `ddrf:*` properties hold the method, steps, seed, backend, the `--statistics-from`
scene and the model card hash.
Asset hrefs are relative, so an output folder can be moved or served as it is.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio

from ddrf.geometry import is_nodata, nodata_json, read_decimated

EO_EXTENSION = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.0.0/schema.json"
ITEM_SUFFIX = ".item.json"
CATALOG_ID = "ddrf-outputs"
# the project's band names (ddrf.scenes.discover) <-> STAC eo:common_name
COMMON_NAMES = {"coastal": "coastal", "blue": "blue", "green": "green", "yellow": "yellow", "red": "red",
                "red_edge": "rededge", "nir": "nir", "nir1": "nir08", "nir2": "nir09", "swir1": "swir16",
                "swir2": "swir22", "pan": "pan"}


def href_of(path: str) -> str:
    """A local path (relative, or absolute) as a STAC href, which is a URI reference: `%`, `#` and `?` escaped, else
    every reader that resolves hrefs as URIs (ddrf-run's Item input, STAC browsers, the folder served over HTTP) cuts
    `x?.tif` at the query or `x #1.tif` at the fragment, or reads `x%41.tif` as `xA.tif`. Nothing else is escaped:
    spaces and non-ASCII letters are taken as they are by those readers, and by pystac and GDAL as paths."""
    return re.sub(r"[%#?]", lambda found: f"%{ord(found.group()):02X}", path)


def item_path(raster: Path) -> Path:
    return raster.with_name(raster.stem + ITEM_SUFFIX)


def card_hash(model_dir: str | None) -> str | None:
    """sha256 of the model's card.json: names the exact model (the card records its graphs' hashes)."""
    if not model_dir or not (Path(model_dir) / "card.json").is_file():
        return None
    return hashlib.sha256((Path(model_dir) / "card.json").read_bytes()).hexdigest()


def acquired(report: dict[str, Any]) -> datetime | None:
    """Acquisition time from the scene's metadata: a Landsat MTL's date and scene centre time (text, XML or JSON), a
    Maxar IMD's first line time, a DIMAP's (Pleiades, SPOT 6/7) imaging date and time."""
    from ddrf.scenes.discover import is_mtl, read_mtl

    path = scene_metadata(report.get("inputs", {}))
    if path is None:
        return None
    try:
        if is_mtl(path):
            mtl = read_mtl(path)
            return _utc(mtl["DATE_ACQUIRED"], mtl.get("SCENE_CENTER_TIME", "00:00:00"))
        name = path.name.upper()
        if name.endswith(".IMD"):
            found = re.search(r"^\s*(?:firstLineTime|earliestAcqTime)\s*=\s*\"?(\d{4}-\d\d-\d\d)T([\d:.]+)",
                              path.read_text(errors="replace"), re.M)
            return _utc(found.group(1), found.group(2)) if found else None
        if name.startswith("DIM_") and name.endswith(".XML"):
            text = path.read_text(errors="replace")
            day, clock = (re.search(rf"<{tag}>\s*([^<]*?)\s*</{tag}>", text)
                          for tag in ("IMAGING_DATE", "IMAGING_TIME"))
            return _utc(day.group(1), clock.group(1) if clock else "00:00:00") if day else None
    except (KeyError, ValueError, OSError):
        return None
    return None


def scene_metadata(inputs: dict[str, Any]) -> Path | None:
    """The metadata file discovery read, else for Landsat band files given as --pan/--ms (`X_B8.TIF`) their MTL
    beside them (`X_MTL.txt`, .xml or .json), which names their acquisition time."""
    if inputs.get("metadata"):
        return Path(inputs["metadata"])
    pan = Path(inputs.get("pan_file") or ".")
    landsat = re.fullmatch(r"(.+)_B0?8", pan.stem, re.I)
    suffixes = (".txt", ".xml", ".json") if landsat else ()
    beside = [pan.with_name(f"{landsat.group(1)}_MTL{suffix}") for suffix in suffixes if landsat]
    return next((path for path in beside if path.is_file()), None)


def _utc(day: str, clock: str) -> datetime:
    """A date and a time of day (Z or none: UTC) as UTC; the fraction of a second to microseconds (metadata give
    1 to 7 digits, Python 3.10's fromisoformat takes 3 or 6)."""
    whole, _, fraction = clock.strip().rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{day.strip()}T{whole}").replace(microsecond=int(f"{fraction:0<6}"[:6]),
                                                                     tzinfo=timezone.utc)


def spectral_fields(sensor_name: str | None, band: str) -> dict[str, float]:
    """eo:center_wavelength and eo:full_width_half_max (micrometres) from the sensor table, when it knows the band."""
    from ddrf.sensors import find_sensor

    sensor = find_sensor(sensor_name) if sensor_name else None
    known = {b.name: b for b in sensor.bands} if sensor is not None else {}
    if band not in known:
        return {}
    return {"eo:center_wavelength": round(known[band].centre_nm / 1000, 4),
            "eo:full_width_half_max": round(known[band].width_nm / 1000, 4)}


def band_entries(raster: Path, names: list[str], sensor: str | None = None) -> list[dict[str, Any]]:
    """STAC 1.1 `bands` of the fused raster: name, eo:common_name, wavelengths (from the sensor table), data type,
    nodata, statistics (of valid pixels)."""
    with rasterio.open(raster) as src:
        step = max(1, max(src.height, src.width) // 1024)  # statistics from a decimated read: flat cost
        # validity from the nodata value (which decides, also beside an alpha band of older outputs), not from
        # masked=True: GDAL's mask of each band decodes the pixel-interleaved tiles again, once per band (170 s of
        # a 200-band run)
        shape = (-(-src.height // step), -(-src.width // step))
        data = read_decimated(src, list(range(1, src.count + 1)), shape, dtype=np.dtype(src.dtypes[0]))
        invalid = is_nodata(data, src.nodata)
        bands = []
        for k, name in enumerate(names):
            valid = data[k][~invalid[k]].astype(np.float64)
            entry: dict[str, Any] = {"name": name, "data_type": src.dtypes[k]}
            if name in COMMON_NAMES:
                entry["eo:common_name"] = COMMON_NAMES[name]
            entry.update(spectral_fields(sensor, name))
            if src.nodata is not None:
                entry["nodata"] = nodata_json(src.nodata)
            if valid.size:
                entry["statistics"] = {"minimum": float(valid.min()), "maximum": float(valid.max()),
                                       "mean": float(valid.mean()), "stddev": float(valid.std()),
                                       "valid_percent": round(100.0 * valid.size / data[k].size, 3)}
            bands.append(entry)
    return bands


def processing_properties(report: dict[str, Any]) -> dict[str, Any]:
    engine = report.get("engine", {})
    software = {"ddrf-edge": report.get("software", {}).get("ddrf-edge", _own_version())}
    for name in ("onnxruntime", "rasterio", "gdal"):
        if name in report.get("software", {}):
            software[name] = str(report["software"][name])
    if engine.get("kind") == "model":
        samples = engine.get("samples") or 1
        members = (f", the mean of {samples} {'views' if engine.get('views') else 'samples'}" if samples > 1 else "")
        shared = engine.get("statistics_from")  # another scene's normalisation: other pixels than its own
        statistics = f", the normalisation and statistics of {shared}" if shared else ""
        method, lineage = "ddrf", (f"DDRF diffusion pansharpening ({engine.get('steps')} steps{members}, "
                                   f"{engine.get('backend')}{statistics}) of PAN + MS on the PAN grid")
    else:
        method = engine.get("method", "unknown")
        fitted = engine.get("fitted_on")  # one set of coefficients for every window (reports before it: None)
        fit = f", its coefficients fitted on {fitted}" if fitted else ""
        lineage = f"classical pansharpening ({method}{fit}) of PAN + MS on the PAN grid"
    props: dict[str, Any] = {"processing:lineage": lineage, "processing:software": software, "ddrf:method": method,
                             "ddrf:inputs": _input_files(report.get("inputs", {}))}
    props.update(scene_settings(report))
    if engine.get("kind") == "baseline":
        props["ddrf:fitted_on"] = engine.get("fitted_on")
    if engine.get("kind") == "model":
        props.update({"ddrf:steps": engine.get("steps"), "ddrf:seed": engine.get("seed"),
                      "ddrf:samples": samples, "ddrf:views": engine.get("views"),
                      "ddrf:backend": engine.get("backend"), "ddrf:statistics_from": engine.get("statistics_from"),
                      # as loaded by the run (reports before it: the folder's card now)
                      "ddrf:model_card_sha256": engine.get("card_sha256") or card_hash(engine.get("model_dir")),
                      "ddrf:model_hashes": engine.get("card", {}).get("hashes", {})})
        if (report.get("outputs") or {}).get("spread"):  # whether the spread map is a 1-sigma error
            props.update({"ddrf:spread_factor": engine.get("spread_factor"),
                          "ddrf:spread_calibrated": bool(engine.get("spread_fitted"))})
    return props


def scene_settings(report: dict[str, Any]) -> dict[str, Any]:
    """How the run read and cut the scene, as its report records it: the sensor (--sensor or the metadata's), the MS
    band names in file order and what named them (--bands, --sensor, metadata), the window and halo (--tile, --halo
    or their defaults), all of which change the pixels. Reports without them: None."""
    scene, inputs, tiling = (report.get(key) or {} for key in ("scene", "inputs", "tiling"))
    return {"ddrf:sensor": scene.get("sensor"), "ddrf:bands": scene.get("band_names"),
            "ddrf:band_identity": inputs.get("band_identity"), "ddrf:tile": tiling.get("tile"),
            "ddrf:halo": tiling.get("halo")}


def spread_description(engine: dict[str, Any]) -> str:
    """What the spread map holds: a calibrated 1-sigma error, or the members' raw spread (the card fits no factor,
    or fits it at other steps or member counts: ddrf-run said so when it ran)."""
    members = f"{engine.get('samples')} {'views' if engine.get('views') else 'samples'}"
    scaled = f"the standard deviation of the {members} x {engine.get('spread_factor')}"
    if engine.get("spread_fitted"):
        return f"per-pixel 1-sigma error: {scaled}, the factor fitted on held-out data"
    return f"per-pixel spread, not calibrated as an error: {scaled}; no factor fitted for this model and run"


def _input_files(inputs: dict[str, Any]) -> list[str]:
    files = [inputs.get("pan_file") or inputs.get("pan")]
    files += [f for f, _ in inputs.get("ms_files", [])] or inputs.get("ms", [])
    files.append(inputs.get("metadata"))
    return list(dict.fromkeys(str(f) for f in files if f))


def _own_version() -> str:
    from ddrf.version import __version__

    return __version__


def build_item(raster: Path, report: dict[str, Any], source: pystac.Item | None = None) -> pystac.Item:
    """The Item of one fused GeoTIFF, from the file itself, its run report and the STAC Item it came from (if any)."""
    from rio_stac import create_stac_item

    outputs = report.get("outputs", {})
    span = (source.common_metadata.start_datetime, source.common_metadata.end_datetime) if source else (None, None)
    when, said = ((source.datetime, "the source STAC Item's datetime") if source is not None and source.datetime
                  else (span[0], "the source STAC Item's start_datetime") if span[0] is not None
                  else (acquired(report), "the acquisition time in the scene's metadata"))
    if when is None:  # STAC needs a datetime: the file's, said to be no acquisition time
        when, said = _modified(raster), "the output file's time: the inputs give no acquisition time"
    created = {"created": report["finished"]} if report.get("finished") else {}
    item = create_stac_item(str(raster), id=raster.stem, input_datetime=when, with_proj=True, asset_name="data",
                            asset_roles=["data"], asset_href=href_of(f"./{raster.name}"), geom_precision=7,
                            properties=created, geom_densify_pts=21)  # a bbox that holds the edges' bulge reprojected
    item.properties["ddrf:datetime_source"] = said
    if span[0] is not None and span[1] is not None:  # the source's acquisition interval, kept
        item.common_metadata.start_datetime, item.common_metadata.end_datetime = span
    item.properties.update(processing_properties(report))
    with rasterio.open(raster) as src:
        item.properties["gsd"] = ground_sample_distance(src.crs, src.transform, src.shape)
        if src.crs is not None:
            item.bbox, item.geometry = lon_lat_footprint(src.crs, src.bounds, item.geometry)
        if "proj:wkt2" in item.properties and src.crs is not None:  # a CRS with no EPSG code: rio-stac wrote WKT1
            item.properties["proj:wkt2"] = src.crs.to_wkt(version="WKT2_2019")
    item.assets["data"].title = f"Pansharpened {report.get('scene', {}).get('sensor', '')} scene".replace("  ", " ")
    item.assets["data"].media_type = raster_media_type(raster)
    item.assets["data"].extra_fields["bands"] = band_entries(raster, outputs.get("band_names") or [],
                                                             report.get("scene", {}).get("sensor"))
    # the eo extension only where a band has an eo field: its schema requires one (unnamed bands have none)
    uses_eo = any(key.startswith("eo:") for band in item.assets["data"].extra_fields["bands"] for key in band)
    item.stac_extensions += [EO_EXTENSION] * uses_eo + [PROCESSING_EXTENSION]
    extras = {"report": (raster.with_suffix(".json"), "application/json", ["metadata"], "ddrf-run report"),
              "spread": (outputs.get("spread"), None, ["uncertainty"], "per-pixel spread"),  # media: the file's
              "quicklook": (outputs.get("quicklook"), pystac.MediaType.PNG, ["overview"], "RGB quicklook")}
    described = {"spread": spread_description(report.get("engine", {}))}
    for key, (path, media, roles, title) in extras.items():
        if path and Path(path).is_file():
            item.add_asset(key, pystac.Asset(href_of(f"./{Path(path).name}"), title, described.get(key),
                                             media_type=media or raster_media_type(Path(path)), roles=roles))
    if "spread" in item.assets:  # its data type, nodata (NaN) and statistics too, for clients that load it by these
        spread_names = [f"{name} spread" for name in outputs.get("band_names") or []]  # the file's band descriptions
        item.assets["spread"].extra_fields["bands"] = band_entries(Path(outputs["spread"]), spread_names)
    if source is not None:  # derived_from links to STAC Items; plain input files are listed in ddrf:inputs
        for key in ("platform", "constellation", "instruments"):
            if key in source.properties:
                item.properties[key] = source.properties[key]
        origin = source.get_self_href()
        if origin:
            origin = origin if "://" in origin else href_of(origin)
            item.add_link(pystac.Link("derived_from", origin, pystac.MediaType.GEOJSON))
    return item


def raster_media_type(path: Path) -> str:
    """A COG's media type where GDAL wrote the file in its COG layout (`--cog`), else plain GeoTIFF's: STAC clients
    and tile servers read a COG in place by range requests only when its asset says it is one."""
    with rasterio.open(path) as src:
        cog = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    return str(pystac.MediaType.COG if cog else pystac.MediaType.GEOTIFF)


def lon_lat_footprint(crs: Any, bounds: Any, geometry: dict[str, Any] | None) -> tuple[list[float], Any]:
    """(bbox, geometry) in longitude and latitude as RFC 7946 and STAC want them: longitudes in -180..180, a
    footprint across the antimeridian split there, and its bbox's west greater than its east.

    rio-stac takes the bbox from the footprint's extremes, so a UTM zone 60 scene split at 180 got -180..180 (every
    longitude at its latitudes); its footprint of a geographic scene is the file's own bounds (179.9 to 180.1 stays
    past 180), and GDAL left a polar stereographic footprint across 180 one ring jumping from -180 to 179.8. GDAL's
    bounds transform densifies the edges, keeps a pole the footprint holds (-180..180, to -90 or 90) and gives
    west > east across the antimeridian. A geographic scene's footprint is then that box (exact in longitude and
    latitude), a projected one's rio-stac's densified ring, each split at 180 where it crosses."""
    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    if east - west < 360:  # a geographic grid may run past 180 or use 0..360
        west, east = (west + 180) % 360 - 180, 180 - (180 - east) % 360
    else:
        west, east = -180.0, 180.0
    bbox = [round(v, 7) for v in (west, south, east, north)]
    if crs.is_geographic:
        boxes = [(bbox[0], 180.0), (-180.0, bbox[2])] if bbox[0] > bbox[2] else [(bbox[0], bbox[2])]
        polygons = [[[[w, bbox[1]], [e, bbox[1]], [e, bbox[3]], [w, bbox[3]], [w, bbox[1]]]] for w, e in boxes]
    elif geometry is not None:
        polygons = [piece for polygon in (geometry["coordinates"] if geometry["type"] == "MultiPolygon"
                                          else [geometry["coordinates"]]) for piece in split_at_antimeridian(polygon)]
    else:
        return bbox, geometry
    return bbox, ({"type": "Polygon", "coordinates": polygons[0]} if len(polygons) == 1
                  else {"type": "MultiPolygon", "coordinates": polygons})


def split_at_antimeridian(polygon: list[Any]) -> list[list[Any]]:
    """A densified footprint polygon (lon, lat) as the polygons it makes on either side of 180: its ring's longitudes
    unwrapped (no step between neighbours over 180 degrees), then clipped to each 360-degree band it reaches and
    shifted into -180..180. A ring around a pole (its unwrapped longitude ends a turn from where it began), which
    GDAL has closed along 180 and the pole, and a polygon with holes are kept as they are."""
    ring = np.asarray(polygon[0], dtype=np.float64)
    if len(polygon) != 1 or len(ring) < 4:
        return [polygon]
    lon = ring[0, 0] + np.concatenate([[0.0], np.cumsum((np.diff(ring[:, 0]) + 180) % 360 - 180)])
    if abs(lon[-1] - lon[0]) > 1e-6:
        return [polygon]
    points = np.column_stack([lon, ring[:, 1]])[:-1]
    pieces = []
    for band in range(math.floor((lon.min() + 180) / 360), math.ceil((lon.max() - 180) / 360) + 1):
        piece = _clip_band(points, band * 360 - 180, band * 360 + 180)
        if len(piece) >= 3:
            closed = [[round(x - band * 360, 7), round(y, 7)] for x, y in (*piece, piece[0])]
            pieces.append([closed])
    return pieces or [polygon]


def _clip_band(points: np.ndarray, low: float, high: float) -> list[tuple[float, float]]:
    """The part of an open ring with longitudes from `low` to `high` (Sutherland-Hodgman against both meridians:
    a band of longitude is convex); a crossing's latitude interpolated along the densified edge."""
    ring = [(float(x), float(y)) for x, y in points]
    for edge, inside in ((low, lambda x: x >= low), (high, lambda x: x <= high)):
        clipped: list[tuple[float, float]] = []
        for k, (x, y) in enumerate(ring):
            px, py = ring[k - 1]
            if inside(x) != inside(px):
                clipped.append((edge, py + (y - py) * (edge - px) / (x - px)))
            if inside(x):
                clipped.append((x, y))
        ring = clipped
    return ring


METRES_PER_DEGREE = 111_195.0  # of latitude, on the mean Earth radius (within 0.6 % at any latitude)


def ground_sample_distance(crs: Any, transform: Any, shape: tuple[int, int] = (1, 1)) -> float:
    """STAC's gsd, in metres on the ground: the pixel width in the CRS's linear unit (US feet too), or in a geographic
    CRS the pixel's north-south side (a degree of longitude shrinks with latitude, one of latitude hardly does). A
    Mercator grid (Web Mercator, EPSG:3857) stretches the ground by 1 / cos(latitude): its pixel is that much smaller
    on the ground, taken at the grid's centre (`shape`: rows, columns) (a 15 m Web Mercator pixel at 60 N is 7.5 m)."""
    if crs is not None and crs.is_geographic:
        return round(abs(float(transform.e)) * METRES_PER_DEGREE, 3)
    factor = crs.linear_units_factor[1] if crs is not None and crs.is_projected else 1.0
    if crs is not None and crs.is_projected and "+proj=merc" in crs.to_proj4():
        from rasterio.warp import transform as warp_points

        x, y = transform * (shape[1] / 2, shape[0] / 2)
        factor *= math.cos(math.radians(warp_points(crs, "EPSG:4326", [x], [y])[1][0]))
    return round(abs(float(transform.a)) * factor, 6)


def _modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def write_item(raster: Path, source: pystac.Item | None = None) -> Path:
    """Write (or rewrite) `<name>.item.json` beside a finished GeoTIFF and its report; returns the Item's path."""
    from ddrf.files import write_text_atomic

    report_path = raster.with_suffix(".json")
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    item = build_item(raster, report, source)
    path = item_path(raster)
    write_text_atomic(path, json.dumps(item.to_dict(include_self_link=False), indent=2) + "\n")
    return path


def read_catalog(path: Path) -> pystac.Catalog:
    """An existing catalog.json as a STAC catalogue; a file that is none is a ValueError naming it."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("type") != "Catalog":
            raise ValueError(f"type is {data.get('type') if isinstance(data, dict) else type(data).__name__!r}, "
                             "not 'Catalog'")
        return pystac.Catalog.from_dict(data)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the STAC catalogue ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, pystac.STACError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a STAC catalogue ({' '.join(str(exc).split())})") from None


def check_catalog(catalog_dir: Path) -> None:
    """Before any scene: an existing `catalog_dir/catalog.json` must load as a STAC catalogue, and `catalog_dir` must
    take files (or, absent, be creatable: its nearest existing folder must take files). Writes nothing that stays.
    Raises ValueError naming catalog.json or the folder."""
    from ddrf.files import cannot_make

    path = catalog_dir / "catalog.json"
    if catalog_dir.exists() and not catalog_dir.is_dir():
        raise ValueError(f"{catalog_dir}: --stac-catalog names a file, not a directory")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, where the STAC catalogue would be written")
    if path.exists():
        read_catalog(path)
    reason = cannot_make(catalog_dir)
    if reason:
        raise ValueError(f"{catalog_dir}: cannot write the STAC catalogue here ({reason})")


def add_to_catalog(catalog_dir: Path, item_file: Path) -> list[str]:
    """Link an Item into the static catalogue `catalog_dir/catalog.json` (made on first use; one link per Item id),
    under its lock: runs sharing a catalogue (two watchers, parallel batches) would otherwise drop each other's
    links. Links to local Items that are gone (their output folder moved or deleted since) are dropped: returns
    their hrefs, for the caller to say."""
    from ddrf.files import exclusive

    catalog_dir.mkdir(parents=True, exist_ok=True)
    path = catalog_dir / "catalog.json"
    with exclusive(path, wait=True):
        return _link_item(path, item_file)


def _link_item(path: Path, item_file: Path) -> list[str]:
    from ddrf.files import write_text_atomic

    catalog_dir = path.parent
    if path.is_file():
        catalog = read_catalog(path)
    else:
        catalog = pystac.Catalog(CATALOG_ID, "Pansharpened scenes written by ddrf-run", title="DDRF Edge outputs")
    item_id = json.loads(item_file.read_text())["id"]
    gone = [link.href for link in catalog.links if link.rel == "item" and _gone(link.href, catalog_dir)]
    catalog.links = [link for link in catalog.links
                     if not (link.rel == "item" and (link.title == item_id or link.href in gone))]
    href = Path(_relative(item_file.resolve(), catalog_dir.resolve()))
    catalog.add_link(pystac.Link("item", href_of(href.as_posix()), pystac.MediaType.JSON, title=item_id))
    catalog.links.sort(key=lambda link: (link.rel, link.title or ""))
    write_text_atomic(path, json.dumps(catalog.to_dict(include_self_link=False), indent=2) + "\n")
    return gone


def _gone(href: str, catalog_dir: Path) -> bool:
    """A link to a local file (relative to the catalogue, or absolute) that no longer exists; URLs are not checked."""
    from urllib.parse import unquote

    return "://" not in href and not (catalog_dir / unquote(href)).is_file()


def _relative(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)
