"""TensorRT on a real GPU: build an FP16 engine from a small hand-built ONNX, run it, compare with ONNX Runtime (CPU).

Skipped unless a CUDA device and a real TensorRT (not just tensorrt-stubs) are present. The graph builder below is
also used by the CPU tests (test_engines.py), which check that both variants load in ONNX Runtime / pass the op check.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ddrf.engines.probe import cuda_device_count, tensorrt_version

IR_VERSION = 8  # onnxruntime loads IR 8 at opset 17; newer onnx defaults to an IR some runtimes refuse
OPSET = 17


def make_attention_graph(fp16: bool = False, channels: int = 4, hidden: int = 8, groups: int = 2,
                         opset: int = OPSET, seed: int = 0) -> Any:
    """conv -> GroupNorm (as Reshape + InstanceNormalization + Reshape + affine) -> softmax self-attention ->
    1x1 conv + residual. Dynamic N, H, W; FP32 I/O. fp16=True stores weights and activations in FP16 but keeps the
    normalisation and the softmax in FP32 through Casts (what the DDRF FP16 export does; TensorRT 11 needs it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    wdt = np.float16 if fp16 else np.float32
    act = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def w(name: str, *shape: int, scale: float = 0.2) -> str:
        return const(name, (rng.standard_normal(shape) * scale).astype(wdt))

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def cast(x: str, to: int, out: str) -> str:
        return node("Cast", [x], out, to=to) if fp16 else x

    x = cast("x", TensorProto.FLOAT16, "x_half")
    h = node("Conv", [x, w("w_in", hidden, channels, 3, 3), w("b_in", hidden, scale=0.05)], "h", pads=[1, 1, 1, 1])
    hshape = node("Shape", [h], "h_shape")
    g = node("Reshape", [h, const("grouped", np.array([0, groups, -1], np.int64))], "h_grouped")
    g = cast(g, TensorProto.FLOAT, "h_grouped_f32")
    gn = node("InstanceNormalization", [g, const("gn_scale", np.ones(groups, np.float32)),
                                        const("gn_bias", np.zeros(groups, np.float32))], "h_norm", epsilon=1e-5)
    gn = cast(gn, act, "h_norm_act")
    hn = node("Reshape", [gn, hshape], "h_norm4")
    hn = node("Mul", [hn, const("gamma", (1 + 0.1 * rng.standard_normal((1, hidden, 1, 1))).astype(wdt))], "h_g")
    hn = node("Add", [hn, const("beta", (0.1 * rng.standard_normal((1, hidden, 1, 1))).astype(wdt))], "h_gb")
    flat = const("flat", np.array([0, hidden, -1], np.int64))
    q, k, v = (node("Reshape", [node("Conv", [hn, w(f"w_{n}", hidden, hidden, 1, 1)], n), flat], f"{n}_flat")
               for n in ("q", "k", "v"))
    qt = node("Transpose", [q], "q_t", perm=[0, 2, 1])
    vt = node("Transpose", [v], "v_t", perm=[0, 2, 1])
    s = node("Mul", [node("MatMul", [qt, k], "scores"), const("scale", np.array(hidden ** -0.5, wdt))], "scaled")
    s = cast(s, TensorProto.FLOAT, "scaled_f32")
    a = node("Softmax", [s], "attn", axis=-1)
    a = cast(a, act, "attn_act")
    o = node("Transpose", [node("MatMul", [a, vt], "mixed")], "mixed_t", perm=[0, 2, 1])
    o = node("Add", [node("Reshape", [o, hshape], "mixed4"), h], "res")
    y = node("Add", [node("Conv", [o, w("w_out", channels, hidden, 1, 1)], "out_conv"), x], "y_act")
    cast(y, TensorProto.FLOAT, "y") if fp16 else node("Identity", [y], "y")
    dims: list[Any] = ["N", channels, "H", "W"]
    graph = helper.make_graph(nodes, "ddrf_attention_test",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def make_loop_graph(trips: int = 3, channels: int = 4) -> Any:
    """x -> `trips` rounds of y = 0.5 y + 1 in an ONNX Loop: TensorRT's loop layers, which its CUDA graph guidance
    names among the work stream capture may refuse. Dynamic N, H, W; FP32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dims: list[Any] = ["N", channels, "H", "W"]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Mul", ["y_in", "half"], ["y_half"]),
         helper.make_node("Add", ["y_half", "one"], ["y_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_in", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_out", TensorProto.FLOAT, dims)])
    inits = [numpy_helper.from_array(np.array(trips, np.int64), "trips"),
             numpy_helper.from_array(np.array(True), "keep_going"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    graph = helper.make_graph([helper.make_node("Loop", ["trips", "keep_going", "x"], ["y"], body=body)],
                              "ddrf_loop_test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model

def ort_reference(model: Any, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["y"], {"x": x})[0])


def _available() -> bool:
    return cuda_device_count() > 0 and tensorrt_version() is not None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _available(), reason="needs a CUDA GPU and TensorRT")]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import onnx

    from ddrf.engines.build import build_engine, nchw_range

    d = tmp_path_factory.mktemp("trt")
    major = int(str(tensorrt_version()).split(".")[0])
    reference = make_attention_graph(fp16=False)
    onnx.save(make_attention_graph(fp16=major >= 11), d / "model.onnx")  # TRT 11: FP16 must be in the ONNX
    sidecar = build_engine(d / "model.onnx", d / "model.engine", precision="fp16",
                           profiles={"x": nchw_range(4, tile=(8, 16, 32), batch=(1, 2, 4))},
                           workspace_bytes=1 << 30, optimization_level=3, timing_cache=d / "timing.cache")
    return {"dir": d, "engine": d / "model.engine", "sidecar": sidecar, "reference": reference}


def _x(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


def test_engine_sidecar_and_cache_written(built: dict[str, Any]) -> None:
    from ddrf.engines.probe import environment
    from ddrf.engines.sidecar import read_sidecar, sha256_file, sidecar_path_for

    side = read_sidecar(sidecar_path_for(built["engine"]))
    env = environment()
    assert side.tensorrt_version == env["tensorrt_version"]
    assert side.compute_capability == env["compute_capability"] and side.gpu_name == env["gpu_name"]
    assert side.precision == "fp16" and side.profiles[0]["x"]["max"] == [4, 4, 32, 32]
    assert side.engine_sha256 == sha256_file(built["engine"])
    assert (built["dir"] / "timing.cache").stat().st_size > 0


@pytest.mark.parametrize("shape", [(1, 4, 16, 16), (2, 4, 32, 32), (4, 4, 8, 8)])
def test_fp16_engine_matches_onnxruntime(built: dict[str, Any], shape: tuple[int, ...]) -> None:
    from ddrf.runtime.tensorrt_backend import TensorRTBackend

    x = _x(shape)
    with TensorRTBackend(built["engine"]) as be:
        assert be.input_names == ["x"] and be.output_names == ["y"]
        y = be.run({"x": x})["y"]
    ref = ort_reference(built["reference"], x)
    assert y.shape == ref.shape
    assert float(np.max(np.abs(y - ref))) <= 1e-2


def test_cuda_graph_and_zero_copy_agree(built: dict[str, Any]) -> None:
    from ddrf.engines.probe import gpu_properties
    from ddrf.runtime.tensorrt_backend import TensorRTBackend

    a, b = _x((2, 4, 16, 16), 2), _x((1, 4, 32, 32), 3)
    with TensorRTBackend(built["engine"]) as plain:
        want_a, want_b = plain.run({"x": a})["y"], plain.run({"x": b})["y"]
    with TensorRTBackend(built["engine"], use_cuda_graph=True) as g:
        for _ in range(2):  # capture, then replay
            np.testing.assert_allclose(g.run({"x": a})["y"], want_a, atol=1e-3)
        np.testing.assert_allclose(g.run({"x": b})["y"], want_b, atol=1e-3)  # new shape: recapture
    if (gpu_properties() or {}).get("can_map_host_memory"):
        with TensorRTBackend(built["engine"], zero_copy=True) as z:
            np.testing.assert_allclose(z.run({"x": a})["y"], want_a, atol=1e-3)


def test_profile_and_inspector(built: dict[str, Any]) -> None:
    from ddrf.runtime.tensorrt_backend import TensorRTBackend

    with TensorRTBackend(built["engine"]) as be:
        rows = be.profile({"x": _x((1, 4, 16, 16))}, runs=5)
        info = be.layer_information()
    assert rows[0] == {"count": 5} and len(rows) > 1
    assert set(rows[1]) == {"name", "timeMs", "averageMs", "medianMs", "percentage"}
    assert abs(sum(r["percentage"] for r in rows[1:]) - 100.0) < 1e-6
    assert "Layers" in info


def test_shape_outside_profile_is_refused(built: dict[str, Any]) -> None:
    from ddrf.runtime.tensorrt_backend import TensorRTBackend

    with TensorRTBackend(built["engine"]) as be, pytest.raises(ValueError, match="outside the engine's profile"):
        be.run({"x": _x((1, 4, 64, 64))})


def test_engine_from_another_gpu_is_refused(built: dict[str, Any], tmp_path: Path) -> None:
    from ddrf.engines.sidecar import EngineMismatch, read_sidecar, sidecar_path_for, write_sidecar
    from ddrf.runtime.tensorrt_backend import TensorRTBackend

    other = read_sidecar(sidecar_path_for(built["engine"]))
    other.gpu_name, other.compute_capability = "Orin", "8.7" if other.compute_capability != "8.7" else "9.0"
    write_sidecar(other, tmp_path / "other.json")
    with pytest.raises(EngineMismatch, match="Rebuild it on this machine"):
        TensorRTBackend(built["engine"], sidecar_path=tmp_path / "other.json")


def test_timing_cache_reused_and_parse_errors_write_nothing(built: dict[str, Any], tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    from ddrf.engines.build import EngineBuildError, build_engine, nchw_range

    shutil.copy(built["dir"] / "timing.cache", tmp_path / "timing.cache")
    build_engine(built["dir"] / "model.onnx", tmp_path / "again.engine", precision="fp16",
                 profiles={"x": nchw_range(4, tile=(8, 16, 32), batch=(1, 2, 4))},
                 timing_cache=tmp_path / "timing.cache")
    assert (tmp_path / "again.engine").is_file()
    bad = make_attention_graph()
    bad.graph.node.append(helper.make_node("DDRFMadeUpOp", ["y"], ["z"]))
    onnx.save(bad, tmp_path / "bad.onnx")
    before = set(tmp_path.iterdir())
    with pytest.raises(EngineBuildError, match="could not parse"):
        build_engine(tmp_path / "bad.onnx", tmp_path / "bad.engine", profiles={"x": nchw_range(4, (8, 8, 8))})
    assert set(tmp_path.iterdir()) == before


def test_a_damaged_timing_cache_is_replaced_not_fatal(built: dict[str, Any], tmp_path: Path) -> None:
    """create_timing_cache returns None for bytes it cannot read: the build starts an empty cache and saves it."""
    from ddrf.engines.build import build_engine, nchw_range

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a TensorRT timing cache")
    build_engine(built["dir"] / "model.onnx", tmp_path / "m.engine", precision="fp16",
                 profiles={"x": nchw_range(4, tile=(8, 16, 32), batch=(1, 2, 4))}, timing_cache=cache)
    assert (tmp_path / "m.engine").is_file()
    assert cache.read_bytes() != b"not a TensorRT timing cache" and cache.stat().st_size > 0


def test_cuda_graph_falls_back_where_capture_is_refused(tmp_path: Path) -> None:
    """An engine whose work stream capture refuses (TensorRT returns False from execute_async_v3 under capture, or
    cudaStreamEndCapture fails) runs without graphs and gives the plain run's results, not an error."""
    import onnx

    from ddrf.engines.build import build_engine, nchw_range
    from ddrf.runtime.tensorrt_backend import TensorRTBackend

    model = make_loop_graph()
    onnx.save(model, tmp_path / "loop.onnx")
    build_engine(tmp_path / "loop.onnx", tmp_path / "loop.engine", precision="fp32",
                 profiles={"x": nchw_range(4, tile=(8, 16, 32), batch=(1, 2, 4))})
    x = _x((2, 4, 16, 16), 4)
    with TensorRTBackend(tmp_path / "loop.engine", use_cuda_graph=True) as g:
        for _ in range(2):  # capture (or its refusal), then replay or the plain path
            np.testing.assert_allclose(g.run({"x": x})["y"], ort_reference(model, x), atol=1e-5)
