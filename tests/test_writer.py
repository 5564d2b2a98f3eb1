"""RasterSink: the fused grid placed at its offset on the PAN grid, nodata around it, written in column chunks and
row slabs (rows padded and quantised a slab at a time, so that its float temporaries stay small)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from ddrf.scenes.writer import BLOCK, SLAB, RasterSink, geotiff_profile


def test_offset_grid_in_chunks_and_slabs_lands_exactly(tmp_path: Path) -> None:
    height, width, (top, left) = 2 * BLOCK + 40, BLOCK + 20, (SLAB + 70, 5)  # nodata margins taller than a slab
    fused_h, fused_w = height - top - 90, width - left - 7
    rng = np.random.default_rng(0)
    fused = rng.uniform(1, 4000, (fused_h, fused_w, 3))
    valid = rng.uniform(size=(fused_h, fused_w)) > 0.01
    profile = geotiff_profile(height, width, 3, np.dtype("uint16"), "EPSG:32633", from_origin(0, 0, 15, 15), 0)
    sink = RasterSink(tmp_path / "out.tif", profile, ["a", "b", "c"], 12, None, (top, left))
    for first, end in ((0, BLOCK), (BLOCK, fused_w)):  # two column chunks; rows handed over in uneven runs
        sink.start_chunk(first, end, fused_w)
        for lo in range(0, fused_h, 301):
            sink.write_rows(fused[lo:lo + 301, first:end], valid[lo:lo + 301, first:end])
    path = sink.close()
    with rasterio.open(path) as ds:
        data = np.moveaxis(ds.read(), 0, -1).astype(float)
    inside = data[top:top + fused_h, left:left + fused_w]
    np.testing.assert_array_equal(inside[valid], np.rint(fused[valid]))
    assert (inside[~valid] == 0).all()
    outside = np.ones((height, width), bool)
    outside[top:top + fused_h, left:left + fused_w] = False
    assert (data[outside] == 0).all()
