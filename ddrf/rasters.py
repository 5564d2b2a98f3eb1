"""Opening a raster: a file as GDAL reads it, or a Maxar tiled delivery (`.TIL`) as one raster over its tiles.

Maxar ships large orthorectified products (2A, OR2A, 3D) cut into tiles, `<id>-P2AS_R1C1-<order>.TIF`,
`..._R1C2-...`, with a `.TIL` text file that names each tile file and its pixel offsets in the product. GDAL's own
TIL driver needs the product's `.IMD` and takes its georeferencing from it; here the mosaic is a VRT document, held
in memory and never written, whose grid is the tiles' own geotransform, checked against the offsets the `.TIL`
gives each tile. `vrt_document` is also what the STAC reader writes its band wrappers with.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import rasterio
from affine import Affine

TIL_SUFFIX = ".til"
GRID_TOLERANCE = 1e-6  # of a pixel: a tile's origin against the offset its .TIL gives it


@dataclass(frozen=True)
class VrtSource:
    """One band of one file, placed at (col, row) of the VRT's grid."""

    path: str  # as GDAL opens it: a local path or a /vsi... path
    band: int  # 1-based
    width: int
    height: int
    col: int = 0
    row: int = 0
    block: tuple[int, int] | None = None  # (rows, cols) of the source's blocks, when known


def gdal_type(dtype: str) -> str:
    """numpy's name of a raster data type -> GDAL's (uint16 -> UInt16)."""
    return {"uint8": "Byte"}.get(dtype, dtype.capitalize().replace("Uint", "UInt"))


def vrt_document(width: int, height: int, crs: rasterio.crs.CRS | None, transform: Affine, dtype: str,
                 bands: Sequence[Sequence[VrtSource]], nodata: float | None = None,
                 descriptions: Sequence[str] = (), nbits: str | None = None) -> str:
    """A VRT (XML text) of `bands`, each the mosaic of its sources, on the grid (width, height, crs, transform)."""
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = crs.to_wkt() if crs else ""
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in transform.to_gdal())
    kind = gdal_type(dtype)
    for index, sources in enumerate(bands):
        band = ET.SubElement(root, "VRTRasterBand", dataType=kind, band=str(index + 1))
        if index < len(descriptions) and descriptions[index]:
            ET.SubElement(band, "Description").text = descriptions[index]
        if nodata is not None:
            ET.SubElement(band, "NoDataValue").text = repr(float(nodata))
        if nbits:
            meta = ET.SubElement(band, "Metadata", domain="IMAGE_STRUCTURE")
            ET.SubElement(meta, "MDI", key="NBITS").text = nbits
        for source in sources:
            simple = ET.SubElement(band, "SimpleSource")
            ET.SubElement(simple, "SourceFilename", relativeToVRT="0").text = source.path
            ET.SubElement(simple, "SourceBand").text = str(source.band)
            if source.block is not None:
                ET.SubElement(simple, "SourceProperties", RasterXSize=str(source.width),
                              RasterYSize=str(source.height), DataType=kind, BlockXSize=str(source.block[1]),
                              BlockYSize=str(source.block[0]))
            ET.SubElement(simple, "SrcRect", xOff="0", yOff="0", xSize=str(source.width), ySize=str(source.height))
            ET.SubElement(simple, "DstRect", xOff=str(source.col), yOff=str(source.row), xSize=str(source.width),
                          ySize=str(source.height))
    return ET.tostring(root, encoding="unicode")


class TileListError(ValueError):
    """A .TIL that cannot be read as a mosaic: the message says why (the caller names the .TIL)."""


@dataclass(frozen=True)
class Tile:
    """One tile a .TIL names: its file and where its first pixel lies in the product (0-based)."""

    path: Path
    col: int
    row: int
    width: int
    height: int


def is_til(path: str | Path) -> bool:
    return Path(path).suffix.lower() == TIL_SUFFIX


def til_tiles(til: Path) -> list[Tile]:
    """The tiles a .TIL names, in its order; TileListError when it cannot be read as a tile list."""
    try:
        text = til.read_text(errors="replace")
    except OSError as exc:
        raise TileListError(f"cannot read it ({exc.strerror or exc})") from exc
    groups = re.findall(r"BEGIN_GROUP\s*=\s*TILE_\w+(.*?)END_GROUP", text, re.S)
    if not groups:
        raise TileListError("no TILE_ groups: not a Maxar tile list")
    tiles = []
    for number, group in enumerate(groups, 1):
        fields = {k.lower(): v for k, v in re.findall(r'(\w+)\s*=\s*"?([^";\n]*?)"?\s*;', group)}
        try:
            col, row = int(fields["ulcoloffset"]), int(fields["ulrowoffset"])
            width = int(fields["lrcoloffset"]) - col + 1
            height = int(fields["lrrowoffset"]) - row + 1
            name = fields["filename"]
        except (KeyError, ValueError) as exc:
            raise TileListError(f"tile {number}: no readable filename and UL/LR offsets") from exc
        if not name or Path(name).is_absolute() or ".." in Path(name).parts or width <= 0 or height <= 0:
            raise TileListError(f"tile {number}: file {name!r} at {col}, {row} size {width} x {height} is not a tile")
        tiles.append(Tile(til.parent / name, col, row, width, height))
    return tiles


