"""ddrf-run: windowed processing, blending, nodata, GeoTIFF output, resume, CLI, Dask; on the real sample scene
(Landsat-8, PAN 256 x 512) with a tiny random-weight model."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ddrf.scenes import engines, jobs, streaming
from ddrf.scenes.command import app
from ddrf.scenes.tiling import TileGrid, axis_starts, axis_weights
from scenes_fixtures import BANDS, SAMPLE, TINY_MODEL, copy_scene, export_tiny_model

ROOT = Path(__file__).parents[1]
HALO = 16


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the committed tiny model (the runtime may not write beside the test data)."""
    return Path(shutil.copytree(TINY_MODEL, tmp_path_factory.mktemp("model") / "tiny"))


def test_committed_tiny_model_is_what_make_tiny_model_writes(tiny_model: Path, tmp_path: Path) -> None:
    """Regenerating the fixture (tests/data/tiny_model/make_tiny_model.py) gives a model that fuses alike."""
    pytest.importorskip("torch")
    from ddrf.runtime.fuser import Fuser

    fresh = export_tiny_model(tmp_path / "fresh")
    rng = np.random.default_rng(0)
    pan, ms = rng.uniform(0, 60000, (64, 64)), rng.uniform(0, 60000, (32, 32, 4))
    np.testing.assert_allclose(Fuser(fresh).fuse(pan, ms, seed=3), Fuser(tiny_model).fuse(pan, ms, seed=3),
                               rtol=1e-5, atol=1e-3)


def run_api(out: Path, model: Path, tile: int, directory: Path = SAMPLE, samples: int = 1, **kw) -> dict:
    """One scene through jobs.run_job (what the CLI and the Dask workers run)."""
    spec = engines.EngineSpec(model=str(model), backend="ort-cpu", seed=kw.pop("seed", 7), samples=samples,
                              method=kw.pop("method", None), threads=1)
    settings = streaming.RunSettings(tile=tile, batch=kw.pop("batch", 2), halo=kw.pop("halo", HALO), progress=False,
                                    spread=samples > 1, **kw)
    job = jobs.SceneJob(out.stem, out, directory=directory)
    return jobs.run_job(job, spec, settings)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return np.moveaxis(ds.read(), 0, -1).astype(np.float64)


def cli(*args: str) -> "object":
    return CliRunner().invoke(app, [*args, "--no-progress"])


# --------------------------------------------------------------------------------------------- tiling (units)
def test_feather_weights_cross_fade_to_one() -> None:
    """Neighbouring windows' ramps are mirror images over the 2*halo overlap: they sum to 1 exactly."""
    tile, halo = 64, 8
    left = axis_weights(tile, halo, False, True)
    right = axis_weights(tile, halo, True, False)
    stride = tile - 2 * halo
    np.testing.assert_allclose(left[stride:] + right[:tile - stride], 1.0, atol=1e-12)
    assert left[-1] < 0.01 and right[0] < 0.01 and left[0] == 1.0


def test_grid_is_aligned_padded_and_clamped() -> None:
    grid = TileGrid.plan(250, 130, 58, 5, 4)  # halo rounds up to 8, tile to 60
    assert grid.halo == 8 and grid.tile_rows == 60
    assert all(r % 4 == 0 for r in grid.row_starts + grid.col_starts)
    assert grid.row_starts[0] == -8 and grid.row_starts[-1] + grid.tile_rows == 252 + 8
    assert grid.col_starts[-1] + grid.tile_cols == 132 + 8
    small = TileGrid.plan(30, 30, 256, 32, 4)
    assert (small.tile_rows, small.count) == (96, 1)


