"""The model directory (ddrf.model_dir), atomic writes (ddrf.files) and the backend registry: torch-free."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ddrf.card import read_card
from ddrf.files import clean_stale, temp_path, write_files_atomic
from ddrf.model_dir import CARD_NAME, MissingGraph, ModelDir, ModelDirError, graph_stem, write_model_dir
from ddrf.runtime import backends
from ddrf.runtime.fuser import Fuser

BUNDLED = Path(__file__).parents[1] / "ddrf" / "assets" / "models" / "landsat_ratio2"  # scene statistics: unrolled only
STEPWISE = BUNDLED.with_name("landsat_ratio4")  # encoder, denoiser and the 1-step sampler
SAMPLE = Path(__file__).parents[1] / "ddrf" / "assets" / "sample_scene" / "LC80200392015216LGN00"


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    out = tmp_path / "model"
    out.mkdir()
    for name in (CARD_NAME, "encoder.onnx", "denoiser.onnx"):
        shutil.copy(STEPWISE / name, out / name)
    return out


def edit_card(model: Path, **changes: object) -> None:
    card = json.loads((model / CARD_NAME).read_text())
    card.update(changes)
    (model / CARD_NAME).write_text(json.dumps(card))


def one_line_error(exc: pytest.ExceptionInfo[BaseException], path: Path) -> str:
    text = str(exc.value)
    assert "\n" not in text and str(path) in text
    return text


def test_bundled_models_open_with_checked_hashes_and_io() -> None:
    fuser = Fuser(STEPWISE)
    assert set(fuser.card.hashes) == {"encoder.onnx", "denoiser.onnx", "sampler_k1.onnx"}
    assert fuser.files.graph("denoiser") == STEPWISE / "denoiser.onnx"
    assert fuser.files.graph("sampler", steps=1) == STEPWISE / "sampler_k1.onnx"
    scene = Fuser(BUNDLED)  # scene statistics: the scene pass and the sampler that replays it
    staged = {f"staged_{stage}_k1.onnx" for stage in ("entry", "deep", "decoder")}  # one step in three graphs
    assert set(scene.card.hashes) == {"scene_k1.onnx", "sampler_k1.onnx", *staged} and scene.unrolled
    assert scene.files.graph("scene", steps=1) == BUNDLED / "scene_k1.onnx"
    assert {scene.files.graph(f"staged_{stage}", steps=1).name for stage in ("entry", "deep", "decoder")} == staged
    assert ModelDir.open(BUNDLED).graph_stages() == [("sampler", 1), ("scene", 1)]


def test_changed_graph_is_refused_by_its_hash(model_copy: Path) -> None:
    with open(model_copy / "denoiser.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelDirError, match="sha256") as exc:
        Fuser(model_copy)
    one_line_error(exc, model_copy / "denoiser.onnx")


def test_graphs_of_another_stage_are_refused(model_copy: Path) -> None:
    """Swapped graphs (hashes dropped, so only the tensor names can tell) do not load as the other stage."""
    enc, den = model_copy / "encoder.onnx", model_copy / "denoiser.onnx"
    enc.rename(model_copy / "swap")
    den.rename(enc)
    (model_copy / "swap").rename(den)
    edit_card(model_copy, hashes={})
    with pytest.raises(ModelDirError, match="not a encoder") as exc:
        Fuser(model_copy)
    one_line_error(exc, enc)


def test_card_listing_other_bands_than_the_graph_is_refused(model_copy: Path) -> None:
    edit_card(model_copy, bands=["red", "green", "blue"])
    with pytest.raises(ModelDirError, match="lms has 4 channels") as exc:
        Fuser(model_copy)
    one_line_error(exc, model_copy / "encoder.onnx")


def test_ddrf_run_refuses_a_changed_model_in_one_line(model_copy: Path, tmp_path: Path) -> None:
    from ddrf.scenes.command import app

    with open(model_copy / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--model", str(model_copy),
                                      "--no-progress"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "sha256" in lines[0] and "encoder.onnx" in lines[0]
    assert not list((tmp_path / "out").glob("*.tif"))


def test_missing_graph_is_its_own_error(model_copy: Path) -> None:
    with pytest.raises(MissingGraph, match="sampler_k4.onnx"):
        Fuser(model_copy, steps=4, unrolled=True)
    with pytest.raises(MissingGraph):
        Fuser(model_copy, backend="tensorrt")  # no .plan built: refused before TensorRT is touched


def test_write_model_dir_records_hashes_and_leaves_the_card_alone(tmp_path: Path) -> None:
    card = read_card(STEPWISE / CARD_NAME)
    card.hashes = {}
    stems = ("encoder", "denoiser", "sampler_k1")
    graphs = {stem: (STEPWISE / f"{stem}.onnx").read_bytes() for stem in stems}
    written = write_model_dir(tmp_path / "m", card, graphs)
    assert card.hashes == {}
    assert written.hashes == read_card(STEPWISE / CARD_NAME).hashes
    assert ModelDir.open(tmp_path / "m").card == written
    with pytest.raises(FileExistsError):
        write_model_dir(tmp_path / "m", card, graphs)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted([CARD_NAME, *(f"{s}.onnx" for s in stems)])


def test_graph_stems() -> None:
    assert graph_stem("sampler", "fp16", 4) == "sampler_k4_fp16"
    assert graph_stem("encoder") == "encoder"
    with pytest.raises(ValueError):
        graph_stem("decoder")


def test_atomic_writes_leave_nothing_half_written(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "missing_dir" / "b.bin"
    with pytest.raises(OSError):
        write_files_atomic([(a, b"first"), (b, b"second")])  # the second cannot be staged: neither is written
    assert list(tmp_path.iterdir()) == []
    write_files_atomic([(a, b"first")])
    assert a.read_bytes() == b"first" and (a.stat().st_mode & 0o777) != 0o600
    stale = temp_path(a)
    stale.write_bytes(b"half")
    assert clean_stale(a) == [stale] and not stale.exists()


# ------------------------------------------------------------------------------------------------- backends
def test_backend_registry_is_the_one_list() -> None:
    from ddrf.profile.report import load_schema

    assert backends.BACKENDS == ("ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt")
    assert backends.PROFILE_BACKENDS == (*backends.BACKENDS, "torch")
    assert set(backends.GPU_BACKENDS) == {"ort-cuda", "ort-tensorrt", "tensorrt"}
    assert backends.backend_info("tensorrt").file_suffix == ".plan"
    assert backends.ORT_PROVIDERS["ort-cpu"] == "CPUExecutionProvider"
    enum = load_schema()["$defs"]["key"]["properties"]["backend"]["enum"]
    assert enum == list(backends.PROFILE_BACKENDS)
    with pytest.raises(ValueError, match="unknown backend"):
        backends.backend_info("ort-rocm")
    with pytest.raises(ValueError, match="not a runtime backend"):
        backends.open_backend(STEPWISE / "encoder.onnx", "torch")


def test_default_tiling_follows_the_registry_device() -> None:
    from ddrf.scenes.engines import default_tiling

    for name, info in backends.REGISTRY.items():
        if info.runtime:
            assert default_tiling(name) == ((1024, 1) if info.device == "cuda" else (256, 1))
            assert default_tiling(name, halo=96) == ((1024, 1) if info.device == "cuda" else (704, 1))
            assert default_tiling(name, halo=200) == ((1408, 1) if info.device == "cuda" else (1408, 1))


def test_default_engine_profile_takes_default_ddrf_run_windows() -> None:
    """A TensorRT engine built with ddrf-export engine's defaults runs ddrf-run's default windows, and a default
    tile is brought inside a narrower engine's profile (an asked-for one is left to the preflight check)."""
    from ddrf.engines.build import window_profile
    from ddrf.scenes.engines import default_tiling
    from ddrf.scenes.streaming import RunSettings, resolved_window

    card = read_card(BUNDLED / "card.json")  # halo 96, size multiple 8, output margin 72
    tiles, batches = window_profile(card)
    assert tiles == (8 + 2 * 72, 1024, 1024) and batches == (1, 1, 1)  # the smallest window keeps 8 px
    assert default_tiling("tensorrt", halo=card.halo) == (tiles[1], batches[1])
    assert window_profile(card, tile=512, max_tile=768, batch=2, max_batch=4) == ((152, 512, 768), (1, 2, 4))
    with pytest.raises(ValueError, match="multiples of 8"):
        window_profile(card, tile=500)
    with pytest.raises(ValueError, match="need 152 <= tile"):
        window_profile(card, tile=144)

    class NarrowEngine:  # what ModelEngine says for an engine built with --max-tile 640
        halo, default_tile = 96, 1024

        def window_limits(self) -> tuple[int, int, int]:
            return 8, 640, 1

    assert resolved_window(RunSettings(tile=None, batch=1), NarrowEngine()) == (640, 96)
    assert resolved_window(RunSettings(tile=768, batch=1), NarrowEngine()) == (768, 96)