def til_absent(til: Path) -> list[Path]:
    """The tile files a .TIL names that are not there (still being copied, or lost); [] if it cannot be read."""
    try:
        return [t.path for t in til_tiles(til) if not t.path.is_file()]
    except TileListError:
        return []


def til_document(til: Path) -> str:
    """The VRT of a .TIL's product; TileListError naming the tile at fault (missing, unreadable, off the grid)."""
    try:
        stat = til.stat()
    except OSError as exc:
        raise TileListError(f"cannot read it ({exc.strerror or exc})") from exc
    return _til_document(str(til.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)  # every window read opens the product again: its tiles' headers are read once
def _til_document(path: str, mtime_ns: int, size: int) -> str:
    tiles = til_tiles(Path(path))
    headers = [_tile_header(t) for t in tiles]
    first, origin = headers[0], headers[0]["transform"] @ Affine.translation(-tiles[0].col, -tiles[0].row)
    for tile, header in zip(tiles, headers):
        for key in ("count", "dtype", "crs", "nodata"):
            if str(header[key]) != str(first[key]):  # str: a NaN nodata equals itself
                raise TileListError(f"tile {tile.path.name}: {key} {header[key]} differs from "
                                    f"{tiles[0].path.name}'s {first[key]}")
        if (header["width"], header["height"]) != (tile.width, tile.height):
            raise TileListError(f"tile {tile.path.name} is {header['width']} x {header['height']} pixels but the "
                                f".TIL gives it {tile.width} x {tile.height}")
        t = header["transform"]
        col, row = ~origin @ (t.c, t.f)
        if (t.a, t.b, t.d, t.e) != (origin.a, origin.b, origin.d, origin.e) \
                or max(abs(col - tile.col), abs(row - tile.row)) > GRID_TOLERANCE:
            raise TileListError(f"tile {tile.path.name}: its geotransform puts it at column {col:.3f}, row "
                                f"{row:.3f} of the product, the .TIL at {tile.col}, {tile.row}")
    width = max(t.col + t.width for t in tiles)
    height = max(t.row + t.height for t in tiles)
    bands = [[VrtSource(str(t.path.resolve()), b, t.width, t.height, t.col, t.row, h["block"])
              for t, h in zip(tiles, headers)] for b in range(1, first["count"] + 1)]
    return vrt_document(width, height, first["crs"], origin, first["dtype"], bands, first["nodata"],
                        first["descriptions"], first["nbits"])


def _tile_header(tile: Tile) -> dict:
    if not tile.path.is_file():
        raise TileListError(f"tile {tile.path.name} is missing")
    try:
        with rasterio.open(tile.path) as src:
            return {"count": src.count, "dtype": src.dtypes[0], "crs": src.crs, "nodata": src.nodata,
                    "width": src.width, "height": src.height, "transform": src.transform,
                    "block": src.block_shapes[0], "descriptions": [d or "" for d in src.descriptions],
                    "nbits": src.tags(1, "IMAGE_STRUCTURE").get("NBITS")}
    except rasterio.errors.RasterioIOError as exc:
        raise TileListError(f"tile {tile.path.name} is unreadable ({str(exc).splitlines()[0][:120]})") from exc


def open_raster(path: str | Path) -> rasterio.io.DatasetReader:
    """rasterio.open(path), a .TIL opened as the mosaic of its tiles (TileListError says why one cannot be)."""
    return rasterio.open(til_document(Path(path)) if is_til(path) else path)


def read_files(path: Path) -> list[Path]:
    """`path` and every file GDAL reads through it: a VRT's sources, side files (.aux.xml, .msk, .ovr)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings(), rasterio.Env(CPL_LOG="/dev/null"):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the scene's own checks say it, once
            with rasterio.open(path) as src:
                return [path, *(Path(f) for f in src.files)]
    except (RasterioIOError, OSError):  # not a raster (an MTL), or not GDAL's to open (a Maxar .TIL's own reader)
        return [path]
