"""Scene discovery: which file is the PAN, which file bands make the MS (in band order), sensor and bit depth.

Evidence, strongest first:
1. Landsat metadata (`*MTL.txt|xml|json`): spacecraft, band file names, bit depth (QUANTIZE_CAL_MAX). Landsat-8/9
   OLI: B2..B5 = blue, green, red, nir; B8 PAN. Landsat-7 ETM+: B1..B4, B8.
2. File-name tokens: Landsat `_B8`/`_Bn`; Maxar `-P1BS-`/`-M1BS-`, `-P2AS-`/`-M2AS-` (a tiled product: its `.TIL`,
   read as the mosaic of the tiles it names, `ddrf.rasters`); Pleiades and SPOT 6/7 DIMAP `_P_`/`_MS_` (which of
   the two: the DIMAP MISSION, else `IMG_SPOT6_`/`IMG_SPOT7_` names);
   GaoFen `-PAN1`/`-MSS1`; generic `pan`/`ms`.
3. Raster properties: the single-band file on the finest grid is the PAN, the coarser files are the MS.

Rasters: `.tif`, `.tiff`, `.jp2`, `.img`, a Maxar `.TIL`, and a `.vrt` that reads no file of the folder (a
mosaic of a delivery kept elsewhere; one beside its own sources would count them twice).

Discovery only opens file headers. Whether the files are georeferenced, orthorectified and aligned is the job of
`ddrf.scenes.scene.Scene`. Sensor names, band numbers and bit depths come from `ddrf.sensors`.

Over 300 lines on purpose: one short section per naming scheme, in the order of the evidence above, so that adding
a scheme touches one place.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from xml.etree import ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from ddrf.geometry import crs_names, same_crs
from ddrf.rasters import TIL_SUFFIX, Tile, TileListError, is_til, read_files, til_absent, til_tiles
from ddrf.rasters import open_raster as open_any_raster
from ddrf.scenes.errors import SceneError
from ddrf.sensors import KNOWN_BAND_NAMES, SENSORS, find_sensor, get_sensor, listed_bands

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".img", TIL_SUFFIX}  # a .TIL: a Maxar product's tiles as one raster
VRT_SUFFIX = ".vrt"  # a scene's raster only where it reads no file of the scene folder (_rasters)
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".7z")  # a delivery left packed: never read


def unread_archive(path: Path, where: str) -> str | None:
    """The line for an archive that ddrf-run would pass over without a word (`where`: into what to extract it)."""
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return None
    return f"an archive; ddrf-run reads no archives: extract it into {where}"
# Landsat: sensor -> (product band number -> name) of every reflective MS band, from the sensor table (the coastal
# and SWIR bands too: a model or method takes those it fuses, ddrf.bundled picks the model using most of them).
LANDSAT_BANDS: dict[str, dict[int, str]] = {n: SENSORS[n].every_band_numbered() for n in ("Landsat7", "Landsat8",
                                                                                         "Landsat9")}
LANDSAT_PAN = 8
# SPACECRAFT_ID as MTLs write it; "Landsat7" is the form of USGS's MTLs before 2012 (BAND1_FILE_NAME = ..._B10.TIF)
SPACECRAFT = {"LANDSAT_7": "Landsat7", "Landsat7": "Landsat7", "LANDSAT_8": "Landsat8", "LANDSAT_9": "Landsat9"}
MAXAR_BITS = 11  # Maxar products, also from a satellite the sensor table does not know


def _names_by_count(*sensors: str) -> dict[int, list[str]]:
    """Band count -> the fused band names of these sensors (the first sensor wins a count)."""
    found: dict[int, list[str]] = {}
    for name in sensors:
        found.setdefault(len(SENSORS[name].band_names), list(SENSORS[name].band_names))
    return found


@dataclass
class SceneFiles:
    """What discovery found. `ms` holds (file, 1-based band index in that file) per MS band, in band order."""

    pan: Path
    ms: list[tuple[Path, int]]
    band_names: list[str]
    sensor: str
    bits: int | None
    metadata: Path | None = None
    scheme: str = "generic"  # landsat-mtl, landsat, maxar, pleiades, gaofen, generic, raster, paths
    name: str = ""
    names_assumed: bool = False  # band names from a convention, not from metadata or band descriptions
    band_source: str = ""  # where the band names came from: metadata, descriptions, convention, --bands
    missing: dict[str, Path] = field(default_factory=dict)  # bands the metadata names but whose file is absent


@dataclass(frozen=True)
class _Raster:
    path: Path
    count: int
    res: float  # pixel width in CRS units (or 1 without a geotransform)
    descriptions: tuple[str, ...]
    dtypes: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()  # each band's colour interpretation (red, green, blue, alpha, gray, undefined)
    crs: object = None  # the unit of `res`: pixel sizes compare only within one CRS
    transform: Affine = Affine.identity()
    shape: tuple[int, int] = (1, 1)

    def image_bands(self) -> list[int]:
        """The bands that hold image data: an alpha band is the others' mask (read with them), not a band to fuse.
        GDAL flags the fourth band of any four-band byte file it wrote without being told otherwise as alpha, so a
        band counts as alpha only when its description names no band and it holds no value but 0 and its type's
        largest (what an alpha band holds; a NIR band does not)."""
        return [b for b in range(1, self.count + 1) if not self._alpha(b)]

    def _alpha(self, band: int) -> bool:
        if self.colours[band - 1:band] != ("alpha",) or self.descriptions[band - 1].lower() in KNOWN_BAND_NAMES:
            return False
        with open_raster(self.path) as src:
            step = max(1, -(-max(src.height, src.width) // 1024))  # a decimated read: a flat cost at any size
            values = np.unique(src.read(band, out_shape=(-(-src.height // step), -(-src.width // step))))
        top = np.iinfo(values.dtype).max if values.dtype.kind in "iu" else 1.0
        return bool(np.isin(values, (0, top)).all())


def open_raster(path: Path) -> rasterio.io.DatasetReader:
    """rasterio.open (a .TIL: the mosaic of its tiles) without its two-line NotGeoreferencedWarning: Scene says so
    in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return open_any_raster(path)
        except TileListError as exc:
            raise SceneError(path, f"Maxar tile list: {exc}") from exc


