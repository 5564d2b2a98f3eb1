"""Inference backends behind one interface: a named-tensor `run`. The sampler never knows which one it drives.

`REGISTRY` is the one list of backend names: ddrf-run, ddrf-eval, ddrf-profile (and its JSON schema, checked by a
test) take theirs from it. Adding a backend means a `BackendInfo` here and a branch in `open_backend`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str  # "cpu" or "cuda": where its tensors live (GPU memory is probed only for "cuda")
    file_suffix: str  # what it loads from a model directory: ".onnx" graphs or ".plan" engines
    ort_provider: str | None = None  # the ONNX Runtime execution provider, for ONNX Runtime backends
    runtime: bool = True  # ddrf-run can use it; False: the profiler's PyTorch-eager reference only
    precision: str = "fp32"  # the graphs or engines it loads unless told: `ddrf-export engine` builds FP16 ones only


REGISTRY: dict[str, BackendInfo] = {b.name: b for b in (
    BackendInfo("ort-cpu", "cpu", ".onnx", "CPUExecutionProvider"),
    BackendInfo("ort-cuda", "cuda", ".onnx", "CUDAExecutionProvider"),
    BackendInfo("ort-tensorrt", "cuda", ".onnx", "TensorrtExecutionProvider"),
    BackendInfo("tensorrt", "cuda", ".plan", precision="fp16"),
    BackendInfo("torch", "cpu", ".safetensors", runtime=False),
)}
ORT_PROVIDERS = {b.name: b.ort_provider for b in REGISTRY.values() if b.ort_provider}
BACKENDS = tuple(b.name for b in REGISTRY.values() if b.runtime)  # what ddrf-run and ddrf-eval accept
PROFILE_BACKENDS = tuple(REGISTRY)  # what ddrf-profile times
GPU_BACKENDS = tuple(b.name for b in REGISTRY.values() if b.device == "cuda")


def backend_info(name: str) -> BackendInfo:
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return REGISTRY[name]


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (missing library, no device, silent fallback refused)."""


class Backend(Protocol):
    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
        """`release`: the last run of a burst (a staged model's scene stages): memory it holds for the next run
        may go back to the system."""

    def metadata(self) -> dict[str, str]: ...


class OrtBackend:
    """One ONNX Runtime session; refuses to run on another provider than asked unless `allow_fallback`."""

    def __init__(self, path: str | os.PathLike[str], kind: str = "ort-cpu", threads: int | None = None,
                 allow_fallback: bool = False, once: bool = False) -> None:
        import onnxruntime as ort

        if kind not in ORT_PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime backend {kind!r}; choose one of {', '.join(ORT_PROVIDERS)}")
        wanted = ORT_PROVIDERS[kind]
        if wanted not in ort.get_available_providers():
            if not allow_fallback:
                raise BackendUnavailable(
                    f"{kind}: ONNX Runtime here has no {wanted} (has {', '.join(ort.get_available_providers())}); "
                    "install onnxruntime-gpu or choose --backend ort-cpu")
            wanted = ORT_PROVIDERS["ort-cpu"]
        options = ort.SessionOptions()
        # Idle pool threads sleep instead of spinning: the encoder's and denoiser's pools (and the reader thread)
        # take turns on the same cores. ORT's shared global pool is not in its public Python API (only the private
        # capi.set_global_thread_pool_sizes, with no spin control), so each session keeps its pool, spinning off.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.inter_op_num_threads = 1
        # No pre-planned block for every intermediate tensor of a window (ORT's memory pattern): the arena reuses
        # freed blocks instead. For the bundled ratio-2 model's 576 x 576 window the peak fell from 900 to 534 MB
        # at the same speed (docs/BENCHMARKS.md, sixth session).
        options.enable_mem_pattern = False
        # A graph run once per scene (the scene-statistics pass) shrinks its arena at the end of each run, so its
        # blocks go back to the system instead of staying reserved while every window runs. It keeps the arena
        # during the run: without one each tensor is a fresh mmap under ddrf-run's fixed mmap threshold
        # (ddrf.cli.bounded_heap), which made the pass 2.5x slower (docs/BENCHMARKS.md, thirteenth session).
        self.run_options, self.release_options = ort.RunOptions(), ort.RunOptions()
        self.release_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        if once:
            self.run_options = self.release_options
        if threads:
            options.intra_op_num_threads = threads
        providers = [wanted] if wanted == "CPUExecutionProvider" else [wanted, "CPUExecutionProvider"]
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: cannot load ONNX model ({str(exc).splitlines()[0]})") from exc
        in_use = self.session.get_providers()[0]
        if in_use != wanted and not allow_fallback:
            raise BackendUnavailable(f"{kind}: ONNX Runtime fell back to {in_use}; refusing a silent fallback")
        self.name = kind if in_use == ORT_PROVIDERS.get(kind) else f"{kind}->{in_use}"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_shapes = {i.name: list(i.shape) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_types = {i.name: i.type for i in self.session.get_inputs()}

    def input_dtype(self, name: str) -> np.dtype:
        return np.dtype(np.float16) if self._input_types[name] == "tensor(float16)" else np.dtype(np.float32)

    def run(self, inputs: dict[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
        feed = {n: np.ascontiguousarray(inputs[n], dtype=self.input_dtype(n)) for n in self.input_names}
        outputs = self.session.run(self.output_names, feed, self.release_options if release else self.run_options)
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outputs)}

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)


def open_backend(path: str | os.PathLike[str], kind: str = "ort-cpu", threads: int | None = None,
                 allow_fallback: bool = False, once: bool = False) -> Backend:
    """Open an ONNX graph (ONNX Runtime) or a TensorRT plan (native TensorRT, sidecar checked); `once`: the graph
    runs once per scene, not per window."""
    if not backend_info(kind).runtime:
        raise ValueError(f"{kind}: not a runtime backend; choose one of {', '.join(BACKENDS)}")
    if kind == "tensorrt":
        from ddrf.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path)
    return OrtBackend(path, kind, threads, allow_fallback, once)
