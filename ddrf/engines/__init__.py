"""ONNX -> TensorRT plans: probing, operator checks, building, sidecars. TensorRT itself is imported lazily."""
from ddrf.engines.build import EngineBuildError, build_engine, build_model_engines, nchw_range, normalise_profiles
from ddrf.engines.onnx_ops import check_opset, check_tensorrt_ops
from ddrf.engines.probe import EngineUnavailable, cuda_device_count, environment, load_tensorrt
from ddrf.engines.sidecar import (EngineMismatch, EngineSidecar, check_compatible, read_sidecar, sidecar_path_for,
                                  verify_engine, write_sidecar)

__all__ = [
    "EngineBuildError", "EngineMismatch", "EngineSidecar", "EngineUnavailable", "build_engine", "build_model_engines",
    "check_compatible",
    "check_opset", "check_tensorrt_ops", "cuda_device_count", "environment", "load_tensorrt", "nchw_range",
    "normalise_profiles", "read_sidecar", "sidecar_path_for", "verify_engine", "write_sidecar",
]