def _probe(path: Path) -> _Raster:
    try:
        with open_raster(path) as src:
            return _Raster(path, src.count, abs(src.transform.a), tuple(d or "" for d in src.descriptions),
                           tuple(src.dtypes), tuple(c.name for c in src.colorinterp), src.crs,
                           src.transform, src.shape)
    except (RasterioIOError, OSError) as exc:
        raise SceneError(path, f"not a readable raster ({str(exc).splitlines()[0][:160]})") from exc
    except UnicodeEncodeError as exc:  # a name in another encoding (Latin-1 from Windows): its bytes shown as such
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise SceneError(shown, "its name is no UTF-8, which GDAL cannot open; rename the file") from exc


def delivered(name: str) -> bool:
    """A file or folder name that can be part of a delivery: not hidden, and not macOS's copy litter (`._X`
    AppleDouble files beside each file, `__MACOSX/` folders: a copy from a Mac to a FAT drive or a zip adds them,
    named like the data)."""
    return not name.startswith(".") and name != "__MACOSX"


def delivered_files(directory: Path) -> list[Path]:
    """Every file under `directory` that is part of the delivery (`delivered`), sorted. Symlinked sub-folders are
    followed (a staging area may link a delivery's PAN and MS folders), each real folder once."""
    found, seen = [], set()
    for root, folders, files in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree, or a second link to one folder
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [f for f in folders if delivered(f)]
        found += [Path(root, f) for f in files if delivered(f) and Path(root, f).is_file()]
    return sorted(found)


def _rasters(directory: Path) -> list[Path]:
    """The raster files, a Maxar tiled product as its .TIL alone (its tiles are read through it), and the VRTs over
    files elsewhere (_outside_vrts)."""
    files = delivered_files(directory)
    found = [p for p in files if p.suffix.lower() in RASTER_SUFFIXES]
    tiled = {t.path for p in found if is_til(p) for t in _listed_tiles(p)}
    return sorted([p for p in found if p not in tiled] + _outside_vrts(files, found))


def _outside_vrts(files: list[Path], rasters: list[Path]) -> list[Path]:
    """The VRTs that open and read no raster (or VRT) of the folder: a mosaic of a delivery kept elsewhere. One
    over the folder's own files would count them twice; one that does not open is no raster of the scene."""
    vrts = [p for p in files if p.suffix.lower() == VRT_SUFFIX]
    here = {p.resolve() for p in rasters + vrts}
    kept = []
    for vrt in vrts:
        sources = {f.resolve() for f in read_files(vrt)} - {vrt.resolve()}
        if sources and not sources & here:
            kept.append(vrt)
    return kept


def _listed_tiles(til: Path, strict: bool = False) -> list[Tile]:
    """The tiles a .TIL names; one that is no tile list names none (watch mode: perhaps still being copied), or
    with `strict` is a SceneError saying why (discovery: before its tiles look like tiles no .TIL names)."""
    try:
        return til_tiles(til)
    except TileListError as exc:
        if strict:
            raise SceneError(til, f"Maxar tile list: {exc}") from exc
        return []


