"""ddrf.engines on a CPU-only machine: sidecars and the mismatch check, the operator check, probing without a GPU,
and the no-TensorRT/no-GPU path of the builder and the backend (a clear error, nothing written)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import helper

from ddrf.engines.build import build_engine, nchw_range, normalise_profiles
from ddrf.engines.onnx_ops import check_opset, check_tensorrt_ops
from ddrf.engines.probe import (EngineUnavailable, cuda_device_count, jetpack_for_l4t, parse_tegra_release,
                                tensorrt_version)
from ddrf.engines.sidecar import (EngineMismatch, EngineSidecar, check_compatible, mismatch_message, read_sidecar,
                                  sha256_file, sidecar_path_for, verify_engine, write_sidecar)
from ddrf.runtime.tensorrt_backend import TensorRTBackend, layer_profile_table
from test_tensorrt_gpu import make_attention_graph, ort_reference

HAVE_TRT_GPU = cuda_device_count() > 0 and tensorrt_version() is not None

ORIN_ENV: dict[str, Any] = {  # what probe.environment() reports on a Jetson AGX Orin with JetPack 6.0
    "tensorrt_version": "10.3.0.30", "cuda_runtime_version": "12.6", "cuda_driver_version": "12.6",
    "device_count": 1, "device": 0, "gpu_name": "Orin", "compute_capability": "8.7",
    "total_memory_bytes": 64 * 2**30, "integrated": True, "can_map_host_memory": True,
    "jetson": {"model": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "36.3.0", "jetpack": "6.0",
               "nvpmodel": "MAXN", "jetson_clocks": "on"},
}
H100_ENV: dict[str, Any] = dict(ORIN_ENV, tensorrt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3",
                                compute_capability="9.0", integrated=False, jetson=None)


def orin_sidecar(**over: Any) -> EngineSidecar:
    fields: dict[str, Any] = dict(
        tensorrt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7", precision="fp16",
        cuda_version="12.6", driver_version="12.6", jetson=ORIN_ENV["jetson"],
        profiles=normalise_profiles({"x_t": nchw_range(4, tile=(64, 256, 512), batch=(1, 1, 4)),
                                     "t": ([1], [1], [4])}),
        io=[{"name": "x_t", "mode": "input", "dtype": "FLOAT", "shape": [-1, 4, -1, -1]}],
        onnx_path="exports/denoise.onnx", onnx_sha256="ab" * 32, builder_optimization_level=3,
        workspace_bytes=1 << 30, card={"bands": ["blue", "green", "red", "nir"], "ratio": 4})
    fields.update(over)
    return EngineSidecar(**fields)


# --- sidecar ----------------------------------------------------------------------------------------------------
def test_sidecar_round_trip_is_atomic_json(tmp_path: Path) -> None:
    side = orin_sidecar()
    path = sidecar_path_for(tmp_path / "denoise.engine")
    assert path.name == "denoise.engine.json"
    write_sidecar(side, path)
    assert read_sidecar(path) == side
    assert json.loads(path.read_text())["profiles"][0]["x_t"]["max"] == [4, 4, 512, 512]
    assert [p.name for p in tmp_path.iterdir()] == ["denoise.engine.json"]  # no temporary left behind


def test_sidecar_rejects_newer_version_and_garbage(tmp_path: Path) -> None:
    (tmp_path / "new.json").write_text(json.dumps({**json.loads(orin_sidecar().to_json()), "sidecar_version": 99}))
    with pytest.raises(ValueError, match="newer"):
        read_sidecar(tmp_path / "new.json")
    for text in ("{not json", "[]", '"a string"'):  # JSON that is no object: before, an AttributeError traceback
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ValueError, match="bad.json: not a valid engine sidecar"):
            read_sidecar(tmp_path / "bad.json")


def test_compatible_on_the_building_machine() -> None:
    assert check_compatible(orin_sidecar(), ORIN_ENV) == []


def test_mismatches_name_tensorrt_and_gpu() -> None:
    problems = check_compatible(orin_sidecar(), H100_ENV)
    assert len(problems) == 2
    assert "TensorRT 10.3.0.30" in problems[0] and "10.13.0.35" in problems[0]
    assert "compute capability 8.7" in problems[1] and "9.0" in problems[1]
    # Same architecture, another model (an RTX A4000 and an A10 are both 8.6): still refused.
    same_cc = check_compatible(orin_sidecar(gpu_name="NVIDIA RTX A4000", compute_capability="8.6"),
                               dict(ORIN_ENV, gpu_name="NVIDIA A10", compute_capability="8.6"))
    assert len(same_cc) == 1 and "NVIDIA A10" in same_cc[0]
    cpu_only = dict(ORIN_ENV, tensorrt_version=None, gpu_name=None, compute_capability=None)
    assert check_compatible(orin_sidecar(), cpu_only) == ["TensorRT is not installed on this machine",
                                                          "no CUDA GPU found on this machine"]


def test_mismatch_message_gives_the_rebuild_command() -> None:
    msg = mismatch_message("denoise.engine", orin_sidecar(), check_compatible(orin_sidecar(), H100_ENV))
    assert "Rebuild it on this machine: ddrf-export engine exports --optimization-level 3 --overwrite" in msg
    assert "--tile 256 --max-tile 512 --batch 1 --max-batch 4" in msg and "--workspace-mb 1024" in msg
    recorded = orin_sidecar(command="ddrf-export engine models/wv3 --tile 128 --overwrite")
    assert mismatch_message("e.plan", recorded, ["x"]).endswith("ddrf-export engine models/wv3 --tile 128 --overwrite")


def test_verify_engine_checks_file_and_machine(tmp_path: Path) -> None:
    engine = tmp_path / "denoise.engine"
    engine.write_bytes(b"plan bytes")
    write_sidecar(orin_sidecar(engine_sha256=sha256_file(engine)), sidecar_path_for(engine))
    assert verify_engine(engine, ORIN_ENV) is not None
    with pytest.raises(EngineMismatch, match="compute capability 8.7"):
        verify_engine(engine, H100_ENV)
    engine.write_bytes(b"another plan")
    with pytest.raises(EngineMismatch, match="sha256 differs"):
        verify_engine(engine, ORIN_ENV)
    sidecar_path_for(engine).unlink()
    with pytest.raises(EngineMismatch, match="no sidecar"):
        verify_engine(engine, ORIN_ENV)
    assert verify_engine(engine, ORIN_ENV, require_sidecar=False) is None


# --- profiles ---------------------------------------------------------------------------------------------------
def test_profiles_are_validated() -> None:
    assert normalise_profiles(None) == []
    one = normalise_profiles({"x": nchw_range(4, tile=(64, 256, 512), batch=(1, 2, 8))})
    assert one == [{"x": {"min": [1, 4, 64, 64], "opt": [2, 4, 256, 256], "max": [8, 4, 512, 512]}}]
    with pytest.raises(ValueError, match="min <= opt <= max"):
        normalise_profiles({"x": ([1, 4, 64, 64], [1, 4, 32, 32], [1, 4, 512, 512])})
    with pytest.raises(ValueError, match="ranks differ"):
        normalise_profiles([{"t": ([1], [1, 1], [4])}])


# --- operator check ---------------------------------------------------------------------------------------------
def test_test_graph_runs_in_onnxruntime_and_fp16_variant_agrees() -> None:
    x = np.random.default_rng(0).uniform(0, 1, (2, 4, 16, 12)).astype(np.float32)
    ref = ort_reference(make_attention_graph(), x)
    assert ref.shape == x.shape and np.isfinite(ref).all()
    assert float(np.max(np.abs(ort_reference(make_attention_graph(fp16=True), x) - ref))) < 1e-2


def test_supported_graph_passes_op_check() -> None:
    for fp16 in (False, True):
        assert check_tensorrt_ops(make_attention_graph(fp16=fp16), ("8.5", "8.6", "10", "10.15")) == []
    assert check_opset(make_attention_graph(), ("8.6", "10")) == []


def test_unsupported_ops_are_flagged_per_version(tmp_path: Path) -> None:
    model = make_attention_graph()
    model.graph.node.extend([
        helper.make_node("DDRFMadeUpOp", ["y"], ["z1"]),
        helper.make_node("Unique", ["y"], ["z2"]),  # N in every onnx-tensorrt matrix
        helper.make_node("LayerNormalization", ["y", "gn_scale"], ["z3"]),  # added in 8.6
        helper.make_node("Foo", ["y"], ["z4"], domain="com.example"),  # needs a plugin
    ])
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())  # also exercises the path form
    found = check_tensorrt_ops(path, ("8.5", "8.6", "10"))
    for v in ("8.5", "8.6", "10"):
        assert {("DDRFMadeUpOp", v), ("Unique", v), ("com.example::Foo", v)} <= set(found)
    assert ("LayerNormalization", "8.5") in found and ("LayerNormalization", "8.6") not in found


def test_ops_inside_subgraphs_and_opset_limits() -> None:
    branch = helper.make_graph([helper.make_node("Unique", ["x"], ["u"])], "branch", [],
                               [helper.make_tensor_value_info("u", 1, None)])
    model = make_attention_graph()
    model.graph.node.append(helper.make_node("If", ["cond"], ["u"], then_branch=branch, else_branch=branch))
    assert check_tensorrt_ops(model, ("8.6",)) == [("Unique", "8.6")]
    msgs = check_opset(make_attention_graph(opset=18), ("8.6", "10"))
    assert len(msgs) == 1 and "TensorRT 8.6" in msgs[0]
    with pytest.raises(ValueError, match="no operator table"):
        check_tensorrt_ops(model, ("7.1",))


# --- probing and the no-GPU paths -------------------------------------------------------------------------------
def test_probe_in_a_subprocess_never_crashes() -> None:
    code = ("import json; from ddrf.engines.probe import cuda_device_count, environment;"
            "print(json.dumps({'n': cuda_device_count(), 'env': environment()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] == got["env"]["device_count"] >= 0
    if not Path("/dev/nvidia0").exists() and not Path("/dev/nvhost-ctrl-gpu").exists():
        assert got["n"] == 0 and got["env"]["gpu_name"] is None


def test_tegra_release_parsing() -> None:
    line = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 2024"
    assert parse_tegra_release(line) == "36.3.0"
    assert jetpack_for_l4t("36.3.0") == "6.0" and jetpack_for_l4t("35.4.1") == "5.1.2"
    assert parse_tegra_release("garbage") is None and jetpack_for_l4t(None) is None


@pytest.mark.skipif(HAVE_TRT_GPU, reason="TensorRT and a GPU are present: the unavailable path does not apply")
def test_build_without_tensorrt_or_gpu_writes_nothing(tmp_path: Path) -> None:
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(make_attention_graph().SerializeToString())
    with pytest.raises(EngineUnavailable) as info:
        build_engine(onnx_path, tmp_path / "model.engine", profiles={"x": nchw_range(4, (8, 16, 32))},
                     timing_cache=tmp_path / "timing.cache")
    msg = str(info.value)
    assert ("TensorRT is not installed" in msg) or ("no CUDA GPU found" in msg)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_build_argument_errors_come_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", precision="int8")
    with pytest.raises(FileNotFoundError, match="ONNX file not found"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine")
    assert list(tmp_path.iterdir()) == []


class _TimingCacheConfig:
    """IBuilderConfig's timing-cache contract as TensorRT documents it (the stubs' docstrings; create_timing_cache
    in python/src/infer/pyCore.cpp returns the C++ pointer): create_timing_cache gives None for bytes this TensorRT
    cannot read; set_timing_cache refuses (False) a cache timed on another device unless ignore_mismatch, and
    pybind refuses None for its reference argument; get_timing_cache is None until a cache is attached."""

    def __init__(self) -> None:
        self.cache: bytes | None = None

    def create_timing_cache(self, data: bytes) -> bytes | None:
        return data if data in (b"", b"this device", b"another device") else None

    def set_timing_cache(self, cache: bytes | None, ignore_mismatch: bool) -> bool:
        if cache is None:
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache == b"another device" and not ignore_mismatch:
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> bytes | None:
        return self.cache


@pytest.mark.parametrize(("stored", "attached"), [(None, b""), (b"this device", b"this device"),
                                                  (b"another device", b""), (b"TensorRT 8.6 cache", b"")])
def test_an_unusable_timing_cache_starts_an_empty_one(tmp_path: Path, stored: bytes | None,
                                                      attached: bytes) -> None:
    from ddrf.engines.build import _load_timing_cache

    path = tmp_path / "timing.cache"
    if stored is not None:
        path.write_bytes(stored)
    config = _TimingCacheConfig()
    _load_timing_cache(config, path)  # type: ignore[arg-type]
    assert config.get_timing_cache() == attached  # a cache to build with, and to save after the build


@pytest.mark.skipif(HAVE_TRT_GPU, reason="TensorRT and a GPU are present: the unavailable path does not apply")
def test_backend_without_tensorrt_or_gpu_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "m.engine").write_bytes(b"plan")
    with pytest.raises(EngineUnavailable):
        TensorRTBackend(tmp_path / "m.engine")


def test_layer_profile_table_matches_trtexec_layout() -> None:
    rows = layer_profile_table({"conv": [1.0, 3.0, 2.0], "softmax": [0.5, 0.5, 2.0]}, runs=3)
    assert rows[0] == {"count": 3}
    conv, soft = rows[1], rows[2]
    assert conv == {"name": "conv", "timeMs": 6.0, "averageMs": 2.0, "medianMs": 2.0, "percentage": 66.66666666666667}
    assert soft["medianMs"] == 0.5 and abs(conv["percentage"] + soft["percentage"] - 100) < 1e-9


# --- a model directory ------------------------------------------------------------------------------------------
def _model_dir(root: Path) -> Path:
    """card.json + a tiny encoder (cond_0 full size, cond_1 half size) and denoiser with dynamic N, H, W."""
    from onnx import TensorProto as TP

    from ddrf.card import ModelCard, write_card

    def vi(name: str, dims: list[Any]) -> Any:
        return helper.make_tensor_value_info(name, TP.FLOAT, dims)

    def save(nodes: list[Any], ins: list[Any], outs: list[Any], name: str) -> None:
        g = helper.make_graph(nodes, name, ins, outs)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        (root / f"{name}.onnx").write_bytes(m.SerializeToString())

    img = lambda c: ["N", c, "H", "W"]  # noqa: E731
    save([helper.make_node("Concat", ["lms", "pan"], ["cond_0"], axis=1),
          helper.make_node("AveragePool", ["cond_0"], ["cond_1"], kernel_shape=[2, 2], strides=[2, 2])],
         [vi("lms", img(4)), vi("pan", img(1))], [vi("cond_0", img(5)), vi("cond_1", ["N", 5, "h", "w"])], "encoder")
    save([helper.make_node("Identity", ["x_t"], ["prediction"])],
         [vi("x_t", img(4)), vi("t", ["N"]), vi("cond_0", img(5)), vi("cond_1", ["N", 5, "h", "w"])],
         [vi("prediction", img(4))], "denoiser")
    write_card(ModelCard(model={"channel_mults": [1, 2]}, bands=["b", "g", "r", "n"]), root / "card.json")
    return root


def test_model_profiles_follow_the_condition_scales(tmp_path: Path) -> None:
    from ddrf.engines.build import _cond_scales, model_profile

    root = _model_dir(tmp_path)
    scales = _cond_scales(root / "encoder.onnx", 4)
    assert scales == {"cond_0": 1, "cond_1": 2}
    prof = model_profile(root / "denoiser.onnx", (2, 256, 512), (1, 1, 4), scales)
    assert prof["x_t"] == {"min": [1, 4, 2, 2], "opt": [1, 4, 256, 256], "max": [4, 4, 512, 512]}
    assert prof["cond_1"]["max"] == [4, 5, 256, 256] and prof["t"] == {"min": [1], "opt": [1], "max": [4]}


def test_model_engines_refuse_cleanly(tmp_path: Path) -> None:
    from ddrf.engines.build import build_model_engines

    root = _model_dir(tmp_path)
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(ValueError, match="multiples of 2"):
        build_model_engines(root, tile=255)
    (root / "encoder_fp16.plan").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_model_engines(root)
    if not HAVE_TRT_GPU:
        with pytest.raises(EngineUnavailable):
            build_model_engines(root, overwrite=True, timing_cache=root / "cache" / "timing.cache")
    assert sorted(p.name for p in root.iterdir()) == sorted(before + ["encoder_fp16.plan"])


def test_a_missing_tensorrt_engine_names_the_command_that_builds_it(tmp_path: Path) -> None:
    """`ddrf-run --backend tensorrt` on a model with ONNX graphs but no engines advised 'export them with ddrf-export
    onnx ...', which the folder already holds; the engines come from `ddrf-export engine`."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app
    from scenes_fixtures import SAMPLE

    result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--backend", "tensorrt",
                                      "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "sampler_k1_fp16.plan: missing; build the TensorRT engines" in result.output
    assert "ddrf-export engine" in result.output and "ddrf-export onnx" not in result.output


