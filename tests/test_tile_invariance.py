"""Issue 9, item 1: the shipped model's ddrf-run output does not depend on the tile size.

The bundled ratio-2 model runs on the bundled sample scene (PAN 512 x 256) through ddrf-run's own path (jobs.run_job:
windows, halo, feathered blend) with tiles 128, 256 and 512 and once as a single window covering the whole padded
scene; every band's p99 |difference| must stay within 0.5 % and its max within 2 % of that band's standard deviation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from ddrf.scenes import engines, jobs, streaming
from scenes_fixtures import BANDS, SAMPLE

HALO = 32
WHOLE = 1024  # > the scene's 512 columns + 2 halos: one window


def bundled_ratio2_model() -> Path:
    """The bundled model ddrf-run gives the sample scene (ratio 2, Landsat-8 blue, green, red, nir)."""
    from ddrf.bundled import choose_model

    return choose_model(str(SAMPLE), 2, BANDS, len(BANDS), "Landsat8").path


def fused(model: Path, tile: int, out: Path) -> np.ndarray:
    spec = engines.EngineSpec(model=str(model), backend="ort-cpu", seed=0, threads=1)
    settings = streaming.RunSettings(tile=tile, batch=1, halo=HALO, progress=False)
    assert jobs.run_job(jobs.SceneJob(out.stem, out, directory=SAMPLE), spec, settings)["status"] == "done"
    with rasterio.open(out) as ds:
        return np.moveaxis(ds.read(), 0, -1).astype(np.float64)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    out = tmp_path_factory.mktemp("invariance")
    return out, fused(bundled_ratio2_model(), WHOLE, out / "whole.tif")


@pytest.mark.parametrize("tile", [128, 256, 512])
def test_bundled_model_output_does_not_depend_on_the_tile(tile: int, whole: tuple[Path, np.ndarray]) -> None:
    folder, reference = whole
    tiled = fused(bundled_ratio2_model(), tile, folder / f"t{tile}.tif")
    difference = np.abs(tiled - reference).reshape(-1, reference.shape[-1])
    std = reference.reshape(-1, reference.shape[-1]).std(axis=0)
    p99, worst = np.percentile(difference, 99, axis=0) / std, difference.max(axis=0) / std
    assert (p99 <= 0.005).all() and (worst <= 0.02).all(), (tile, p99, worst)