# ---------------------------------------------------------------- Landsat metadata
def read_mtl(path: Path) -> dict[str, str]:
    """Flat KEY -> value of a Landsat MTL in ODL text, XML or JSON form."""
    text = path.read_text(errors="replace")
    if path.suffix.lower() == ".json":
        try:
            return dict(_walk_json(json.loads(text)))
        except json.JSONDecodeError as exc:
            raise SceneError(path, f"not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if path.suffix.lower() == ".xml":
        return dict(re.findall(r"<([A-Z0-9_]+)>([^<]*)</\1>", text))
    return {k: v.strip() for k, v in re.findall(r'^\s*([A-Z0-9_]+)\s*=\s*"?([^"\r\n]*?)"?\s*$', text, re.M)}


def _walk_json(node: object) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in (_walk_json(v) if isinstance(v, (dict, list)) else [(k, str(v))])]
    if isinstance(node, list):
        return [kv for item in node for kv in _walk_json(item)]
    return []


def is_mtl(path: Path) -> bool:
    return re.search(r"MTL\.(txt|xml|json)$", path.name, re.I) is not None


def _find_mtl(directory: Path) -> Path | None:
    found = [p for p in delivered_files(directory) if is_mtl(p)]
    folders = sorted({p.parent for p in found})
    if len(folders) > 1:  # e.g. a parent of several scenes given as one scene
        raise SceneError(directory, f"holds Landsat metadata of several scenes ({', '.join(str(f) for f in folders)}); "
                                    "give one scene directory each")
    scenes = sorted({re.sub(r"_MTL\.(txt|xml|json)$", "", p.name, flags=re.I) for p in found})
    if len(scenes) > 1:  # e.g. two downloads extracted into one folder
        raise SceneError(directory, f"holds Landsat metadata of several scenes ({', '.join(scenes)}); give one scene "
                                    "directory each")
    by_kind = {p.suffix.lower(): p for p in reversed(found)}
    return by_kind.get(".txt") or by_kind.get(".xml") or by_kind.get(".json")


def _landsat_band_file(band: int, named: str | None, base: Path, rasters: list[Path]) -> Path | None:
    """The file the MTL names (case-insensitive; None when it is absent: another file ending in _B<band> may be
    another scene's or product's), else, where the MTL names none, the one raster whose name ends in _B<band>."""
    if named:
        return next((path for path in rasters if path.name.lower() == Path(named).name.lower()), None)
    hits = [p for p in rasters if re.search(rf"_B0?{band}$", p.stem, re.I)]
    return hits[0] if len(hits) == 1 else None


def _mtl_bits(meta: dict[str, str], bands: list[int]) -> int | None:
    maxima = [meta.get(f"QUANTIZE_CAL_MAX_BAND_{b}") or meta.get(f"QCALMAX_BAND{b}") for b in bands]
    values = [int(float(v)) for v in maxima if v]
    return max(values).bit_length() if values else None


def _mtl_band_name(meta: dict[str, str], band: int) -> str | None:
    return meta.get(f"FILE_NAME_BAND_{band}") or meta.get(f"BAND{band}_FILE_NAME")


def listed_absent(directory: Path) -> list[tuple[Path, Path]]:
    """(file, metadata file naming it) for each file a scene's metadata names that is not in `directory`, e.g. still
    being copied (watch mode waits for them): the PAN and MS band files of a Landsat MTL, the image files of
    every DIMAP document (Pleiades, Pleiades Neo, SPOT 6/7) and the tiles of every Maxar .TIL. Empty without such
    metadata, or with metadata that cannot be read (discovery then says why)."""
    return _mtl_absent(directory) + _dimap_absent(directory) + _til_absent(directory)


def _mtl_absent(directory: Path) -> list[tuple[Path, Path]]:
    try:
        mtl = _find_mtl(directory)
        meta = read_mtl(mtl) if mtl is not None else {}
    except (SceneError, OSError):
        return []
    sensor = SPACECRAFT.get(meta.get("SPACECRAFT_ID", ""))
    if mtl is None or sensor is None:
        return []
    rasters = _rasters(directory)
    absent = []
    for band in (LANDSAT_PAN, *LANDSAT_BANDS[sensor]):
        named = _mtl_band_name(meta, band)
        if named and _landsat_band_file(band, named, mtl.parent, rasters) is None:
            absent.append((mtl.parent / Path(named).name, mtl))
    return absent


