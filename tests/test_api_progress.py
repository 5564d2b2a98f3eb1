"""The Python API (ddrf.fuse on numpy and xarray, ddrf.fuse_scene) and what ddrf-run tells an operator without a
terminal: progress lines, JSON logs, the closing list of outputs, exit codes and --help."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

import ddrf
from ddrf.scenes.progress import Reporter
from stac_fixtures import SAMPLE, small_scene


def sample_arrays(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """PAN (size, size) and MS (size/2, size/2, 4) from the top-left of the sample scene, in DN."""
    with rasterio.open(next(SAMPLE.glob("*_B8.TIF"))) as src:
        pan = src.read(1, window=((0, size), (0, size)))
    ms = []
    for band in (2, 3, 4, 5):
        with rasterio.open(next(SAMPLE.glob(f"*_B{band}.TIF"))) as src:
            ms.append(src.read(1, window=((0, size // 2), (0, size // 2))))
    return pan, np.stack(ms, axis=-1)


def test_fuse_numpy_with_the_bundled_model_and_a_baseline() -> None:
    from ddrf.baselines import fuse as classical
    from ddrf.filters import interp23

    pan, ms = sample_arrays()
    fused = ddrf.fuse(pan, ms)
    assert fused.shape == (64, 64, 4) and fused.dtype == np.float32 and np.isfinite(fused).all()
    lms = interp23(ms.astype(np.float64), 2, "symmetric")
    assert np.corrcoef(fused[..., 2].ravel(), lms[..., 2].ravel())[0, 1] > 0.8  # the same scene ...
    assert np.abs(fused - lms).mean() > 20  # ... with PAN detail added (DN; the signal is ~7000-20000)
    np.testing.assert_array_equal(ddrf.fuse(pan, ms, seed=0), fused)  # deterministic for a seed
    gsa = ddrf.fuse(pan, ms, method="GSA")
    np.testing.assert_allclose(gsa, classical("GSA", pan.astype(float), ms.astype(float), 2), rtol=1e-6)
    with pytest.raises(ValueError, match="times an integer ratio"):
        ddrf.fuse(pan[:, :60], ms)


def test_fuse_dataarrays_keep_coordinates_and_crs() -> None:
    rioxarray = pytest.importorskip("rioxarray")
    import xarray as xr

    pan = rioxarray.open_rasterio(next(SAMPLE.glob("*_B8.TIF")))[:, :64, :64]
    ms = xr.concat([rioxarray.open_rasterio(next(SAMPLE.glob(f"*_B{b}.TIF")))[:, :32, :32] for b in (2, 3, 4, 5)],
                   dim="band").assign_coords(band=["blue", "green", "red", "nir"])
    fused = ddrf.fuse(pan, ms, method="GSA")
    assert fused.dims == ("band", "y", "x") and list(fused.band.values) == ["blue", "green", "red", "nir"]
    np.testing.assert_array_equal(fused.x.values, pan.x.values)
    np.testing.assert_array_equal(fused.y.values, pan.y.values)
    assert fused.rio.crs == pan.rio.crs and fused.rio.transform() == pan.rio.transform()
    plain = ddrf.fuse(pan.values[0], np.moveaxis(ms.values, 0, -1), method="GSA")
    np.testing.assert_array_equal(np.moveaxis(fused.values, 0, -1), plain)


def test_fuse_refuses_values_that_gave_nan_or_garbage() -> None:
    """One NaN made the model's whole output NaN; values past float32 gave inf; complex lost its imaginary part;
    out-of-range seeds wrapped around, steps=0 meant the card's default, and a misspelt sensor was ignored."""
    pan, ms = sample_arrays()
    holed = pan.astype(float)
    holed[10, 10] = np.nan
    for args, kwargs, error, message in (
            ((holed, ms), {}, ValueError, "pan has 1 NaN or infinite"),
            ((pan * 1e36, ms * 1e36), {}, ValueError, "beyond"),
            ((pan, ms + 0j), {}, TypeError, "ms must hold real numbers"),
            ((pan, ms), {"seed": -1}, ValueError, "seed must be"),
            ((pan, ms), {"seed": 2**64}, ValueError, "seed must be"),
            ((pan, ms), {"steps": 0}, ValueError, "steps must be"),
            ((pan, ms), {"steps": True}, ValueError, "steps must be"),
            ((pan, ms), {"method": "GSA", "sensor": "WorldVeiw-3"}, ValueError, "unknown sensor 'WorldVeiw-3'"),
            ((np.ma.array(pan, mask=np.eye(*pan.shape, dtype=bool)), ms), {}, ValueError, "pan is a masked array")):
        with pytest.raises(error, match=message):
            ddrf.fuse(*args, **kwargs)


