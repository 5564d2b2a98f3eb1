"""Thin, explicit CUDA memory and streams over cuda-python (cuda.bindings.runtime). Never imports torch.

Every cudart call returns (error, value...); `check` turns a failure into CudaError with CUDA's own message.
Buffers free themselves on close() (and, as a fallback, when collected).
"""
from __future__ import annotations

import ctypes
from typing import Any, Callable

import numpy as np

from ddrf.engines.probe import EngineUnavailable, cudart, cuda_device_count, cuda_error_text


class CudaError(RuntimeError):
    pass


def rt() -> Any:
    """The cudart module; EngineUnavailable when cuda-python is missing."""
    mod = cudart()
    if mod is None:
        raise EngineUnavailable("cuda-python is not installed (pip install cuda-python)")
    return mod


def check(result: Any, what: str = "CUDA call") -> Any:
    """Unpack a cudart (err, *values) result: the value (or tuple of values), CudaError on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    r = rt()
    if err != r.cudaError_t.cudaSuccess:
        text = r.cudaGetErrorString(err)[1].decode()
        raise CudaError(f"{what} failed: {err.name if hasattr(err, 'name') else err}: {text}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def require_device(device: int = 0) -> None:
    """Select `device`, or EngineUnavailable with the driver's reason when there is none."""
    n = cuda_device_count()
    if n == 0:
        why = cuda_error_text()
        raise EngineUnavailable("no CUDA GPU found" + (f" ({why})" if why else ""))
    if device >= n:
        raise EngineUnavailable(f"CUDA device {device} requested, {n} present")
    check(rt().cudaSetDevice(device), "cudaSetDevice")


def enable_mapped_memory() -> None:
    """Ask for host-mapped memory before the context starts. Unified addressing (every 64-bit platform) maps
    pinned memory anyway, so 'already active' is not an error."""
    r = rt()
    err = r.cudaSetDeviceFlags(r.cudaDeviceMapHost)[0]
    if err not in (r.cudaError_t.cudaSuccess, r.cudaError_t.cudaErrorSetOnActiveProcess):
        check((err,), "cudaSetDeviceFlags(cudaDeviceMapHost)")


class Stream:
    """A non-blocking CUDA stream (does not serialise with the legacy default stream)."""

    def __init__(self) -> None:
        r = rt()
        self._stream: Any = check(r.cudaStreamCreateWithFlags(r.cudaStreamNonBlocking), "cudaStreamCreate")

    @property
    def raw(self) -> Any:
        return self._stream

    @property
    def handle(self) -> int:
        return int(self._stream)

    def synchronize(self) -> None:
        check(rt().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self._stream is not None:
            rt().cudaStreamDestroy(self._stream)
            self._stream = None


class _Allocation:
    """CUDA memory released once, explicitly by close() or when garbage-collected."""

    ptr: int = 0

    def _free(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.ptr:
            self._free()
            self.ptr = 0

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class DeviceBuffer(_Allocation):
    """Device memory of a fixed byte size; regrown by the owner when a larger shape arrives."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.ptr: int = int(check(rt().cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))

    @property
    def device_ptr(self) -> int:
        return self.ptr

    def upload(self, host: np.ndarray, stream: Stream) -> None:
        """Asynchronous host -> device copy of a C-contiguous array (pinned host memory makes it truly async)."""
        r = rt()
        assert host.flags.c_contiguous and host.nbytes <= self.nbytes
        check(r.cudaMemcpyAsync(self.ptr, host.ctypes.data, host.nbytes,
                                r.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.raw), "cudaMemcpyAsync H2D")

    def download(self, host: np.ndarray, stream: Stream) -> None:
        r = rt()
        assert host.flags.c_contiguous and host.nbytes <= self.nbytes
        check(r.cudaMemcpyAsync(host.ctypes.data, self.ptr, host.nbytes,
                                r.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.raw), "cudaMemcpyAsync D2H")

    def _free(self) -> None:
        rt().cudaFree(self.ptr)


class HostBuffer(_Allocation):
    """Page-locked host memory. mapped=True also maps it into the device address space (zero-copy): on Jetson,
    where CPU and GPU share DRAM, the GPU then reads and writes it directly and no copies are needed."""

    def __init__(self, nbytes: int, mapped: bool = False) -> None:
        r = rt()
        self.nbytes = max(int(nbytes), 1)
        flags = r.cudaHostAllocMapped if mapped else r.cudaHostAllocDefault
        self.ptr: int = int(check(r.cudaHostAlloc(self.nbytes, flags), f"cudaHostAlloc({self.nbytes})"))
        self.mapped = mapped
        self._device_ptr = int(check(r.cudaHostGetDevicePointer(self.ptr, 0), "cudaHostGetDevicePointer")) \
            if mapped else 0

    @property
    def device_ptr(self) -> int:
        if not self.mapped:
            raise CudaError("pinned host buffer is not mapped into the device address space")
        return self._device_ptr

    def view(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        """A numpy array over the first bytes of the buffer (no copy)."""
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if n > self.nbytes:
            raise ValueError(f"view of {n} bytes over a {self.nbytes}-byte buffer")
        raw = (ctypes.c_byte * max(n, 1)).from_address(self.ptr)
        return np.frombuffer(memoryview(raw).cast("B"), dtype=dtype, count=n // dtype.itemsize).reshape(shape)

    def _free(self) -> None:
        rt().cudaFreeHost(self.ptr)


class CudaGraph:
    """A captured sequence of work on one stream, replayed with a single launch (saves per-kernel launch cost)."""

    def __init__(self, graph: Any, exec_: Any) -> None:
        self._graph, self._exec = graph, exec_

    @classmethod
    def capture(cls, stream: Stream, work: Callable[[], None]) -> "CudaGraph":
        """Run `work()` under stream capture. Thread-local mode: other threads' CUDA calls stay legal meanwhile."""
        r = rt()
        check(r.cudaStreamBeginCapture(stream.raw, r.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            work()
        except BaseException:
            r.cudaStreamEndCapture(stream.raw)  # leave capture mode so the stream stays usable
            raise
        graph = check(r.cudaStreamEndCapture(stream.raw), "cudaStreamEndCapture")
        exec_ = check(r.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        return cls(graph, exec_)

    def launch(self, stream: Stream) -> None:
        check(rt().cudaGraphLaunch(self._exec, stream.raw), "cudaGraphLaunch")

    def close(self) -> None:
        r = rt()
        if self._exec is not None:
            r.cudaGraphExecDestroy(self._exec)
            self._exec = None
        if self._graph is not None:
            r.cudaGraphDestroy(self._graph)
            self._graph = None