def _landsat_from_mtl(mtl: Path, rasters: list[Path]) -> SceneFiles:
    meta = read_mtl(mtl)
    spacecraft = meta.get("SPACECRAFT_ID", "")
    if spacecraft not in SPACECRAFT:
        if re.fullmatch(r"(?i)landsat_?[1-5]", spacecraft):
            raise SceneError(mtl, f"a {spacecraft} scene: Landsat 1-5 have no panchromatic band to fuse with")
        raise SceneError(mtl, f"not a Landsat-7/8/9 MTL (SPACECRAFT_ID {spacecraft or 'missing'})")
    sensor = SPACECRAFT[spacecraft]
    table = LANDSAT_BANDS[sensor]

    def named(band: int) -> str | None:
        return _mtl_band_name(meta, band)

    pan = _landsat_band_file(LANDSAT_PAN, named(LANDSAT_PAN), mtl.parent, rasters)
    if pan is None and meta.get("PROCESSING_LEVEL", "").upper().startswith("L2"):
        raise SceneError(mtl, f"a Level-2 product ({meta['PROCESSING_LEVEL']}): Level-2 has no panchromatic band; "
                              "fuse the scene's Level-1 product (L1TP)")
    if pan is None:
        raise SceneError(mtl.parent / (named(LANDSAT_PAN) or "*_B8.TIF"), "PAN band 8 file missing")
    ms, names, missing = [], [], {}
    for band, name in table.items():
        path = _landsat_band_file(band, named(band), mtl.parent, rasters)
        if path is None:
            missing[name] = mtl.parent / (named(band) or f"*_B{band}.TIF")
        else:
            ms.append((path, 1))
            names.append(name)
    scene_id = meta.get("LANDSAT_PRODUCT_ID") or meta.get("LANDSAT_SCENE_ID") or mtl.parent.name
    return SceneFiles(pan, ms, names, sensor, _mtl_bits(meta, [LANDSAT_PAN, *table]), mtl, "landsat-mtl",
                      scene_id, missing=missing)


# ---------------------------------------------------------------- file-name tokens
def _landsat_sensor(stem: str) -> str:
    m = re.match(r"^L[COTE]0?(\d)|^l(\d)_", stem, re.I)
    digit = (m.group(1) or m.group(2)) if m else ""
    return f"Landsat{digit}" if f"Landsat{digit}" in LANDSAT_BANDS else "Landsat8"


def _landsat_tokens(directory: Path, rasters: list[Path]) -> SceneFiles | None:
    """Landsat band files named ..._B<n> without an MTL. Each band's file is the one sharing the PAN's scene id
    (its name before _B<n>), else the only one of that band; several candidates (a gap_mask/ copy, an angle band
    named ..._SENSOR_AZIMUTH_B04) without a way to tell them apart are refused, naming them."""
    numbered: dict[int, list[Path]] = {}
    for path in rasters:
        if m := re.search(r"_B0?(\d{1,2})$", path.stem, re.I):
            numbered.setdefault(int(m.group(1)), []).append(path)
    if LANDSAT_PAN not in numbered:
        return None
    pan = _one_band_file(directory, LANDSAT_PAN, numbered[LANDSAT_PAN], None)
    sensor = _landsat_sensor(pan.stem)
    table = LANDSAT_BANDS[sensor]
    scene_id = _scene_id(pan)
    found = {b: _one_band_file(directory, b, numbered[b], scene_id) for b in table if b in numbered}
    ms = [(found[b], 1) for b in table if b in found]
    names = [n for b, n in table.items() if b in found]
    missing = {n: directory / f"*_B{b}.TIF" for b, n in table.items() if b not in found}
    return SceneFiles(pan, ms, names, sensor, None, None, "landsat", directory.name, missing=missing)


def _scene_id(path: Path) -> str:
    return re.sub(r"_B0?\d{1,2}$", "", path.stem, flags=re.I).lower()


def _one_band_file(directory: Path, band: int, candidates: list[Path], scene_id: str | None) -> Path:
    same = [p for p in candidates if scene_id is not None and _scene_id(p) == scene_id]
    chosen = same if len(same) == 1 else candidates
    if len(chosen) > 1:
        raise SceneError(directory, f"several files for Landsat band {band} and no MTL to tell them apart "
                                    f"({_listed(chosen, directory)}); keep one "
                                    f"scene's band files, or give --pan/--ms")
    return chosen[0]


def _parts(path: Path) -> list[str]:
    return [p for p in re.split(r"[_\-. ]", path.stem.lower()) if p]


def _split_roles(rasters: list[Path], is_pan, is_ms) -> tuple[list[Path], list[Path]]:
    return [p for p in rasters if is_pan(p)], [p for p in rasters if is_ms(p)]


