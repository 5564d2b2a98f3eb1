"""MS grids that need a fractional (cubic) MS shift: nested ratio-4 (Maxar/Pleiades: MS origin = PAN origin) and a
ratio-2 MS a quarter MS pixel off the Landsat layout. Every PAN pixel the MS covers is fused, and the report's
`scene.fused_window` is exactly the output's valid (not nodata) region.

Before the fix the cubic resampling marked an MS sample invalid when its right/lower neighbour lay past the MS edge,
so the last MS pixel's PAN block (4 rows/columns at ratio 4, 1 at ratio 2 here) came out nodata inside the
reported window.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from ddrf.scenes import engines, jobs, streaming
from scenes_fixtures import BANDS, SAMPLE


def _pair(folder: Path, ratio: int, shift_pan_px: float) -> tuple[Path, Path]:
    """pan.tif = the sample's 15 m PAN; ms.tif = its B2-B5 block-averaged to 15*ratio m (ratio 2: as is), on the
    PAN's corner moved `shift_pan_px` PAN pixels right and down."""
    stem = SAMPLE.name
    with rasterio.open(SAMPLE / f"{stem}_B8.TIF") as ds:
        pan, profile, t = ds.read(1), ds.profile, ds.transform
    ms = []
    for number in (2, 3, 4, 5):
        with rasterio.open(SAMPLE / f"{stem}_B{number}.TIF") as ds:
            band = ds.read(1).astype(np.float64)
        k = ratio // 2
        ms.append(band.reshape(band.shape[0] // k, k, band.shape[1] // k, k).mean(axis=(1, 3)))
    paths = folder / "pan.tif", folder / "ms.tif"
    with rasterio.open(paths[0], "w", **profile) as dst:
        dst.write(pan, 1)
    ms_t = Affine(15.0 * ratio, 0, t.c + 15.0 * shift_pan_px, 0, -15.0 * ratio, t.f - 15.0 * shift_pan_px)
    ms_profile = {**profile, "count": 4, "height": ms[0].shape[0], "width": ms[0].shape[1], "transform": ms_t}
    with rasterio.open(paths[1], "w", **ms_profile) as dst:
        dst.write(np.round(np.stack(ms)).astype(profile["dtype"]))
        dst.descriptions = tuple(BANDS)
    return paths


@pytest.mark.parametrize(("ratio", "shift", "window"), [
    (4, 0.0, (0, 0, 256, 512)),  # nested: the MS covers the whole PAN
    (2, 1.0, (1, 1, 255, 511)),  # quarter MS pixel off Landsat: MS covers PAN [1, 257) x [1, 513)
])  # fmt: skip
def test_fractional_grids_fuse_every_covered_pixel(tmp_path: Path, ratio: int, shift: float,
                                                   window: tuple[int, int, int, int]) -> None:
    pan, ms = _pair(tmp_path, ratio, shift)
    out = tmp_path / "out.tif"
    spec = engines.EngineSpec(method="GSA", seed=0, threads=1)
    settings = streaming.RunSettings(tile=256, batch=1, progress=False)
    assert jobs.run_job(jobs.SceneJob("out", out, pan=pan, ms=(ms,)), spec, settings)["status"] == "done"
    with rasterio.open(out) as ds:
        data, nodata = ds.read(), ds.nodata
    valid = (data != nodata).all(axis=0)
    row, col, height, width = window
    expected = np.zeros(valid.shape, dtype=bool)
    expected[row:row + height, col:col + width] = True
    np.testing.assert_array_equal(valid, expected)  # covered <=> fused, and nothing else
    report = json.loads(out.with_suffix(".json").read_text())
    fw = report["scene"]["fused_window"]
    assert (fw["row"], fw["col"], fw["height"], fw["width"]) == window
