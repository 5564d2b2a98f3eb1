"""Fixtures of the STAC tests: COGs made from the bundled sample scene, STAC Items naming them (Landsat Collection 2
and Maxar styles), a local HTTP server with range requests (what GDAL's /vsicurl/ needs), and pystac validation
against the STAC schemas with no network (extension schemas vendored in tests/data/stac_schemas)."""
from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import rasterio

SAMPLE = Path(__file__).parents[1] / "ddrf" / "assets" / "sample_scene" / "LC80200392015216LGN00"
SCHEMAS = Path(__file__).parent / "data" / "stac_schemas"
EXTENSION_SCHEMAS = {
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json": "projection-v1.1.0.json",
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json": "eo-v2.0.0.json",
    "https://stac-extensions.github.io/processing/v1.0.0/schema.json": "processing-v1.0.0.json",
}
LANDSAT_BANDS = {"B2": "blue", "B3": "green", "B4": "red", "B5": "nir08", "B8": "pan"}


def offline_validator() -> Any:
    """pystac's JSON-schema validator with every schema it may need already cached (core ones ship with pystac)."""
    from pystac.validation import JsonSchemaSTACValidator

    validator = JsonSchemaSTACValidator()
    for uri, name in EXTENSION_SCHEMAS.items():
        validator.schema_cache[uri] = json.loads((SCHEMAS / name).read_text())
    return validator


@contextmanager
def no_network() -> Iterator[None]:
    """Any read pystac attempts of a remote document fails the test (schemas must come from the cache)."""
    import pystac

    class Refuse(pystac.stac_io.DefaultStacIO):
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            if str(source).startswith(("http://", "https://")):
                raise AssertionError(f"network read attempted: {source}")
            return super().read_text(source, *args, **kwargs)

    previous = pystac.StacIO._default_io
    pystac.StacIO.set_default(Refuse)
    try:
        yield
    finally:
        pystac.StacIO._default_io = previous


def make_cogs(dest: Path) -> dict[str, Path]:
    """Every PAN/MS band of the sample scene as a COG (256-pixel blocks), plus a 4-band MS COG in the band order
    nir, red, green, blue (so that band identity has to come from eo:bands, not from order)."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    for band in LANDSAT_BANDS:
        source = next(SAMPLE.glob(f"*_{band}.TIF"))
        paths[band] = dest / f"LC08_{band}.TIF"
        with rasterio.open(source) as src:
            profile = {k: v for k, v in src.profile.items()
                       if k not in ("blockxsize", "blockysize", "tiled", "interleave")}
            profile.update(driver="COG", blocksize=256, compress="deflate")
            with rasterio.open(paths[band], "w", **profile) as dst:
                dst.write(src.read())
    stacked = [paths[b] for b in ("B5", "B4", "B3", "B2")]
    layers = []
    for path in stacked:
        with rasterio.open(path) as src:
            profile = dict(src.profile, count=4, driver="COG", blocksize=256, compress="deflate")
            layers.append(src.read())
    for key in ("blockxsize", "blockysize", "tiled", "interleave"):
        profile.pop(key, None)
    data = np.concatenate(layers)
    paths["MS"] = dest / "maxar-M1BS.tif"
    with rasterio.open(paths["MS"], "w", **profile) as dst:
        dst.write(data)
    return paths


def _geometry(path: Path) -> tuple[dict[str, Any], list[float]]:
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {"type": "Polygon", "coordinates": [ring]}, [w, s, e, n]


def landsat_item(cogs: dict[str, Path], base: str, item_id: str = "LC08_L1TP_020039_20150804") -> dict[str, Any]:
    """A Landsat Collection 2 style Item (STAC 1.0, eo:bands per asset, assets keyed by common name). Assets are
    listed in a shuffled order and include a QA band without eo:bands."""
    geometry, bbox = _geometry(cogs["B8"])
    assets = {}
    for band in ("B4", "B8", "B2", "B5", "B3"):
        common = LANDSAT_BANDS[band]
        assets["nir08" if common == "nir08" else common] = {
            "href": f"{base}/{cogs[band].name}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"], "eo:bands": [{"name": band, "common_name": common}]}
    assets["qa_pixel"] = {"href": f"{base}/nothing_QA_PIXEL.TIF", "type": "image/tiff", "roles": ["cloud"]}
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            "geometry": geometry, "bbox": bbox, "links": [], "assets": assets,
            "properties": {"datetime": "2015-08-04T16:19:21.791742Z", "platform": "LANDSAT_8",
                           "instruments": ["OLI", "TIRS"]}}


def maxar_item(cogs: dict[str, Path], base: str, item_id: str = "maxar-style") -> dict[str, Any]:
    """A Maxar-style Item: one PAN asset and one multi-band MS asset whose eo:bands give the band order."""
    geometry, bbox = _geometry(cogs["B8"])
    ms_bands = [{"name": n, "common_name": c} for n, c in
                (("BAND_N", "nir"), ("BAND_R", "red"), ("BAND_G", "green"), ("BAND_B", "blue"))]
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            "geometry": geometry, "bbox": bbox, "links": [],
            "assets": {"pan_analytic": {"href": f"{base}/{cogs['B8'].name}", "type": "image/tiff", "roles": ["data"],
                                        "eo:bands": [{"name": "BAND_P", "common_name": "pan"}]},
                       "ms_analytic": {"href": f"{base}/{cogs['MS'].name}", "type": "image/tiff", "roles": ["data"],
                                       "eo:bands": ms_bands}},
            "properties": {"datetime": "2020-01-02T03:04:05Z", "platform": "worldview-2"}}


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single byte-range requests (206), which GDAL's /vsicurl/ uses to read COG windows."""

    requests: list[tuple[str, str]] = []  # (path, status code) of every request served

    def log_message(self, format: str, *args: Any) -> None:
        RangeHandler.requests.append((self.path, str(args[1]) if len(args) > 1 else "?"))

    def send_head(self) -> Any:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start, end = int(match.group(1)), int(match.group(2) or len(data) - 1)
        end = min(end, len(data) - 1)
        body = data[start:end + 1]
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        import io

        return io.BytesIO(body)


@contextmanager
def http_server(root: Path) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 (a free port) for the duration of the block; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def small_scene(dest: Path, size: int = 128) -> Path:
    """The sample scene cropped to its top-left PAN size x size (MS size/2), georeferencing and MTL kept: a real
    Landsat-8 scene small enough for the bundled model in a second."""
    from rasterio.windows import Window

    dest.mkdir(parents=True)
    for path in SAMPLE.iterdir():
        if path.suffix.upper() != ".TIF":
            (dest / path.name).write_bytes(path.read_bytes())
            continue
        with rasterio.open(path) as src:
            side = size if src.res[0] < 20 else size // 2
            window = Window(0, 0, side, side)
            profile = dict(src.profile, width=side, height=side, transform=src.window_transform(window))
            with rasterio.open(dest / path.name, "w", **profile) as dst:
                dst.write(src.read(window=window))
    return dest