def test_fuse_dataarrays_follow_band_names_and_refuse_grids_that_do_not_nest() -> None:
    """Bands named in another order are fused as the model's bands and returned in the caller's order (they were
    fused as if in the model's order); an MS in another CRS, off the PAN, or flipped is refused (they were fused
    onto the PAN's grid); the output's band names and scale survive (long_name 'blue' became b, l, u, e). Another
    spelling of the PAN's CRS is that CRS, by ddrf-run's rule (it was `ms CRS EPSG:32616 differs from pan CRS
    EPSG:32616`)."""
    rioxarray = pytest.importorskip("rioxarray")
    import xarray as xr

    pan = rioxarray.open_rasterio(next(SAMPLE.glob("*_B8.TIF")))[:, :64, :64]
    ms = xr.concat([rioxarray.open_rasterio(next(SAMPLE.glob(f"*_B{b}.TIF")))[:, :32, :32] for b in (2, 3, 4, 5)],
                   dim="band").assign_coords(band=["blue", "green", "red", "nir"])
    ms.attrs.update(long_name="blue", scale_factor=2.75e-5, add_offset=-0.2)
    fused = ddrf.fuse(pan, ms, threads=1)
    shuffled = ddrf.fuse(pan, ms.sel(band=["nir", "red", "green", "blue"]), threads=1)
    np.testing.assert_array_equal(shuffled.sel(band=["blue", "green", "red", "nir"]).values, fused.values)
    labelled = ddrf.fuse(pan, ms.assign_coords(band=["B2", "B3", "B4", "B5"]), threads=1)  # labels, not band names
    np.testing.assert_array_equal(labelled.values, fused.values)
    assert fused.attrs["long_name"] == ["blue", "green", "red", "nir"] and fused.attrs["scale_factor"] == 2.75e-5
    spelled = "+proj=utm +zone=16 +ellps=WGS84 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs"  # EPSG:32616, row 409
    np.testing.assert_array_equal(ddrf.fuse(pan, ms.rio.write_crs(spelled), threads=1).values, fused.values)
    for moved, message in ((ms.rio.write_crs("EPSG:4326"), "ms CRS EPSG:4326 differs from pan CRS EPSG:32616"),
                           (ms.assign_coords(x=ms.x - 2000.0), "is not the pan grid"),
                           (ms.isel(y=slice(None, None, -1)), "is not the pan grid")):
        with pytest.raises(ValueError, match=message):
            ddrf.fuse(pan, moved, method="GSA")


def test_fuse_scene_takes_a_bundled_model_by_name_and_warns_when_it_keeps_an_output(tmp_path: Path) -> None:
    scene = small_scene(tmp_path / "scene")
    path = ddrf.fuse_scene(scene, tmp_path / "out", model="landsat_ratio2", tile=256)
    assert json.loads(path.with_suffix(".json").read_text())["engine"]["model"]["name"] == "landsat_ratio2"
    with pytest.warns(UserWarning, match="already there and was kept"):
        assert ddrf.fuse_scene(scene, tmp_path / "out", model="landsat_ratio2") == path
    with pytest.raises(ValueError, match=r"a finished output of other method \(a model, asked GSA\)"):
        ddrf.fuse_scene(scene, tmp_path / "out", method="GSA")  # kept before, as if it were GSA's