def _maxar(directory: Path, rasters: list[Path]) -> SceneFiles | None:
    def level(p: Path, kind: str) -> bool:
        return re.search(rf"-{kind}(1BS|2AS|3DS|3DM|2AM)-", p.name, re.I) is not None

    pans, mss = _split_roles(rasters, lambda p: level(p, "P"), lambda p: level(p, "M"))
    tile = next((p for p in rasters if re.search(r"-[PM]\w{3}_R\d+C\d+-", p.name, re.I)), None)
    if tile is not None:  # a tile no .TIL names (a listed one is read through its .TIL, not listed here)
        raise SceneError(tile, "tile of a Maxar tiled product, but no .TIL beside it names it: copy the product's "
                               ".TIL files too, or mosaic the tiles first (gdalbuildvrt) and give --pan/--ms")
    if not pans and not mss:
        return None
    imd = next((p for p in delivered_files(directory) if p.suffix.upper() == ".IMD"), None)
    sat = re.search(r'satId\s*=\s*"(\w+)"', imd.read_text(errors="replace")) if imd else None
    known = find_sensor(sat.group(1)) if sat else None
    sensor = known.name if known else "generic"
    bits = known.bits if known else MAXAR_BITS
    return _pan_ms(directory, "maxar", pans, mss, sensor, bits, imd, _names_by_count("QB", "WV3"))


def _pleiades(directory: Path, rasters: list[Path]) -> SceneFiles | None:
    def pleiades(p: Path) -> bool:
        return p.name.upper().startswith(("IMG_", "DIM_")) or any(t.startswith("phr") for t in _parts(p))

    pans, mss = _split_roles(rasters, lambda p: pleiades(p) and "p" in _parts(p),
                             lambda p: pleiades(p) and "ms" in _parts(p))
    if not pans and not mss:
        return None
    dims = [p for p in delivered_files(directory) if p.name.startswith("DIM_") and p.suffix.upper() == ".XML"]
    ms_dim = next((p for p in dims if "ms" in _parts(p)), None)
    text = ms_dim.read_text(errors="replace") if ms_dim is not None else ""
    sensor = SENSORS[_dimap_mission(text, pans + mss)]
    bits, order = sensor.bits, list(sensor.band_names)
    if m := re.search(r"<NBITS>(\d+)</NBITS>", text):
        bits = int(m.group(1))
    index = text[text.find("<Raster_Index_List"):]
    ids = re.findall(r"<BAND_ID>(B\d)</BAND_ID>", index)
    numbered = {f"B{k}": name for k, name in sensor.numbered().items()}
    if ids and all(i in numbered for i in ids):
        order = [numbered[i] for i in ids]
    return _pan_ms(directory, "pleiades", pans, mss, sensor.name, bits, ms_dim, {len(order): order},
                   assumed=ms_dim is None)


def _dimap_mission(dimap: str, rasters: list[Path]) -> str:
    """SPOT 6/7 or Pleiades (one product format, DIMAP): the document's MISSION, else the image names' IMG_SPOT6_."""
    if m := re.search(r"<MISSION>\s*(\w+)\s*</MISSION>", dimap):
        return "SPOT6/7" if m.group(1).upper() == "SPOT" else "Pleiades"
    spot = any(t.startswith(("spot6", "spot7")) for p in rasters for t in _parts(p))
    return "SPOT6/7" if spot else "Pleiades"


def _dimap_absent(directory: Path) -> list[tuple[Path, Path]]:
    """The image files (Raster_Data/Data_Access/.../DATA_FILE_PATH, relative to the document's folder: one per band
    file or R<row>C<col> tile) that a DIMAP document in `directory` names and that are not there."""
    absent = []
    for document in (p for p in delivered_files(directory) if p.name.startswith("DIM_") and p.suffix.upper() == ".XML"):
        try:
            root = ElementTree.parse(document).getroot()
        except (ElementTree.ParseError, OSError):  # half-written or not DIMAP: nothing to wait for
            continue
        for node in root.iter("DATA_FILE_PATH"):
            href = node.get("href", "")
            if href and not (document.parent / href).is_file():
                absent.append((document.parent / href, document))
    return absent


def _til_absent(directory: Path) -> list[tuple[Path, Path]]:
    """The tiles that a Maxar .TIL in `directory` names and that are not there."""
    tils = [p for p in delivered_files(directory) if is_til(p)]
    return [(tile, til) for til in tils for tile in til_absent(til)]


