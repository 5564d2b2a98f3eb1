"""Native TensorRT backend: a serialized plan run through the name-based API (TensorRT 8.5..11). Never imports torch.

Flow per run: set_input_shape for every input, read the output shapes, (re)allocate buffers when a shape grew,
copy inputs in, execute_async_v3 on our stream, copy outputs out, synchronise. Options:
- use_cuda_graph: capture copy-in/execute/copy-out once per input-shape set and replay it with one launch;
- zero_copy: mapped pinned host memory bound directly as the engine's I/O (Jetson: CPU and GPU share DRAM).
Before anything is deserialised, the sidecar is checked against this machine (ddrf.engines.sidecar.verify_engine).
"""
from __future__ import annotations

import json
import logging
import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ddrf.engines.probe import dims_to_list, environment, gpu_properties, load_tensorrt, make_logger
from ddrf.engines.sidecar import EngineSidecar, verify_engine
from ddrf.model_dir import CARD_METADATA_KEY
from ddrf.runtime.cuda import (CudaError, CudaGraph, DeviceBuffer, HostBuffer, Stream, enable_mapped_memory,
                               require_device)

if TYPE_CHECKING:
    import tensorrt as trt_t

log = logging.getLogger("ddrf.runtime")


def layer_profile_table(times: Mapping[str, Sequence[float]], runs: int) -> list[dict[str, Any]]:
    """Per-layer times in trtexec's --exportProfile layout: [{"count": runs}, {name, timeMs, averageMs,
    medianMs, percentage}, ...] in execution order; timeMs is the total over the runs."""
    totals = {name: float(sum(ms)) for name, ms in times.items()}
    grand = sum(totals.values()) or 1.0
    rows: list[dict[str, Any]] = [{"count": int(runs)}]
    for name, ms in times.items():
        rows.append({"name": name, "timeMs": totals[name], "averageMs": totals[name] / max(runs, 1),
                     "medianMs": float(statistics.median(ms)) if ms else 0.0,
                     "percentage": 100.0 * totals[name] / grand})
    return rows


def _make_profiler(trt: Any) -> Any:
    class _LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.times: dict[str, list[float]] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times.setdefault(layer_name, []).append(float(ms))

    return _LayerTimes()


class EnqueueFailed(RuntimeError):
    """execute_async_v3 returned False. Under stream capture this is how TensorRT says the engine holds work that
    cannot be captured (trtexec's own capture: 'the enqueue call may return false if the current CUDA graph capture
    fails'), so a graph capture treats it as a failed capture, like an error from cudaStreamEndCapture."""


class _Tensor:
    """One engine I/O tensor: its buffers and the shape they were last sized for."""

    def __init__(self, name: str, is_input: bool, dtype: np.dtype[Any]) -> None:
        self.name, self.is_input, self.dtype = name, is_input, dtype
        self.shape: tuple[int, ...] = ()
        self.host: HostBuffer | None = None
        self.device: DeviceBuffer | None = None

    def device_ptr(self) -> int:
        if self.device is not None:
            return self.device.device_ptr
        assert self.host is not None
        return self.host.device_ptr  # zero-copy: the mapped host buffer is the device buffer

    def host_view(self) -> np.ndarray:
        assert self.host is not None
        return self.host.view(self.shape, self.dtype)

    def ensure(self, shape: tuple[int, ...], zero_copy: bool) -> bool:
        """Size the buffers for `shape`; True when they were reallocated (bound addresses changed)."""
        self.shape = shape
        nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        if self.host is not None and self.host.nbytes >= nbytes:
            return False
        self.close()
        self.host = HostBuffer(nbytes, mapped=zero_copy)
        self.device = None if zero_copy else DeviceBuffer(nbytes)
        return True

    def close(self) -> None:
        for buf in (self.host, self.device):
            if buf is not None:
                buf.close()
        self.host = self.device = None


