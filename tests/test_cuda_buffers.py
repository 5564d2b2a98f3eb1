"""ddrf.runtime.cuda on a real GPU: the pinned, mapped and device buffers, streams and CUDA graphs that the TensorRT
backend moves every window through. Needs cuda-python and a CUDA device (not TensorRT); skipped elsewhere."""
from __future__ import annotations

import numpy as np
import pytest

from ddrf.engines.probe import cuda_device_count

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(cuda_device_count() == 0, reason="needs cuda-python and a CUDA GPU")]

SHAPE = (2, 9, 96, 96)  # a small batch of window inputs


@pytest.fixture()
def stream():
    from ddrf.runtime.cuda import Stream, enable_mapped_memory, require_device

    require_device(0)
    enable_mapped_memory()  # 'already active' (a context made by an earlier test) is tolerated
    s = Stream()
    yield s
    s.close()


def _filled(buffer, seed: int) -> np.ndarray:
    array = buffer.view(SHAPE, np.dtype(np.float32))
    array[...] = np.random.default_rng(seed).standard_normal(SHAPE, dtype=np.float32)
    return array


def _device_copy(dst: int, src: int, nbytes: int, stream) -> None:
    from ddrf.runtime.cuda import check, rt

    r = rt()
    check(r.cudaMemcpyAsync(dst, src, nbytes, r.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.raw), "D2D copy")


def test_pinned_round_trip_is_exact(stream) -> None:
    from ddrf.runtime.cuda import DeviceBuffer, HostBuffer

    up, down = HostBuffer(int(np.prod(SHAPE)) * 4), HostBuffer(int(np.prod(SHAPE)) * 4)
    device = DeviceBuffer(up.nbytes)
    sent = _filled(up, 0)
    back = down.view(SHAPE, np.dtype(np.float32))
    back[...] = 0
    device.upload(sent, stream)
    device.download(back, stream)
    stream.synchronize()
    assert np.array_equal(back, sent)
    for buffer in (up, down, device):
        buffer.close()
        buffer.close()  # a second close is a no-op, not a double free
        assert buffer.ptr == 0


def test_mapped_host_memory_is_what_the_device_reads(stream) -> None:
    """The GPU reads a mapped host buffer through its device pointer (Jetson's zero-copy path)."""
    from ddrf.runtime.cuda import CudaError, DeviceBuffer, HostBuffer

    mapped = HostBuffer(int(np.prod(SHAPE)) * 4, mapped=True)
    sent = _filled(mapped, 1)
    device = DeviceBuffer(mapped.nbytes)
    _device_copy(device.device_ptr, mapped.device_ptr, mapped.nbytes, stream)
    back = np.zeros(SHAPE, np.float32)
    device.download(back, stream)
    stream.synchronize()
    assert np.array_equal(back, sent)
    with pytest.raises(CudaError, match="not mapped"):
        _ = HostBuffer(64).device_ptr


def test_cuda_graph_replays_the_work_not_the_values(stream) -> None:
    """A captured copy, launched again after its source changed, copies the new contents."""
    from ddrf.runtime.cuda import CudaGraph, DeviceBuffer

    nbytes = int(np.prod(SHAPE)) * 4
    source, target = DeviceBuffer(nbytes), DeviceBuffer(nbytes)
    graph = CudaGraph.capture(stream, lambda: _device_copy(target.ptr, source.ptr, nbytes, stream))
    for seed in (2, 3):
        values = np.random.default_rng(seed).standard_normal(SHAPE, dtype=np.float32)
        source.upload(values, stream)
        graph.launch(stream)
        back = np.zeros(SHAPE, np.float32)
        target.download(back, stream)
        stream.synchronize()
        assert np.array_equal(back, values)
    graph.close()


def test_failures_carry_cuda_s_message(stream) -> None:
    from ddrf.runtime.cuda import CudaError, DeviceBuffer, HostBuffer

    with pytest.raises(CudaError, match=r"cudaMalloc\(\d+\) failed: .*memory"):
        DeviceBuffer(1 << 52)  # 4 PiB
    with pytest.raises(ValueError, match="byte buffer"):
        HostBuffer(16).view((8,), np.dtype(np.float32))