def _gaofen(directory: Path, rasters: list[Path]) -> SceneFiles | None:
    def role(p: Path, kind: str) -> bool:
        return re.search(rf"-{kind}\d$", p.stem, re.I) is not None

    pans, mss = _split_roles(rasters, lambda p: role(p, "PAN"), lambda p: role(p, "MSS"))
    if not pans and not mss:
        return None
    m = re.match(r"^(GF\d)", (pans or mss)[0].name, re.I)
    known = find_sensor(m.group(1)) if m else None
    sensor = get_sensor(known or "GF2")  # bits and bands of a GaoFen the table does not know: those of GF-2
    return _pan_ms(directory, "gaofen", pans, mss, sensor.name if known else "generic", sensor.bits, None,
                   _names_by_count(sensor.name))


def _generic_tokens(directory: Path, rasters: list[Path]) -> SceneFiles | None:
    pan_words, ms_words = {"pan", "panchromatic"}, {"ms", "mul", "mss", "multispectral"}
    pans, mss = _split_roles(rasters, lambda p: bool(pan_words & set(_parts(p))),
                             lambda p: bool(ms_words & set(_parts(p))))
    if not pans or not mss:
        return None
    return _pan_ms(directory, "generic", pans, mss, "generic", None, None, {})


def _pan_ms(directory: Path, scheme: str, pans: list[Path], mss: list[Path], sensor: str, bits: int | None,
            metadata: Path | None, names_by_count: dict[int, list[str]], assumed: bool = False) -> SceneFiles:
    """One PAN file and one multi-band or several single-band MS files, checked for band counts."""
    if len(pans) > 1 and all(re.search(r"_R\d+C\d+", p.stem, re.I) for p in pans):  # a tiled delivery
        tiles = _listed(pans, directory)
        raise SceneError(directory, f"{scheme} naming: the PAN is in {len(pans)} tiles ({tiles}); mosaic the PAN "
                                    f"tiles and the MS tiles first (gdalbuildvrt pan.vrt ..., ms.vrt ...) and give "
                                    f"--pan pan.vrt --ms ms.vrt")
    if len(pans) != 1:
        what = "no PAN file" if not pans else f"several PAN files ({_listed(pans, directory)})"
        raise SceneError(directory, f"{scheme} naming: {what}; give --pan/--ms explicitly")
    if not mss:
        raise SceneError(directory, f"{scheme} naming: PAN {pans[0].name} found but no MS file")
    infos = [_probe(p) for p in mss]
    pan = _probe(pans[0])
    if pan.image_bands() != [1]:  # grey + alpha (gdalwarp -dstalpha) is a PAN: the alpha band is its mask
        raise SceneError(pans[0], f"PAN file has {pan.count} bands, expected 1")
    if len(infos) > 1 and any(i.count != 1 for i in infos):
        bad = next(i for i in infos if i.count != 1)
        raise SceneError(bad.path, f"has {bad.count} bands; several MS files must be single-band")
    kept = [(i, b) for i in infos for b in i.image_bands()]
    ms = [(i.path, b) for i, b in kept]
    if names_by_count and len(ms) not in names_by_count:
        expected = " or ".join(str(n) for n in names_by_count)
        raise SceneError(mss[0], f"{scheme} MS has {len(ms)} bands, expected {expected}")
    names, guessed, source = _band_names(kept, names_by_count)
    return SceneFiles(pans[0], ms, names, sensor, bits, metadata, scheme, directory.name,
                      names_assumed=assumed or guessed, band_source=source)


def _listed(paths: list[Path], directory: Path) -> str:
    """Files by their path in the scene folder: two deliveries nested in one folder may share file names."""
    return ", ".join(str(p.relative_to(directory)) if directory in p.parents else p.name for p in paths)


def _band_names(kept: list[tuple[_Raster, int]], names_by_count: dict[int, list[str]]
                ) -> tuple[list[str], bool, str]:
    """(names, assumed, where they came from): band descriptions when they are band names, else the scheme's names,
    else the bands' colour interpretation when it is exactly red, green and blue (GDAL writes it by default for
    three-band byte files, so still an assumption, said), else a stated assumption from the band count."""
    described = [i.descriptions[b - 1].lower().replace(" ", "_") for i, b in kept if i.descriptions]
    named = len(described) == len(kept) and all(d in KNOWN_BAND_NAMES for d in described)
    if named and len(set(described)) == len(described):
        return described, False, ""
    count = len(kept)
    if count in names_by_count:
        return list(names_by_count[count]), False, ""
    colours = [i.colours[b - 1] if i.colours else "" for i, b in kept]
    if sorted(colours) == ["blue", "green", "red"]:
        return colours, True, "the file's colour interpretation (assumed)"
    why = _named_twice(kept, described) if named else ""  # said, else it reads as if nothing described them
    conventional = _names_by_count("QB", "WV3")
    if count in conventional:
        return list(conventional[count]), True, why
    return [f"band{i + 1}" for i in range(count)], True, why