def test_ddrf_run_looks_for_the_engines_ddrf_export_engine_builds(tmp_path: Path) -> None:
    """`ddrf-export engine` writes FP16 engines, `<stem>_fp16.plan`; `ddrf-run --backend tensorrt` looked for
    `<stem>.plan`, so right after that command it said the engines were missing and advised running it again."""
    import hashlib
    import shutil

    from typer.testing import CliRunner

    from ddrf.model_dir import PLAN_SUFFIX, ModelDir, sidecar_path_for
    from ddrf.scenes.command import app
    from scenes_fixtures import SAMPLE

    model = Path(shutil.copytree(Path(__file__).parents[1] / "ddrf/assets/models/landsat_ratio2", tmp_path / "m",
                                 ignore=shutil.ignore_patterns("*.safetensors")))
    files = ModelDir.open(model)
    for stage, steps in files.graph_stages():  # where build_model_engines writes each engine and its sidecar
        plan = files.path(stage, "fp16", steps, PLAN_SUFFIX)
        plan.write_bytes(b"a stand-in engine")
        write_sidecar(orin_sidecar(engine_sha256=hashlib.sha256(b"a stand-in engine").hexdigest()),
                      sidecar_path_for(plan))
    result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--backend", "tensorrt",
                                      "--model", str(model), "--no-progress"])
    assert result.exit_code != 0 and "missing" not in result.output, result.output
    # found: then this machine lacks TensorRT, or (with it) is not the Orin the sidecar says the engine was built on
    assert ("TensorRT is not installed" in result.output
            or "sampler_k1_fp16.plan: this engine cannot run here" in result.output), result.output