def test_fuse_scene_writes_geotiff_report_and_item(tmp_path: Path) -> None:
    scene = small_scene(tmp_path / "scene")
    path = ddrf.fuse_scene(scene, tmp_path / "out", method="GSA")
    assert path == tmp_path / "out" / "scene.tif"
    assert {p.name for p in path.parent.iterdir()} == {"scene.tif", "scene.json", "scene.item.json"}
    with rasterio.open(path) as ds:
        assert ds.shape == (128, 128) and ds.count == 4 and ds.crs.to_epsg() == 32616
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ddrf.fuse_scene(tmp_path / "empty", tmp_path / "out2", method="GSA")


def test_progress_lines_every_n_seconds_or_percent() -> None:
    clock = [0.0]
    stream = io.StringIO()  # not a terminal
    reporter = Reporter("text", None, every_s=10.0, every_pct=50.0, stream=stream, clock=lambda: clock[0])
    assert reporter.lines and reporter.bars is False
    hook = reporter.tile_hook("scene")
    for _ in range(10):  # 10 of 100 windows, one second each
        clock[0] += 1.0
        hook(1, 100)
    lines = stream.getvalue().splitlines()
    assert lines == ["ddrf-run: scene: 10% (10/100 windows), 10 s, ETA 90 s"]  # the 10 s rule
    for _ in range(50):
        clock[0] += 0.01
        hook(1, 100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("ddrf-run: scene: 60% (60/100")  # 50 % after the last line
    json_stream = io.StringIO()
    quiet = Reporter("json", None, every_s=1e9, every_pct=1e9, stream=json_stream)
    quiet.tile_hook("s")(3, 3)  # the last window always reports
    event = json.loads(json_stream.getvalue())
    assert event["event"] == "progress" and event["percent"] == 100.0 and event["windows"] == 3


def run_cli(*args: str) -> Any:
    """In-process (CliRunner): stderr is not a terminal, as under a service manager."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    return CliRunner().invoke(app, list(args))


def test_cli_without_a_terminal_reports_progress_outputs_and_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x_B8.TIF").write_bytes(b"junk")
    run = run_cli(str(SAMPLE), str(tmp_path / "broken"), "-o", str(tmp_path / "out"), "--method", "GSA",
                  "--tile", "128", "--progress-percent", "25")
    assert run.exit_code == 1, run.output  # one scene failed, the other was done
    lines = run.stderr.splitlines()
    assert sum(f"{SAMPLE.name}: " in line and "windows" in line for line in lines) >= 3
    assert "2 scene(s): 1 done, 0 skipped, 1 failed" in run.stderr
    for suffix in (".tif", ".json", ".item.json"):
        assert f"ddrf-run:   done {tmp_path / 'out' / SAMPLE.name}{suffix}" in lines
    assert any(line.startswith("ddrf-run:   failed broken: ") and "x_B8.TIF" in line for line in lines)

    again = run_cli(str(SAMPLE), "-o", str(tmp_path / "out"), "--method", "GSA", "--log-format", "json")
    events = [json.loads(line) for line in again.stderr.splitlines()]
    assert again.exit_code == 0 and events[-1]["event"] == "output" and events[-1]["status"] == "skipped"
    summary = next(e for e in events if e["event"] == "summary")
    assert summary["skipped"] == 1 and summary["failed"] == 0

    usage = run_cli(str(SAMPLE), "-o", str(tmp_path / "o"), "--log-format", "yaml")
    assert usage.exit_code == 2 and "--log-format" in usage.stderr
    help_text = run_cli("--help").stdout
    assert "Exit codes" in help_text and "ddrf-run --watch INBOX -o OUT_DIR" in help_text
    assert "ddrf-run ITEM.json -o OUT_DIR" in help_text


def test_batch_run_sigterm_abandons_cleanly(tmp_path: Path) -> None:
    """A real SIGTERM to this process during the first scene's third window: both scenes are abandoned, nothing is
    published or left behind, and the run's exit code is 1."""
    import os
    import signal

    from ddrf.scenes.engines import EngineSpec
    from ddrf.scenes.jobs import SceneJob
    from ddrf.scenes.streaming import RunSettings
    from ddrf.scenes.runner import run_batch

    class SignalAtThirdWindow(Reporter):
        def tile_hook(self, scene: str) -> Any:
            inner, seen = super().tile_hook(scene), [0]

            def hook(done: int, total: int) -> None:
                seen[0] += done
                if seen[0] == 3:
                    os.kill(os.getpid(), signal.SIGTERM)
                inner(done, total)

            return hook

    out = tmp_path / "out"
    out.mkdir()
    jobs = [SceneJob(n, out / f"{n}.tif", directory=SAMPLE) for n in ("a", "b")]
    stream = io.StringIO()
    reporter = SignalAtThirdWindow("text", False, stream=stream)
    entries = run_batch(jobs, EngineSpec(method="GSA"), RunSettings(tile=64, batch=1, halo=16, progress=False), reporter, None)
    assert [e["status"] for e in entries] == ["abandoned", "abandoned"]
    assert list(out.iterdir()) == []  # no output, no temporaries
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    assert reporter.summary(entries) == 1 and "SIGTERM: abandoned a" in stream.getvalue()


def test_the_fusion_does_not_depend_on_the_data_units() -> None:
    """Scene normalisation floored each band's scale at 1e-6 absolute: float data of tiny values (radiance x 1e-10,
    a 1-99 % spread near 4e-7) was squashed, its fusion off by 0.8 of a band's std. The same scene in any units now
    fuses alike (1e-20 to 1e20)."""
    pan, ms = sample_arrays()
    reference = ddrf.fuse(pan.astype(float), ms.astype(float), threads=1)
    spread = reference.std(axis=(0, 1))
    for k in (1e-10, 1e-20, 1e20):
        scaled = ddrf.fuse(pan * k, ms * k, threads=1) / k
        assert (np.abs(scaled - reference).max(axis=(0, 1)) / spread).max() < 1e-4, k


def test_ctrl_c_in_a_batch_abandons_the_rest_and_writes_the_summary(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the second of three scenes ended with exit 130 and no run summary, so an earlier run's summary
    stayed in OUT describing that run. Now the scene in progress and the rest are abandoned, the summary says so,
    and the exit code is 1, as for SIGTERM."""
    from typer.testing import CliRunner

    import ddrf.scenes.runner as runner
    from ddrf.scenes.command import SUMMARY_NAME, app

    scenes = [shutil.copytree(SAMPLE, tmp_path / name) for name in ("a", "b", "c")]
    real, calls = runner.run_job, []

    def interrupted_at_the_second(job: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(job.name)
        if job.name == "b":
            raise KeyboardInterrupt
        return real(job, *args, **kwargs)

    monkeypatch.setattr(runner, "run_job", interrupted_at_the_second)
    out = tmp_path / "out"
    out.mkdir()
    (out / SUMMARY_NAME).write_text('{"scenes": "of an earlier run"}')
    result = CliRunner().invoke(app, [*map(str, scenes), "-o", str(out), "--method", "GSA", "--no-progress"])
    assert result.exit_code == 1, result.output
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert [(e["name"], e["status"]) for e in summary["scenes"]] == [("a", "done"), ("b", "abandoned"),
                                                                      ("c", "abandoned")]
    assert "SIGINT" in summary["scenes"][1]["error"] and calls == ["a", "b"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("a.")) == [SUMMARY_NAME]
