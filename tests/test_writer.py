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


def test_ddrf_run_writes_each_strip_while_the_next_is_fused(tmp_path: Path, monkeypatch) -> None:
    """The released rows go to a writer thread, one strip in flight at a time, in order; the raster is the same."""
    import threading
    import time

    from scenes_fixtures import SAMPLE

    from ddrf.scenes import engines, streaming
    from ddrf.scenes.engines import EngineSpec
    from ddrf.scenes.jobs import SceneJob, open_with_engine

    def run(out: Path) -> np.ndarray:
        scene, engine = open_with_engine(SceneJob(SAMPLE.name, out, directory=SAMPLE), EngineSpec(method="Brovey"))
        settings = streaming.RunSettings(tile=64, batch=1, halo=8)
        grid = streaming.plan_grid(scene, engine, settings)
        engine.start_scene(scene)
        sinks = streaming.open_sinks(scene, streaming.Outputs(out, out.with_suffix(".json")), scene.band_names, 0)
        streaming.fuse_into(scene, engine, grid, settings, sinks, streaming.Timings(), lambda n: None)
        with rasterio.open(sinks[0].close()) as ds:
            return ds.read()

    plain = run(tmp_path / "plain.tif")
    events: list[tuple[str, str, float, float]] = []
    real_write, real_run = RasterSink.write_rows, engines.BaselineEngine.run

    def slow_write(self, values, valid):
        start = time.perf_counter()
        time.sleep(0.05)
        real_write(self, values, valid)
        events.append(("write", threading.current_thread().name, start, time.perf_counter()))

    monkeypatch.setattr(RasterSink, "write_rows", slow_write)
    def timed_run(self, prepared):
        start = time.perf_counter()
        result = real_run(self, prepared)
        events.append(("run", threading.current_thread().name, start, time.perf_counter()))
        return result

    monkeypatch.setattr(engines.BaselineEngine, "run", timed_run)
    overlapped = run(tmp_path / "overlapped.tif")
    np.testing.assert_array_equal(overlapped, plain)
    writes = [e for e in events if e[0] == "write"]
    runs = [e for e in events if e[0] == "run"]
    assert len(writes) > 2 and all(name.startswith("ddrf-writer") for _, name, _, _ in writes)
    assert all(a[3] <= b[2] for a, b in zip(writes, writes[1:]))  # one write at a time, in order
    assert any(w[2] < r[3] and r[2] < w[3] for w in writes for r in runs)  # some window fused during a write