class TensorRTBackend:
    """Runs one TensorRT engine. Matches the runtime's Backend protocol (name, input_names, output_names, run)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike[str], sidecar_path: str | os.PathLike[str] | None = None,
                 use_cuda_graph: bool = False, zero_copy: bool = False, device: int = 0,
                 require_sidecar: bool = True) -> None:
        self.engine_path = Path(engine_path)
        self._trt = load_tensorrt()  # EngineUnavailable first: no TensorRT object is created without a GPU
        self.sidecar: EngineSidecar | None = verify_engine(self.engine_path, environment(device), sidecar_path,
                                                           require_sidecar)
        require_device(device)
        if zero_copy:
            self._check_zero_copy(device)
        self.use_cuda_graph, self.zero_copy = use_cuda_graph, zero_copy
        self._logger = make_logger(self._trt)
        self._runtime: trt_t.Runtime = self._trt.Runtime(self._logger)
        self._engine: trt_t.ICudaEngine = self._deserialize()
        self._context: trt_t.IExecutionContext = self._engine.create_execution_context()
        self._stream = Stream()
        self._tensors = self._discover()
        self.input_names = [t.name for t in self._tensors.values() if t.is_input]
        self.output_names = [t.name for t in self._tensors.values() if not t.is_input]
        self._graph: CudaGraph | None = None
        self._graph_key: tuple[tuple[int, ...], ...] | None = None
        self._profile_context: trt_t.IExecutionContext | None = None

    # --- set-up -----------------------------------------------------------------------------------------------
    @staticmethod
    def _check_zero_copy(device: int) -> None:
        props = gpu_properties(device) or {}
        if not props.get("can_map_host_memory"):
            raise CudaError(f"device {device} cannot map host memory; zero_copy needs it")
        if not props.get("integrated"):
            log.warning("zero_copy on a discrete GPU reads host memory over PCIe on every access; it is meant "
                        "for integrated GPUs (Jetson)")
        enable_mapped_memory()

    def _deserialize(self) -> "trt_t.ICudaEngine":
        engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            details = "; ".join(self._logger.errors) or "no details"
            raise RuntimeError(f"{self.engine_path}: TensorRT {self._trt.__version__} could not deserialise the "
                               f"engine ({details})")
        return engine

    def _discover(self) -> dict[str, _Tensor]:
        trt, engine = self._trt, self._engine
        tensors = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            try:
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            except TypeError as exc:  # e.g. BF16/FP8 I/O: numpy has no such type
                raise TypeError(f"engine tensor {name!r} has type {engine.get_tensor_dtype(name)} that numpy "
                                "cannot hold; export with FP32/FP16 I/O") from exc
            tensors[name] = _Tensor(name, is_input, dtype)
        return tensors

    # --- running ----------------------------------------------------------------------------------------------
    def _prepare(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise KeyError(f"engine inputs are {self.input_names}; missing {missing}, unexpected {extra}")
        return {n: np.ascontiguousarray(inputs[n], dtype=self._tensors[n].dtype) for n in self.input_names}

    def _set_shapes(self, context: "trt_t.IExecutionContext", arrays: Mapping[str, np.ndarray]) -> None:
        for name, arr in arrays.items():
            if not context.set_input_shape(name, arr.shape):
                lo, opt, hi = (dims_to_list(d) for d in self._engine.get_tensor_profile_shape(name, 0))
                raise ValueError(f"input {name!r} shape {arr.shape} is outside the engine's profile "
                                 f"(min {lo}, opt {opt}, max {hi}); rebuild with a wider one")

    def profile_range(self, name: str) -> tuple[list[int], list[int]]:
        """(min, max) shape the engine's optimisation profile allows for an input, so callers can refuse a tile
        before any work instead of failing window by window."""
        lo, _, hi = (dims_to_list(d) for d in self._engine.get_tensor_profile_shape(name, 0))
        return lo, hi

    def _size_outputs(self, context: "trt_t.IExecutionContext", arrays: Mapping[str, np.ndarray]) -> bool:
        """Size every buffer for this run; True when any was reallocated."""
        grew = False
        for name, t in self._tensors.items():
            shape = arrays[name].shape if t.is_input else tuple(dims_to_list(context.get_tensor_shape(name)))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output {name!r} has a data-dependent shape {shape}; not supported")
            grew |= t.ensure(tuple(int(d) for d in shape), self.zero_copy)
        return grew

    def _bind(self, context: "trt_t.IExecutionContext") -> None:
        for name, t in self._tensors.items():
            if not context.set_tensor_address(name, t.device_ptr()):
                raise RuntimeError(f"set_tensor_address failed for {name!r}")

    def _enqueue(self, context: "trt_t.IExecutionContext") -> None:
        """Copy in, execute, copy out: all asynchronous on our stream (nothing to copy with zero-copy)."""
        if not self.zero_copy:
            for t in self._tensors.values():
                if t.is_input and t.device is not None:
                    t.device.upload(t.host_view(), self._stream)
        if not context.execute_async_v3(self._stream.handle):
            raise EnqueueFailed(f"execute_async_v3 failed: {'; '.join(self._logger.errors) or 'no details'}")
        if not self.zero_copy:
            for t in self._tensors.values():
                if not t.is_input and t.device is not None:
                    t.device.download(t.host_view(), self._stream)

    def _launch_graph(self, key: tuple[tuple[int, ...], ...], grew: bool) -> None:
        if self._graph is None or grew or key != self._graph_key:
            self._drop_graph()
            self._enqueue(self._context)  # TensorRT asks for one run after a shape change before capture
            self._stream.synchronize()
            try:
                self._graph = CudaGraph.capture(self._stream, lambda: self._enqueue(self._context))
                self._graph_key = key
            except (CudaError, EnqueueFailed) as exc:  # some engines (plugins, loops) cannot be captured
                log.warning("CUDA graph capture failed (%s); running without graphs", exc)
                self.use_cuda_graph = False
                return  # this run's results are already in the host buffers
        assert self._graph is not None
        self._graph.launch(self._stream)

    def run(self, inputs: Mapping[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
        """Outputs for one batch of inputs, as new numpy arrays (the buffers are reused by the next run)."""
        arrays = self._prepare(inputs)
        self._set_shapes(self._context, arrays)
        grew = self._size_outputs(self._context, arrays)
        if grew:
            self._bind(self._context)
        for name, arr in arrays.items():
            np.copyto(self._tensors[name].host_view(), arr)
        if self.use_cuda_graph:
            self._launch_graph(tuple(a.shape for a in arrays.values()), grew)
        else:
            self._enqueue(self._context)
        self._stream.synchronize()
        return {n: self._tensors[n].host_view().copy() for n in self.output_names}

    # --- inspection -------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        """The card of the ONNX graph the engine was built from, as the sidecar recorded it (as an ONNX graph's)."""
        card = self.sidecar.card if self.sidecar else None
        return {CARD_METADATA_KEY: json.dumps(card)} if card else {}

    def profile(self, inputs: Mapping[str, np.ndarray], runs: int = 10, warmup: int = 2) -> list[dict[str, Any]]:
        """Per-layer times over `runs` executions (trtexec --exportProfile layout). Uses a second execution
        context carrying the profiler, so the main context keeps running unprofiled (and graph-capturable)."""
        self.run(inputs)  # sizes and fills the shared buffers
        if self._profile_context is None:
            self._profile_context = self._engine.create_execution_context()
        ctx = self._profile_context
        arrays = self._prepare(inputs)
        self._set_shapes(ctx, arrays)
        self._bind(ctx)
        for _ in range(warmup):
            self._enqueue(ctx)
        self._stream.synchronize()
        profiler = _make_profiler(self._trt)
        ctx.profiler = profiler
        for _ in range(runs):
            self._enqueue(ctx)
            self._stream.synchronize()
        return layer_profile_table(profiler.times, runs)

    def layer_information(self) -> Any:
        """The engine inspector's JSON (layers, tactics, formats; full detail when built with DETAILED)."""
        inspector = self._engine.create_engine_inspector()
        return json.loads(inspector.get_engine_information(self._trt.LayerInformationFormat.JSON))

    # --- teardown ---------------------------------------------------------------------------------------------
    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.close()
        self._graph, self._graph_key = None, None

    def close(self) -> None:
        """Free GPU resources: graph, buffers, contexts, engine, stream (contexts before the engine)."""
        self._drop_graph()
        for t in getattr(self, "_tensors", {}).values():
            t.close()
        self._profile_context = None
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)
        if hasattr(self, "_stream"):
            self._stream.close()

    def __enter__(self) -> "TensorRTBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