def _named_twice(kept: list[tuple[_Raster, int]], described: list[str]) -> str:
    """Which band name the descriptions give twice, and where: `the band descriptions name red twice: ms.tif
    bands 1 and 3` (one file) or `... twice: a.tif band 1 and b.tif band 1` (band files)."""
    name = next(d for d in described if described.count(d) > 1)
    (first, a), (second, b) = [kept[k] for k, d in enumerate(described) if d == name][:2]
    where = (f"{first.path.name} bands {a} and {b}" if first.path == second.path
             else f"{first.path.name} band {a} and {second.path.name} band {b}")
    return f"the band descriptions name {name} twice: {where}"


# ---------------------------------------------------------------- raster properties
def _by_raster_properties(directory: Path, rasters: list[Path]) -> SceneFiles:
    infos = [_probe(p) for p in rasters]
    _check_one_crs(directory, infos)
    finest = min(i.res for i in infos)
    pans = [i for i in infos if abs(i.res - finest) <= 1e-9 * finest and i.image_bands() == [1]]
    mss = [i for i in infos if i.res > finest * (1 + 1e-9)]
    if len(pans) != 1 or not mss:
        listed = f"; single-band on the finest grid: {_listed([i.path for i in pans], directory)}" if pans else ""
        raise SceneError(directory, "cannot tell PAN from MS (no metadata, no known file names, and not exactly "
                                    f"one single-band file on the finest grid with coarser files beside it){listed}")
    coarse = {round(i.res, 9) for i in mss}
    if len(coarse) > 1:
        raise SceneError(directory, f"MS candidates have several pixel sizes {sorted(coarse)}; give --pan/--ms")
    return _pan_ms(directory, "raster", [pans[0].path], [i.path for i in mss], "generic", None, None, {})


def _check_one_crs(directory: Path, infos: list[_Raster]) -> None:
    """PAN and MS are told apart by pixel size, which in two CRSs may be in two units (degrees look finer than
    metres): files in two CRSs are said to be so, not taken for a folder without a PAN."""
    first = infos[0]
    other = next((i for i in infos if not same_crs(first.crs, i.crs, first.transform, first.shape)), None)
    if other is not None:
        names = crs_names(first.crs, other.crs)
        raise SceneError(directory, f"its rasters are in different CRSs ({first.path.name} {names[0]}, "
                                    f"{other.path.name} {names[1]}), so their pixel sizes cannot tell PAN from MS; "
                                    "warp them onto one CRS (e.g. gdalwarp -t_srs) or give --pan/--ms")


# ---------------------------------------------------------------- public API
def check_one_type(files: SceneFiles) -> SceneFiles:
    """The output takes the MS type, so every MS band must share it: another band's values would be cut to it or
    keep their own scale inside it."""
    probes = {path: _probe(path) for path in dict.fromkeys(path for path, _ in files.ms)}
    typed = [(path, band, probes[path].dtypes[band - 1]) for path, band in files.ms
             if 1 <= band <= probes[path].count]  # a missing band is Scene's error
    first, first_band, first_type = typed[0] if typed else (None, 0, None)
    for path, band, dtype in typed[1:]:
        if dtype != first_type:
            this, other = (f"band {band}", f"band {first_band}") if path == first else ("data type", str(first))
            raise SceneError(path, f"{this} is {dtype} but {other} is {first_type}: the MS bands of one scene must "
                                   "share one data type; convert them to one")
    return files