def test_bundled_model_fuses_finite_values() -> None:
    rng = np.random.default_rng(0)
    pan = rng.uniform(100, 4000, (64, 64))
    ms = rng.uniform(100, 4000, (32, 32, 4))
    out = Fuser(BUNDLED).fuse(pan, ms)
    assert out.shape == (64, 64, 4) and np.isfinite(out).all()


def test_graph_discovery(model_copy: Path) -> None:
    names = ("sampler_k4.onnx", "sampler_k12_fp16.onnx", "sampler_k2_fp16.onnx", "sampler_k2.onnx", "sampler_kx.onnx")
    for name in names:
        (model_copy / name).write_bytes(b"")
    model = ModelDir.open(model_copy / CARD_NAME)
    assert model.unrolled_steps() == [2, 4] and model.unrolled_steps("fp16") == [2, 12]
    assert model.graph_stages() == [("encoder", None), ("denoiser", None), ("sampler", 2), ("sampler", 4)]
    assert model.path("sampler", "fp16", 4, ".plan") == model_copy / "sampler_k4_fp16.plan"


def test_every_bundled_model_carries_a_fitted_spread_calibration() -> None:
    """--uncertainty N on a bundled model writes a calibrated spread: each card has a c fitted on held-out data
    (benchmarks/steps_samples.py --write-calibration), with the N it was fitted at, and one for four and eight views
    (--ensemble N --uncertainty N), and each README says so."""
    from ddrf.bundled import bundled_models

    models = bundled_models(BUNDLED.parent)
    assert len(models) >= 4
    for model in models:
        card = model.card
        assert card.spread_calibration > 1.5 and card.spread_calibration_samples == 8, model.name
        assert f"{card.spread_calibration:g}" in (model.path / "README.md").read_text(), model.name
        views = {f["samples"]: f for f in card.spread_calibration_views if f["steps"] == card.sampling_steps}
        assert sorted(views) == [4, 8], model.name  # --ensemble 4 or 8 with --uncertainty of the same N
        for fit in views.values():
            assert fit["c"] > 1.5 and f"{fit['c']:g}" in (model.path / "README.md").read_text(), model.name


def test_an_fp32_engine_asked_where_the_fp16_one_is_built_names_the_precision(model_copy: Path) -> None:
    """`ddrf-export engine` builds FP16 engines only; `ddrf-profile -b tensorrt` (precision fp32 by default) on such a
    folder was told to build the engines with `ddrf-export engine`, the command that had just built them."""
    files = ModelDir.open(model_copy)
    files.path("encoder", "fp16", suffix=".plan").write_bytes(b"an FP16 engine")
    with pytest.raises(MissingGraph) as exc:
        files.graph("encoder", "fp32", suffix=".plan")
    message = str(exc.value)
    assert "encoder.plan: missing" in message and "encoder_fp16.plan" in message, message
    assert "--precision fp16" in message and "ddrf-export engine" not in message, message
