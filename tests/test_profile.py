"""ddrf-profile on a tiny exported model: report structure, statistics, schema, CSV, plot, projections, errors.

One module-level sweep (ort-cpu, 2 tiles x 2 step counts, 3 runs) is shared by most tests; every point runs in its
own worker process, as the command does.
"""
from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")  # the fixture model is exported with torch (the train extra)

from ddrf.export.onnx_export import export_model  # noqa: E402
from ddrf.profile import report
from ddrf.profile.command import app
from ddrf.profile.projection import parse_size, project
from ddrf.profile.stats import summarise
from ddrf.scenes.tiling import TileGrid
from test_export_runtime import tiny_card, tiny_model

TILES, STEPS, HALO = (64, 128), (1, 2), 16
SCENE_SIZE = (1000, 700)  # width x height, PAN pixels
SAMPLE_SCENE = Path(__file__).resolve().parents[1] / "ddrf" / "assets" / "sample_scene" / "LC80200392015216LGN00"
runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_model()
    out = tmp_path_factory.mktemp("profile_model")
    export_model(model, tiny_card(model), out, fp16=False)
    return out


@pytest.fixture(scope="module")
def sweep(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("profile_out")
    paths = {k: out / f"profile.{k}" for k in ("json", "csv", "png")}
    result = runner.invoke(app, [str(model_dir), "-b", "ort-cpu", "--tile", ",".join(map(str, TILES)), "--steps",
                                 ",".join(map(str, STEPS)), "--runs", "3", "--warmup", "1", "--threads", "1",
                                 "--halo", str(HALO), "--scene-size", "x".join(map(str, SCENE_SIZE)), "--quiet",
                                 "--json", str(paths["json"]), "--csv", str(paths["csv"]), "--plot", str(paths["png"])])
    assert result.exit_code == 0, result.output
    return {"doc": json.loads(paths["json"].read_text()), "paths": paths, "stdout": result.stdout}


def ok_results(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in sweep["doc"]["results"] if r["status"] == "ok"]


def all_stats(result: dict[str, Any]) -> list[dict[str, float]]:
    latency = result["latency_ms"]
    return [latency["total"], *(s for s in latency["stages"].values() if s), *latency["denoise_steps"]]


def test_json_validates_against_the_shipped_schema(sweep: dict[str, Any]) -> None:
    doc = sweep["doc"]
    jsonschema.validate(doc, report.load_schema())
    assert doc["schema_version"] == report.SCHEMA_VERSION == 1
    broken = {**doc, "results": [{**doc["results"][0], "latency_ms": {"total": {"mean": 1.0}}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, report.load_schema())


def test_environment_recorded(sweep: dict[str, Any]) -> None:
    env = sweep["doc"]["environment"]
    assert env["onnxruntime_version"] and env["cpu_cores_usable"] >= 1
    for key in ("gpu_name", "compute_capability", "cuda_driver_version", "tensorrt_version", "jetson"):
        assert key in env  # None where there is no GPU / Jetson, but always present


def test_sweep_over_two_step_counts_and_two_tiles(sweep: dict[str, Any]) -> None:
    results = sweep["doc"]["results"]
    assert len(results) == len(TILES) * len(STEPS)
    assert {(r["tile"], r["steps"]) for r in results} == {(t, k) for t in TILES for k in STEPS}
    assert all(r["status"] == "ok" and r["provider"] == "ort-cpu" for r in results)


def test_percentiles_are_ordered(sweep: dict[str, Any]) -> None:
    for result in ok_results(sweep):
        for s in all_stats(result):
            assert s["min"] <= s["median"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
            assert s["min"] <= s["mean"] <= s["max"] and s["cv"] >= 0 and s["n"] == 3


def test_stage_times_sum_to_within_the_total(sweep: dict[str, Any]) -> None:
    """Stages are timed back to back inside the total, so their sum never exceeds it; the rest (Python overhead
    between stages) must stay under 5 % of the total or 2 ms, whichever is larger."""
    for result in ok_results(sweep):
        latency = result["latency_ms"]
        stages = sum(s["mean"] for s in latency["stages"].values() if s) + latency["denoise_sum"]["mean"]
        total = latency["total"]["mean"]
        assert stages <= total * (1 + 1e-9)
        assert total - stages <= max(0.05 * total, 2.0), (total, stages)
        assert latency["unaccounted"]["min"] >= 0


def test_steps_count_matches(sweep: dict[str, Any]) -> None:
    for result in ok_results(sweep):
        assert len(result["latency_ms"]["denoise_steps"]) == result["steps"] == len(result["timesteps"])
        assert result["latency_ms"]["stages"]["encode"] is not None  # cached: encoded once
        assert result["latency_ms"]["stages"]["read"] is not None  # tiles read from the sample scene
        assert result["input"]["source"] == "scene"


def test_throughput_and_memory(sweep: dict[str, Any]) -> None:
    for result in ok_results(sweep):
        mean_s = result["latency_ms"]["total"]["mean"] / 1e3
        assert result["throughput"]["tiles_per_s"] == pytest.approx(result["batch"] / mean_s)
        assert result["throughput"]["megapixels_per_s"] == pytest.approx(result["tile"] ** 2 / 1e6 / mean_s)
        assert result["memory"]["peak_rss_bytes"] >= result["memory"]["rss_after_load_bytes"] > 10 * 2**20
        cold = result["cold_start_ms"]
        assert cold["total"] == pytest.approx(cold["import"] + cold["load"] + cold["session"] + cold["first_run"])


def test_csv_rows_match_json(sweep: dict[str, Any]) -> None:
    rows = list(csv.DictReader(io.StringIO(sweep["paths"]["csv"].read_text())))
    results = sweep["doc"]["results"]
    assert len(rows) == len(results)
    for row, result in zip(rows, results):
        assert (row["backend"], int(row["tile"]), int(row["steps"])) == (result["backend"], result["tile"],
                                                                         result["steps"])
        assert float(row["total_median_ms"]) == pytest.approx(result["latency_ms"]["total"]["median"])
        assert float(row["denoise_mean_ms"]) == pytest.approx(result["latency_ms"]["denoise_sum"]["mean"])


def test_plot_png_written(sweep: dict[str, Any]) -> None:
    data = sweep["paths"]["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_table_printed(sweep: dict[str, Any]) -> None:
    lines = sweep["stdout"].splitlines()
    assert lines[0].split()[:3] == ["backend", "prec", "tile"]
    assert sum(line.strip().startswith("ort-cpu") for line in lines) == len(TILES) * len(STEPS)


def test_projected_scene_time_matches_throughput_and_windows(sweep: dict[str, Any], model_dir: Path) -> None:
    card = json.loads((model_dir / "card.json").read_text())
    align = math.lcm(card["ratio"], 2 ** (len(card["model"]["channel_mults"]) - 1))
    projections = sweep["doc"]["scene_projections"]
    assert len(projections) == len(ok_results(sweep))
    for p, result in zip(projections, ok_results(sweep)):
        grid = TileGrid.plan(SCENE_SIZE[1], SCENE_SIZE[0], result["tile"], HALO, align)
        assert (p["height"], p["width"], p["windows"]) == (SCENE_SIZE[1], SCENE_SIZE[0], grid.count)
        assert p["calls"] == math.ceil(grid.count / result["batch"])
        assert p["projected_s"] == pytest.approx(grid.count / result["throughput"]["tiles_per_s"])
        assert p["halo_overhead"] > 1.0  # overlapping windows process more pixels than the scene has


def test_parse_size_and_project_by_hand() -> None:
    assert parse_size("10000x8000") == (8000, 10000)
    with pytest.raises(ValueError):
        parse_size("10000")
    fake = {"backend": "ort-cpu", "precision": "fp32", "tile": 256, "batch": 4, "steps": 2, "sampler": "cached",
            "latency_ms": {"total": {"mean": 2000.0}}, "cold_start_ms": {"total": 500.0}}
    p = project(fake, 1000, 1000, 32, 2, 8)
    grid = TileGrid.plan(1000, 1000, 256, 32, 8)
    assert p["windows"] == grid.count == 36 and p["calls"] == 12 and p["projected_s"] == pytest.approx(24.0)


def test_a_projection_makes_ddrf_runs_calls_which_never_span_two_row_strips() -> None:
    """6 x 6 windows at --batch 4: ddrf-run calls the engine twice per row strip (4 + 2 windows), 12 times (before:
    the projection said ceil(36 / 4) = 9 calls, a time a quarter below what ddrf-run takes at that batch), and a
    scene wider than one column chunk fuses its chunk-border windows once per chunk, as ddrf-run does."""
    fake = {"backend": "ort-cpu", "precision": "fp32", "tile": 256, "batch": 4, "steps": 1, "sampler": "cached",
            "latency_ms": {"total": {"mean": 1000.0}}, "cold_start_ms": {"total": 0.0}}
    grid = TileGrid.plan(1000, 1000, 256, 32, 8)
    rows, cols = len(grid.row_starts), len(grid.col_starts)
    p = project(fake, 1000, 1000, 32, 2, 8)
    assert (rows, cols) == (6, 6) and p["calls"] == rows * math.ceil(cols / 4) == 12
    wide = TileGrid.plan(200, 9000, 256, 32, 8)
    p = project(fake, 200, 9000, 32, 2, 8)
    assert p["windows"] == wide.fused_count() > wide.count and p["calls"] == wide.calls(4)


def test_summarise_known_values() -> None:
    s = summarise([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (s["min"], s["median"], s["max"], s["mean"]) == (1.0, 3.0, 10.0, 4.0)
    assert s["p90"] == pytest.approx(7.6) and s["cv"] == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1) / 4.0)
    assert summarise([5.0])["cv"] == 0.0


def test_bad_model_path_exits_1_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, [str(tmp_path / "nope"), "--runs", "1"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("ddrf-profile: ") and "nope" in message and len(message.splitlines()) == 1


def test_unknown_backend_exits_2(model_dir: Path) -> None:
    result = runner.invoke(app, [str(model_dir), "-b", "ort-cpu,openvino"])
    assert result.exit_code == 2 and "unknown backend 'openvino'" in result.stderr


@pytest.mark.parametrize("args", [["--tile", "abc"], ["--steps", "0"], ["--scene-size", "100"],
                                  ["--sampler", "fast"]])
def test_bad_sweep_values_exit_2(model_dir: Path, args: list[str]) -> None:
    assert runner.invoke(app, [str(model_dir), *args]).exit_code == 2


def test_the_halo_is_the_cards_unless_given(model_dir: Path, tmp_path: Path) -> None:
    """Projections and --scene use the halo ddrf-run would: the card's (it used to be 32 for every model)."""
    import shutil

    from ddrf.card import read_card, write_card

    wide = Path(shutil.copytree(model_dir, tmp_path / "wide"))
    card = read_card(wide / "card.json")
    card.halo = 48
    write_card(card, wide / "card.json")
    for args, halo in (([], 48), (["--halo", "16"], 16)):
        report = tmp_path / f"halo{halo}.json"
        result = runner.invoke(app, [str(wide), "--tile", "128", "--steps", "1", "--runs", "1", "--warmup", "0",
                                     "--threads", "1", "--scene-size", "512x512", "--quiet", "--json", str(report),
                                     *args])
        assert result.exit_code == 0, result.output
        doc = json.loads(report.read_text())
        assert doc["settings"]["halo"] == halo and f"--halo {halo}" in doc["command"]
        assert [p["halo"] for p in doc["scene_projections"]] == [halo]


def test_unavailable_points_are_skipped_not_fatal(model_dir: Path) -> None:
    """No unrolled graph was exported and torch has no checkpoint: both rows say why; ort-cpu still runs."""
    result = runner.invoke(app, [str(model_dir), "-b", "ort-cpu,torch", "--tile", "128", "--steps", "1", "--runs",
                                 "1", "--warmup", "0", "--sampler", "cached,unrolled", "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "missing (export it with ddrf-export)" in result.stdout and "--checkpoint" in result.stdout


def test_nothing_measurable_exits_1(model_dir: Path) -> None:
    result = runner.invoke(app, [str(model_dir), "-b", "torch", "--runs", "1", "--quiet"])
    assert result.exit_code == 1 and "nothing could be measured" in result.stderr


def test_a_scene_statistics_model_is_timed_through_its_unrolled_sampler_by_default(tmp_path: Path) -> None:
    """The bundled landsat_ratio2 runs through its unrolled graphs only: with no --sampler, that is what is timed
    (before: the default cached sampler was skipped, and the profile exited 1, 'nothing could be measured')."""
    bundled = Path(__file__).resolve().parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio2"
    result = runner.invoke(app, [str(bundled), "--backend", "ort-cpu", "--tile", "256", "--runs", "1", "--warmup",
                                 "0", "--quiet", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [(r["sampler"], r["status"]) for r in doc["results"]] == [("unrolled", "ok")]
    assert "--sampler unrolled" in doc["command"]


def test_a_tile_the_models_halo_leaves_no_room_in_is_refused_before_any_point_runs(tmp_path: Path) -> None:
    """landsat_ratio2 (halo 96) at --tile 128: ddrf-run runs it staged, which the points do not time; the profile says
    so in one line (before: the point ran and failed inside the graph, 'Invalid input shape: {0,0}', exit 1 after the
    cold start)."""
    bundled = Path(__file__).resolve().parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio2"
    out = tmp_path / "r.json"
    result = runner.invoke(app, [str(bundled), "--tile", "128", "--runs", "1", "--warmup", "0", "--json", str(out)])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and str(bundled) in message
    assert "--tile 128" in message and "halo of 96" in message and "use a tile of 384" in message
    assert "ddrf-run runs it staged (stage 3's halo 16), which these points do not time" in message
    assert not out.exists() and "[1/1]" not in result.stderr  # no worker started, nothing written


def test_a_bundled_models_name_is_profiled_as_ddrf_run_takes_it(tmp_path: Path) -> None:
    """`ddrf-profile landsat_ratio4`, as `ddrf-run --model landsat_ratio4` (before: 'not a model directory', exit 1)."""
    from ddrf.bundled import bundled_folder

    out = tmp_path / "r.json"
    result = runner.invoke(app, ["landsat_ratio4", "--tile", "96", "--runs", "1", "--warmup", "0", "--quiet",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert Path(doc["target"]["path"]) == bundled_folder() / "landsat_ratio4"
    assert [r["status"] for r in doc["results"]] == ["ok"]


def test_a_scene_run_that_ddrf_run_refuses_says_why(tmp_path: Path) -> None:
    """--scene with the ratio-2 sample scene and the ratio-4 model: the scene run's row carries ddrf-run's own line
    (before: `scene run failed (...): exit 1`, the reason lost with the worker's stderr)."""
    bundled = Path(__file__).resolve().parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio4"
    out = tmp_path / "r.json"
    result = runner.invoke(app, [str(bundled), "--tile", "96", "--runs", "1", "--warmup", "0", "--quiet",
                                 "--scene", str(SAMPLE_SCENE), "--json", str(out)])
    assert result.exit_code == 0, result.output
    [run] = json.loads(out.read_text())["scene_runs"]
    assert run["exit_code"] == 1 and "scene ratio 2 but the model fuses ratio 4" in run["error"]
    assert run["error"] in result.stdout


def test_a_halo_below_the_models_is_timed_as_ddrf_run_runs_it() -> None:
    """landsat_ratio2 (halo 96, output margin 72) at --tile 128 --halo 8: ddrf-run keeps all but 6 px of each window
    side, so the graph widens each window past its margin; the profile timed the windows with the card's halo instead
    (before: the graph left 128 - 2 x 72 px, 'Invalid input shape: {0,0}', exit 1; at --tile 256 --halo 32 a time
    without the widening ddrf-run computes)."""
    bundled = Path(__file__).resolve().parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio2"
    result = runner.invoke(app, [str(bundled), "--tile", "128", "--halo", "8", "--runs", "1", "--warmup", "0",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert "unrolled" in result.stdout and " ok" in result.stdout


def test_a_tiles_from_folder_the_model_cannot_read_is_refused_before_the_sweep(tmp_path: Path) -> None:
    """--tiles-from an empty folder, or the ratio-2 sample scene for the ratio-4 model: one line naming the folder,
    exit 1 (before: every point timed synthetic tiles, exit 0, said only in the JSON report's input notes)."""
    bundled = Path(__file__).resolve().parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio4"
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, reason in ((empty, "no raster files"), (SAMPLE_SCENE, "has ratio 2, the model 4")):
        out = tmp_path / "r.json"
        result = runner.invoke(app, [str(bundled), "--tile", "96", "--runs", "1", "--warmup", "0", "--quiet",
                                     "--tiles-from", str(folder), "--json", str(out)])
        assert result.exit_code == 1, result.output
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and message.startswith(f"ddrf-profile: {folder}") and reason in message
        assert "--tiles-from" in message and not out.exists()


def test_torch_eager_on_the_same_checkpoint(model_dir: Path, tmp_path: Path) -> None:
    from ddrf.train.checkpoint import save_weights

    model = tiny_model()
    state = model.state_dict()
    save_weights(tmp_path, state, state, tiny_card(model))
    out = tmp_path / "torch.json"
    result = runner.invoke(app, [str(model_dir), "-b", "torch", "--checkpoint", str(tmp_path), "--tile", "128",
                                 "--steps", "2", "--runs", "2", "--warmup", "0", "--threads", "1", "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["results"][0]
    assert row["status"] == "ok" and row["provider"] == "torch" and len(row["latency_ms"]["denoise_steps"]) == 2


def test_torch_eager_runs_a_band_wise_model_band_by_band(tmp_path: Path) -> None:
    """The bundled band-wise model's weights take one band at a time, as its graphs do; the torch backend fed it all
    four bands at once and failed ("expected 1 MS and 1 guide bands, got 4 and 1")."""
    pytest.importorskip("torch")
    from ddrf.bundled import model_folder

    out = tmp_path / "bw.json"
    result = runner.invoke(app, [str(model_folder("landsat_ratio2_band_wise")), "-b", "torch", "--tile", "64",
                                 "--runs", "1", "--warmup", "0", "--threads", "1", "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["results"][0]["status"] == "ok"


def test_measured_scene_run(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "scene.json"
    result = runner.invoke(app, [str(model_dir), "--tile", "128", "--steps", "1", "--runs", "1", "--warmup", "0",
                                 "--halo", str(HALO), "--threads", "1", "--scene", str(SAMPLE_SCENE), "--quiet", "--json",
                                 str(out)])
    assert result.exit_code == 0, result.output
    run = json.loads(out.read_text())["scene_runs"][0]
    assert run["exit_code"] == 0 and run["seconds"] > 0 and run["tiles"] >= 1
    assert (run["height"], run["width"]) == (256, 512) and run["megapixels"] == pytest.approx(256 * 512 / 1e6)
    assert run["peak_rss_bytes"] > 10 * 2**20 and "--tile 128" in run["command"]


def test_worker_never_imports_torch(model_dir: Path, tmp_path: Path) -> None:
    code = ("import sys; from ddrf.profile.worker import measure; from ddrf.profile.spec import PointSpec; "
            f"r = measure(PointSpec({str(model_dir)!r}, tile=64, steps=1, runs=1, warmup=0, threads=1)); "
            "import ddrf.profile.command; "
            "assert r['status'] == 'ok', r; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_engine_inputs_follow_the_sidecar_profile() -> None:
    from types import SimpleNamespace

    from ddrf.profile.engine_point import engine_inputs

    profile = {"x_t": {"min": [1, 4, 8, 8], "opt": [1, 4, 64, 64], "max": [4, 4, 128, 128]},
               "t": {"min": [1], "opt": [1], "max": [4]}, "cond_0": {"opt": [1, 8, 32, 32]}}
    fake = SimpleNamespace(sidecar=SimpleNamespace(profiles=[profile]), input_names=["x_t", "t", "cond_0"])
    arrays = engine_inputs(fake, batch=2, tile=None)
    assert arrays["x_t"].shape == (2, 4, 64, 64) and arrays["t"].shape == (2,) and arrays["cond_0"].shape[0] == 2



def test_engine_inputs_at_a_tile_keep_each_input_at_its_own_scale() -> None:
    """`ddrf-profile X.plan --tile 128`: the conditions stay at 1/2 and 1/4 of the tile, inside the profile the build
    made (before: every NCHW input at 128 x 128, refused by the engine), and the scene pass's tokens keep theirs."""
    from types import SimpleNamespace

    from ddrf.profile.engine_point import engine_inputs

    profile = {"x_t": {"opt": [1, 4, 256, 256]}, "t": {"opt": [1]}, "cond_0": {"opt": [1, 8, 128, 128]},
               "cond_1": {"opt": [1, 16, 64, 64]}, "scene_tokens": {"opt": [3, 2, 16, 900]}}
    fake = SimpleNamespace(sidecar=SimpleNamespace(profiles=[profile]), input_names=list(profile))
    arrays = engine_inputs(fake, batch=2, tile=128)
    shapes = {name: a.shape for name, a in arrays.items()}
    assert shapes == {"x_t": (2, 4, 128, 128), "t": (2,), "cond_0": (2, 8, 64, 64), "cond_1": (2, 16, 32, 32),
                      "scene_tokens": (3, 2, 16, 900)}

# --- GPU: exercised only where a CUDA device (and TensorRT / onnxruntime-gpu) exists -------------------------------
def _has_cuda_provider() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda_provider(), reason="onnxruntime-gpu with CUDA not available")
def test_ort_cuda_reports_device_memory(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cuda.json"
    result = runner.invoke(app, [str(model_dir), "-b", "ort-cuda", "--tile", "128", "--steps", "2", "--runs", "3",
                                 "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["results"][0]
    assert row["status"] == "ok" and row["memory"]["device"] is not None


@pytest.mark.gpu
def test_tensorrt_layer_profile(tmp_path: Path) -> None:
    from ddrf.engines.probe import cuda_device_count, tensorrt_version

    if cuda_device_count() == 0 or tensorrt_version() is None:
        pytest.skip("needs a CUDA GPU and TensorRT")
    from ddrf.engines.build import build_model_engines

    model = tiny_model()
    export_model(model, tiny_card(model), tmp_path / "m", fp16=True)
    build_model_engines(tmp_path / "m", tile=64, max_tile=128, batch=1, max_batch=2)
    out = tmp_path / "trt.json"
    result = runner.invoke(app, [str(tmp_path / "m"), "-b", "tensorrt", "--precision", "fp16", "--tile", "64",
                                 "--steps", "2", "--runs", "3", "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["results"][0]
    assert row["status"] == "ok" and set(row["layer_profile"]) == {"encoder", "denoiser"}
    table = row["layer_profile"]["denoiser"]
    assert table[0]["count"] == 3 and {"name", "timeMs", "averageMs", "medianMs", "percentage"} <= set(table[1])
    engine = runner.invoke(app, [str(tmp_path / "m" / "denoiser_fp16.plan"), "-b", "tensorrt", "--runs", "3",
                                 "--quiet"])
    assert engine.exit_code == 0, engine.output


def test_scene_runs_time_ddrf_run_at_the_precision_it_loads(tmp_path: Path) -> None:
    """--scene times ddrf-run beside the points that ran what ddrf-run runs: with --backend tensorrt that is the FP16
    engines `ddrf-export engine` builds, so an fp16 tensorrt point is the one to compare (before: only fp32 points
    were, so a TensorRT sweep never timed ddrf-run); an fp16 ort-cpu point is not what ddrf-run runs."""
    from ddrf.assets import BUNDLED_MODELS, SAMPLE_SCENE
    from ddrf.profile.command import scene_runs

    point = {"status": "ok", "tile": 704, "batch": 1, "steps": 1, "sampler": "unrolled"}
    results = [{**point, "backend": "ort-cpu", "precision": "fp16"}, {**point, "backend": "tensorrt",
                                                                       "precision": "fp16"}]
    notes: list[str] = []
    runs = scene_runs(SAMPLE_SCENE, BUNDLED_MODELS / "landsat_ratio2", results, 96, 300, notes, "unrolled")
    assert [r["backend"] for r in runs] == ["tensorrt"] and not notes, (runs, notes)


def test_each_backend_is_timed_at_the_precision_it_loads_unless_told(model_dir: Path, tmp_path: Path) -> None:
    """Without --precision, tensorrt is timed on the FP16 engines `ddrf-export engine` builds and ONNX Runtime on the
    FP32 graphs (before: fp32 for every backend, an engine nothing builds); --precision still picks its own."""
    common = ["-b", "ort-cpu,tensorrt", "--tile", "128", "--steps", "1", "--runs", "1", "--warmup", "0", "--threads",
              "1", "--quiet", "--timeout", "120"]
    for args, expected in (([], [("ort-cpu", "fp32"), ("tensorrt", "fp16")]),
                           (["--precision", "fp32"], [("ort-cpu", "fp32"), ("tensorrt", "fp32")])):
        out = tmp_path / f"p{len(args)}.json"
        result = runner.invoke(app, [str(model_dir), *common, *args, "--json", str(out)])
        assert result.exit_code in (0, 1), result.output  # tensorrt may not run here; the rows are still written
        doc = json.loads(out.read_text())
        assert [(r["backend"], r["precision"]) for r in doc["results"]] == expected
        rerun = runner.invoke(app, [*doc["command"].split()[1:], "--json", str(tmp_path / "again.json"), "--quiet",
                                    "--overwrite"])
        again = json.loads((tmp_path / "again.json").read_text())["results"]
        assert [(r["backend"], r["precision"]) for r in again] == expected, rerun.output