def discover_scene(directory: str | Path) -> SceneFiles:
    """Find the PAN and MS files of one scene directory (searched recursively)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SceneError(directory, "a file, not a scene directory (the folder holding a scene's PAN and MS files)"
                         if directory.exists() else "no such directory")
    rasters = _rasters(directory)
    for til in filter(is_til, rasters):
        _listed_tiles(til, strict=True)
    mtl = _find_mtl(directory)
    if mtl is not None:
        return check_one_type(_landsat_from_mtl(mtl, rasters))
    if not rasters:
        for vrt in (p for p in delivered_files(directory) if p.suffix.lower() == VRT_SUFFIX):
            _probe(vrt)  # a VRT that does not open: its own reason, rather than 'no raster files'
        for path in delivered_files(directory):
            packed = unread_archive(path, "the scene folder")
            if packed:
                raise SceneError(path, packed)
        raise SceneError(directory, "no raster files (.tif/.tiff/.jp2/.img/.til, or .vrt over files elsewhere) and "
                                    "no Landsat MTL")
    for scheme in (_landsat_tokens, _maxar, _pleiades, _gaofen, _generic_tokens):
        found = scheme(directory, rasters)
        if found is not None:
            return check_one_type(found)
    return check_one_type(_by_raster_properties(directory, rasters))


def select_bands(files: SceneFiles, needed: Sequence[str]) -> SceneFiles:
    """The scene restricted to the model's bands, in the model's order; a clear error when one is missing."""
    wanted = [b.lower() for b in needed]
    absent = [b for b in wanted if b not in files.band_names]
    if absent:
        where = files.missing.get(absent[0]) or files.metadata or (files.ms[0][0] if files.ms else files.pan.parent)
        raise SceneError(where, f"band {absent[0]} missing: the model needs bands {', '.join(wanted)}; "
                                f"the scene has {listed_bands(files.band_names) or 'none'}")
    ms = [files.ms[files.band_names.index(b)] for b in wanted]
    return replace(files, ms=ms, band_names=wanted, missing={})


def pair_from_paths(pan_path: str | Path, ms_paths: str | Path | Sequence[str | Path]) -> SceneFiles:
    """SceneFiles for explicit `--pan PAN.tif --ms MS.tif [MS2.tif ...]` (one multi-band or single-band files)."""
    pan = Path(pan_path)
    mss = [Path(ms_paths)] if isinstance(ms_paths, (str, Path)) else [Path(p) for p in ms_paths]
    for path in [pan, *mss]:
        if not path.is_file():
            raise SceneError(path, "file missing")
    bands = [m.group(1) for p in mss if (m := re.search(r"_B0?(\d{1,2})$", p.stem, re.I))]
    landsat_pan = re.search(r"_B0?8$", pan.stem, re.I) is not None  # ms_b1.tif .. ms_b4.tif alone are no Landsat
    if landsat_pan and len(bands) == len(mss) and len(mss) > 1:  # Landsat band files: names from the band numbers
        sensor = _landsat_sensor(pan.stem)
        table = LANDSAT_BANDS[sensor]
        if all(int(b) in table for b in bands):
            names = [table[int(b)] for b in bands]
            return check_one_type(SceneFiles(pan, [(p, 1) for p in mss], names, sensor, None, None, "paths",
                                             pan.stem))
    found = _pan_ms(pan.parent, "paths", [pan], mss, "generic", None, None, {})
    return check_one_type(replace(found, name=pan.stem))


def name_scene(files: SceneFiles, sensor: str | None, bands: Sequence[str]) -> SceneFiles:
    """The run's --sensor and --bands applied to a scene's files (each only where given). --bands first: bands it
    names are named, so the sensor's names (by count) are not asked of them."""
    files = name_bands(files, bands) if bands else files
    return name_sensor(files, sensor) if sensor else files


def name_sensor(files: SceneFiles, sensor: str) -> SceneFiles:
    """--sensor: the scene's sensor (MTF gains, model choice, report), and its band names by the band count where
    neither metadata nor band descriptions named the bands. Named bands stay as they are; names from the sensor are
    still an assumption about the file's band order (the sensor's band-number order), which the run log states."""
    found = get_sensor(sensor)
    sets = found.band_sets()
    if not files.names_assumed or not sets:
        return replace(files, sensor=found.name)
    names = next((s for s in sets if len(s) == len(files.ms)), None)
    if names is None:
        raise ValueError(f"{files.ms[0][0]}: --sensor {found.name} names {' or '.join(str(len(s)) for s in sets)} "
                         f"MS bands but the MS has {len(files.ms)}; name them with --bands")
    return replace(files, sensor=found.name, band_names=list(names),
                   band_source=f"--sensor {found.name}, bands in its band-number order (assumed)")


def name_bands(files: SceneFiles, names: Sequence[str]) -> SceneFiles:
    """The user's band names (--bands) for the MS bands in file order."""
    if len(names) != len(files.ms):
        raise ValueError(f"{files.ms[0][0] if files.ms else files.pan}: --bands names {len(names)} bands "
                         f"({', '.join(names)}) but the MS has {len(files.ms)}")
    names = [n.lower() for n in names]
    differ = [k for k, (asked, had) in enumerate(zip(names, files.band_names)) if asked != had]
    if differ and not files.names_assumed:  # the output's band names, wavelengths and the model's inputs would lie
        (path, band), k = files.ms[differ[0]], differ[0]
        source = files.band_source or f"its {files.scheme} naming and metadata"
        raise ValueError(f"{path}: --bands names band {band} {names[k]}, but {source} name it "
                         f"{files.band_names[k]} ({', '.join(files.band_names)}); --bands names bands that nothing "
                         "else names: leave it out for this scene")
    return replace(files, band_names=names, names_assumed=False, band_source="--bands")