@pytest.mark.parametrize("tile,halo,align", [(576, 96, 8), (256, 32, 8), (128, 32, 4)])
def test_windows_are_the_fewest_and_no_larger_than_needed(tile: int, halo: int, align: int) -> None:
    """Each axis takes the fewest windows of side <= tile that cover it, each as small as the alignment allows, and
    neighbours still overlap by at least 2 * halo (where the blend cross-fades)."""
    for length in range(1, 3000, 7):
        side, starts = axis_starts(length, tile, halo, align)
        span = -(-length // align) * align + 2 * halo
        assert side <= min(tile, span) and side % align == 0 and all(s % align == 0 for s in starts)
        assert starts[0] == -halo and starts[-1] + side == span - halo
        assert all(b - a <= side - 2 * halo for a, b in zip(starts, starts[1:]))  # overlap >= 2 * halo
        fewest = 1 if span <= tile else 1 + -(-(span - tile) // (tile - 2 * halo))
        assert len(starts) == fewest
        if len(starts) > 1:  # one alignment step smaller and the same number of windows would leave a gap
            assert len(starts) * (side - align) - (len(starts) - 1) * 2 * halo < span


def test_cog_copy_has_overviews(tmp_path: Path) -> None:
    from ddrf.scenes.writer import geotiff_profile, to_cog

    src = tmp_path / "plain.tif"
    profile = geotiff_profile(1200, 700, 2, np.dtype("uint16"), "EPSG:32616", rasterio.Affine(15, 0, 0, 0, -15, 0), 0)
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(np.arange(1200 * 700 * 2, dtype=np.uint16).reshape(2, 1200, 700))
    cog = to_cog(src, tmp_path / "final.tif")
    with rasterio.open(cog) as ds:
        assert ds.overviews(1) == [2, 4] and ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.crs.to_epsg() == 32616 and ds.nodata == 0
    assert not src.exists()


# --------------------------------------------------------------------------------------------- scenes
@pytest.fixture(scope="session")
def two_tilings(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tilings")
    paths = {}
    for tile in (96, 160, 512):
        paths[str(tile)] = out / f"t{tile}.tif"
        assert run_api(paths[str(tile)], tiny_model, tile)["status"] == "done"
    return paths


def test_tile_size_does_not_change_the_output(two_tilings: dict[str, Path]) -> None:
    """Coordinate-keyed noise, aligned windows and feathering: two tile sizes agree closely.

    Not bit-exact: GroupNorm and the middle self-attention see the whole window, so a pixel's value depends a
    little on what else is in its window, and less so the larger the window. Measured with the tiny random model
    on the sample scene (16-bit DN, values 6500-21400; the model adds a residual of ~820 DN mean to LMS):
    tile 96 vs 160 (halo 16): mean |diff| 27 DN, p99 109 DN, i.e. ~3 % of the residual, 0.25 % of the signal;
    against one whole-scene window: 40 DN (tile 96), 23 DN (tile 160). Bounds: ~1.5x the measurement.
    """
    from ddrf.scenes.discover import discover_scene
    from ddrf.scenes.scene import Scene
    from ddrf.filters import interp23

    a, b, whole = (read(two_tilings[k]) for k in ("96", "160", "512"))
    _, ms, _ = Scene(discover_scene(SAMPLE)).read_pair(0, 0, 256, 512)
    residual = np.abs(whole - interp23(ms, 2, "symmetric")).mean()
    diff = np.abs(a - b)
    print(f"tile 96 vs 160: max {diff.max():.1f} DN, mean {diff.mean():.2f} DN, p99 {np.percentile(diff, 99):.1f}; "
          f"vs whole: {np.abs(a - whole).mean():.2f} (96), {np.abs(b - whole).mean():.2f} (160); "
          f"model residual {residual:.1f} DN")
    assert residual > 300  # the model does change the image: the comparison is not trivially small
    assert diff.mean() < 0.05 * residual and np.percentile(diff, 99) < 170
    assert np.abs(b - whole).mean() < np.abs(a - whole).mean() < 0.075 * residual  # larger windows: closer


def test_no_seam_at_window_borders(two_tilings: dict[str, Path]) -> None:
    """Across columns where windows start or end, the tiled-minus-whole difference changes no faster than
    elsewhere: the blend leaves no step."""
    tiled, whole = read(two_tilings["96"]), read(two_tilings["512"])
    grid = TileGrid.plan(256, 512, 96, HALO, 4)
    edges = sorted({c for c in grid.col_starts[1:]} | {c + 96 for c in grid.col_starts[:-1]})
    step = np.abs(np.diff(tiled - whole, axis=1)).mean(axis=(0, 2))  # step between column j and j+1
    at_edges = step[[e - 1 for e in edges if 0 < e < 512]]
    elsewhere = np.delete(step, [e - 1 for e in edges])
    print(f"step of the tiling error at window borders {at_edges.mean():.3f} DN, elsewhere {elsewhere.mean():.3f}")
    assert at_edges.max() <= 2.0 * np.percentile(elsewhere, 95) + 0.5
    gradient = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))
    assert gradient[[e - 1 for e in edges]].mean() < 1.5 * gradient.mean()


def test_output_keeps_grid_dtype_and_bands(two_tilings: dict[str, Path]) -> None:
    pan = next(SAMPLE.glob("*_B8.TIF"))
    with rasterio.open(two_tilings["96"]) as out, rasterio.open(pan) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert out.dtypes == ("uint16",) * 4 and out.nodata == 0
        assert out.descriptions == tuple(BANDS)
        assert out.block_shapes[0] == (512, 512) and out.compression.name.lower() == "deflate"
    report = json.loads(two_tilings["96"].with_suffix(".json").read_text())
    assert report["status"] == "done" and report["tiling"]["halo"] == HALO and report["tiling"]["tiles"] == 32
    assert report["engine"]["kind"] == "model" and report["engine"]["seed"] == 7
    assert {"read", "fuse", "blend", "write", "total"} <= set(report["timings_s"])
    assert "numpy" in report["software"] and report["outputs"]["value_range"] == [0, 65535]


def test_nodata_block_is_nodata_and_stays_local(tiny_model: Path, two_tilings: dict[str, Path],
                                               tmp_path: Path) -> None:
    """A 32 x 32 nodata block (PAN and MS) comes out as nodata; pixels farther than the halo plus the
    interpolation support from it are unchanged except for the window-wide effect of GroupNorm/attention.

    What holds (measured): inside the block the output is nodata; outside windows that contain the block the
    output is identical; inside them the change decays with distance."""
    scene = copy_scene(tmp_path / "scene", nodata_block=(100, 200, 32))
    out = tmp_path / "out.tif"
    assert run_api(out, tiny_model, 96, directory=scene)["status"] == "done"
    with_block, clean = read(out), read(two_tilings["96"])
    assert (with_block[100:132, 200:232] == 0).all()
    assert (with_block[:90] > 0).all() and (with_block[142:] > 0).all()  # neighbours are not nodata
    changed = np.abs(with_block - clean).max(axis=2)
    grid = TileGrid.plan(256, 512, 96, HALO, 4)
    touched = np.zeros((256, 512), bool)
    for _, windows in grid.row_strips():
        for w in windows:
            if w.row < 132 and w.row + 96 > 100 and w.col < 232 and w.col + 96 > 200:
                touched[w.row:w.row + 96, w.col:w.col + 96] = True
    assert changed[~touched].max() == 0
    far = np.ones((256, 512), bool)
    far[100 - 32:132 + 32, 200 - 32:232 + 32] = False
    print(f"nodata block: max change beyond 32 px {changed[far].max():.1f} DN, mean {changed[far].mean():.3f}")
    assert np.percentile(changed[far & touched], 99) < 0.05 * clean.mean()


def test_interrupted_scene_leaves_no_output(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "scene.tif"
    calls = {"n": 0}
    original = engines.ModelEngine.run

    def failing(self, prepared):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash mid-scene")
        return original(self, prepared)

    monkeypatch.setattr(engines.ModelEngine, "run", failing)
    entry = run_api(out, tiny_model, 96)
    assert entry["status"] == "failed" and "simulated crash" in entry["error"]
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary


def test_resume_skips_finished_and_cleans_stale_temps(tiny_model: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    name = SAMPLE.name
    finished = out_dir / f"{name}.tif"
    first = cli(str(SAMPLE), "-o", str(out_dir), "--model", str(tiny_model), "--tile", "96", "--threads", "1")
    assert first.exit_code == 0, first.output
    stale = out_dir / f".{name}.tif.dead.ddrf-part"
    stale.write_bytes(b"half a file")
    before = finished.stat().st_mtime_ns
    result = cli(str(SAMPLE), "-o", str(out_dir), "--model", str(tiny_model), "--tile", "96", "--threads", "1")
    assert result.exit_code == 0, result.output
    summary = json.loads((out_dir / "ddrf-run-summary.json").read_text())
    assert summary["scenes"][0]["status"] == "skipped" and "skipped" in result.output
    assert not stale.exists() and finished.stat().st_mtime_ns == before
    result = cli(str(SAMPLE), "-o", str(out_dir), "--model", str(tiny_model), "--tile", "96", "--threads", "1",
                 "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out_dir / "ddrf-run-summary.json").read_text())["scenes"][0]["status"] == "done"
    assert finished.stat().st_mtime_ns != before and (out_dir / f"{name}.json").is_file()
    assert not list(out_dir.glob(".*"))


# --------------------------------------------------------------------------------------------- CLI
def test_cli_bad_inputs_fail_cleanly(tiny_model: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = copy_scene(tmp_path / "broken")
    next(broken.glob("*_B3.TIF")).write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    result = cli(str(empty), str(broken), "-o", str(out), "--model", str(tiny_model), "--threads", "1")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("ddrf-run: /")]
    assert len(errors) == 2, result.output
    assert str(empty) in errors[0] and "B3.TIF" in errors[1]
    assert not list(out.glob("*.tif")) and not list(out.glob(".*"))
    assert cli("-o", str(out)).exit_code == 2  # no scenes at all
    bad_model = cli(str(SAMPLE), "-o", str(out), "--model", str(tmp_path))
    assert bad_model.exit_code == 2 and "card.json" in bad_model.output


def test_cli_pan_ms_with_baseline_and_quicklook(tmp_path: Path) -> None:
    pan = next(SAMPLE.glob("*_B8.TIF"))
    ms = [next(SAMPLE.glob(f"*_B{b}.TIF")) for b in (2, 3, 4, 5)]
    out = tmp_path / "fused.tif"
    args = ["--pan", str(pan), *[a for p in ms for a in ("--ms", str(p))], "-o", str(out)]
    result = cli(*args, "--method", "GSA", "--quicklook", "--cog")
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["engine"] == {"kind": "baseline", "method": "GSA", "sensor": "Landsat8",
                                "fitted_on": "the whole scene"}  # its coefficients, for every window
    with rasterio.open(out) as ds:
        # a COG (overviews only appear for images larger than one 512 block; this one is 256 x 512)
        assert ds.count == 4 and ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and ds.dtypes[0] == "uint16"
        data = ds.read()
    assert data.std() > 0
    with rasterio.open(tmp_path / "fused_quicklook.png") as png:
        assert png.count == 3 and png.read().max() == 255
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.item.json", "fused.json", "fused.tif",
                                                          "fused_quicklook.png"]  # + the STAC Item


def test_uncertainty_writes_mean_and_calibrated_spread(tiny_model: Path, tmp_path: Path,
                                                       two_tilings: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--uncertainty N: the main output is the mean of the N seeds' samples, the spread their std times the card's
    spread_calibration; a card with none fitted gets a one-line warning that names the command that fits it."""
    out = tmp_path / "u.tif"
    assert run_api(out, tiny_model, 96, samples=3)["status"] == "done"
    warning = capsys.readouterr().err
    assert "no fitted spread_calibration" in warning and "--fit-spread" in warning and str(tiny_model) in warning
    assert json.loads((tmp_path / "u.json").read_text())["engine"]["spread_fitted"] is False
    spread = tmp_path / "u_spread.tif"
    with rasterio.open(spread) as ds, rasterio.open(out) as main:
        assert ds.dtypes[0] == "float32" and ds.transform == main.transform and ds.shape == main.shape
        values = ds.read()
    assert (values >= 0).all() and values.mean() > 0
    singles = [read(two_tilings["96"])]
    for seed in (8, 9):
        assert run_api(tmp_path / f"s{seed}.tif", tiny_model, 96, seed=seed)["status"] == "done"
        singles.append(read(tmp_path / f"s{seed}.tif"))
    assert np.abs(read(out) - np.mean(singles, axis=0)).max() <= 1.0  # the mean, up to the DN rounding of each file
    assert np.abs(read(out) - singles[0]).max() > 1.0
    calibrated = tmp_path / "calibrated"
    shutil.copytree(tiny_model, calibrated)
    card = json.loads((calibrated / "card.json").read_text())
    (calibrated / "card.json").write_text(json.dumps({**card, "spread_calibration": 2.5}))
    assert run_api(tmp_path / "c.tif", calibrated, 96, samples=3)["status"] == "done"
    with rasterio.open(tmp_path / "c_spread.tif") as ds:
        np.testing.assert_allclose(ds.read(), 2.5 * values, rtol=1e-5)
    # fitted with 8 samples: 3 samples' std is noisier, so the factor widens by Student's t (12.7 / 4.30 / 2.36 ...)
    fitted_at_8 = tmp_path / "fitted_at_8"  # another folder: a process loads each model folder once
    shutil.copytree(tiny_model, fitted_at_8)
    (fitted_at_8 / "card.json").write_text(json.dumps({**card, "spread_calibration": 2.5,
                                                       "spread_calibration_samples": 8}))
    assert run_api(tmp_path / "c8.tif", fitted_at_8, 96, samples=3)["status"] == "done"
    with rasterio.open(tmp_path / "c8_spread.tif") as ds:
        np.testing.assert_allclose(ds.read(), 2.5 * 4.302653 / 2.364624 * values, rtol=1e-5)
    engine = json.loads((tmp_path / "c8.json").read_text())["engine"]  # the report says the factor it used
    assert abs(engine["spread_factor"] - 2.5 * 4.302653 / 2.364624) < 1e-5 and engine["spread_fitted"] is True
    assert "spread_calibration" not in capsys.readouterr().err
    # fitted at another step count: the spread grows with the steps, so the factor does not hold here
    other_steps = tmp_path / "other_steps"
    shutil.copytree(tiny_model, other_steps)
    (other_steps / "card.json").write_text(json.dumps({**card, "spread_calibration": 2.5,
                                                       "spread_calibration_samples": 8,
                                                       "spread_calibration_steps": card["sampling_steps"] + 1}))
    assert run_api(tmp_path / "k.tif", other_steps, 96, samples=3)["status"] == "done"
    assert f"fitted at {card['sampling_steps'] + 1} sampler step(s), not {card['sampling_steps']}" in \
        capsys.readouterr().err
    assert json.loads((tmp_path / "k.json").read_text())["engine"]["spread_fitted"] is False


def test_dask_cluster_matches_local_run(tiny_model: Path, two_tilings: dict[str, Path], tmp_path: Path) -> None:
    import distributed
    scenes = [copy_scene(tmp_path / "a"), copy_scene(tmp_path / "b")]
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        result = cli(*map(str, scenes), "-o", str(out), "--model", str(tiny_model), "--tile", "96", "--batch", "2",
                     "--halo", str(HALO), "--seed", "7", "--threads", "1", "--scheduler", c.scheduler_address)
    assert result.exit_code == 0, result.output
    for name in ("a", "b"):
        np.testing.assert_array_equal(read(out / f"{name}.tif"), read(two_tilings["96"]))


def test_a_cluster_run_connects_to_the_scheduler_once(tmp_path: Path) -> None:
    """The check that the scheduler answers (before any output) and the run share one client: the run used to
    connect a second time, a second wait of up to the connect timeout and a second client in the scheduler's log."""
    import distributed

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        result = cli(str(copy_scene(tmp_path / "a")), "-o", str(tmp_path / "out"), "--method", "Brovey",
                     "--scheduler", cluster.scheduler_address)
        clients = [event for _, event in cluster.scheduler.get_events("all") if event.get("action") == "add-client"]
    assert result.exit_code == 0, result.output
    assert len(clients) == 1, clients


@pytest.mark.parametrize("address", ["free port", "not a scheduler address"])
def test_unreachable_scheduler_is_one_usage_line_and_writes_nothing(tiny_model: Path, tmp_path: Path,
                                                                     address: str) -> None:
    """A --scheduler nobody answers at (a closed port; a malformed address) is refused in one line naming it,
    within Dask's connect timeout, before any output exists; it used to end in a traceback."""
    import socket

    import dask
    import distributed  # noqa: F401  # its config defaults load on first import; inside dask.config.set below,
    # leaving the block would drop them again and the next Client would fail on a missing key (run alone, in order)

    if address == "free port":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"  # closed again: nothing listens there
    out = tmp_path / "out"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = cli(str(copy_scene(tmp_path / "a")), "-o", str(out), "--model", str(tiny_model), "--threads", "1",
                     "--scheduler", address)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"ddrf-run: --scheduler {address}: no Dask scheduler answers there"), lines
    assert not out.exists()


def test_scene_run_never_imports_torch(tiny_model: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from ddrf.scenes.command import app\n"
        "try:\n"
        f"    app([{str(SAMPLE)!r}, '-o', {str(tmp_path)!r}, '--model', {str(tiny_model)!r}, '--tile', '128',"
        " '--threads', '1', '--no-progress'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / f"{SAMPLE.name}.tif").is_file()


def test_column_chunks_give_the_same_raster(tiny_model: Path, two_tilings: dict[str, Path], tmp_path: Path) -> None:
    """Blending and writing in 128-column chunks (border windows fused once per chunk) changes no pixel."""
    out = tmp_path / "chunked.tif"
    assert run_api(out, tiny_model, 96, chunk=128)["status"] == "done"
    np.testing.assert_array_equal(read(out), read(two_tilings["96"]))


GDAL_CACHE_PROBE = """
import sys
from rasterio._env import get_gdal_config
from ddrf.scenes import engines, jobs, runner, stac_out, streaming
seen = []
spec = engines.EngineSpec(model=sys.argv[1], backend="ort-cpu", threads=1)
job = jobs.SceneJob("c", jobs.Path(sys.argv[3]), directory=jobs.Path(sys.argv[2]))
settings = streaming.RunSettings(tile=256, batch=1, halo=32, progress=False)
entry = jobs.run_job(job, spec, settings, on_tiles=lambda d, t: seen.append(get_gdal_config("GDAL_CACHEMAX")))
assert entry["status"] == "done", entry
statistics = stac_out.band_entries  # the STAC Item's statistics read the whole output: the cache must bound it too
def spy(*args, **kwargs):
    seen.append(get_gdal_config("GDAL_CACHEMAX"))
    return statistics(*args, **kwargs)
stac_out.band_entries = spy
assert runner.describe_outputs(entry, job, settings, None)["status"] == "done"
print(sorted(set(map(str, seen))), len(seen) > 1)
"""


@pytest.mark.parametrize("user_value", [None, "300"])
def test_gdal_block_cache_is_bounded_during_a_scene(tiny_model: Path, tmp_path: Path, user_value: str | None) -> None:
    """GDAL's block cache defaults to 5 % of RAM and kept a whole 8192 x 8192 output's blocks (peak RSS grew with
    the scene's height; writing the STAC Item, whose band statistics read the output, added 570 MiB): each scene and
    its Item run with a 64 MiB cache, unless the user set GDAL_CACHEMAX (read by GDAL at start-up, hence a fresh
    process)."""
    env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    if user_value is not None:
        env["GDAL_CACHEMAX"] = user_value
    run = subprocess.run([sys.executable, "-c", GDAL_CACHE_PROBE, str(tiny_model), str(SAMPLE), str(tmp_path / "c.tif")],
                         capture_output=True, text=True, env=env, check=True)
    megabytes = jobs.GDAL_CACHE_MB if user_value is None else int(user_value)  # GDAL reads small values as MB
    assert run.stdout.strip() == f"{[str(megabytes * 2**20)]} True"
