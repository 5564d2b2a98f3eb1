"""Find out, without risk, what this machine can build and run: TensorRT, CUDA devices, Jetson facts.

Nothing here imports TensorRT at module level, and nothing creates a TensorRT Builder or Runtime: doing that without
a GPU can crash the process, so every caller probes for a device first (`cuda_device_count`) and only then loads
TensorRT (`load_tensorrt`). All probes are best-effort and return None/0 instead of raising.
"""
from __future__ import annotations

import importlib
import logging
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
_log = logging.getLogger("ddrf.engines")

# L4T (major, minor) -> JetPack, for when the nvidia-jetpack package is not installed (containers).
_JETPACK_BY_L4T = {
    (32, 7): "4.6", (35, 1): "5.0.2", (35, 2): "5.1", (35, 3): "5.1.1", (35, 4): "5.1.2", (35, 5): "5.1.3",
    (35, 6): "5.1.4", (36, 2): "6.0 DP", (36, 3): "6.0", (36, 4): "6.1/6.2",
}


class EngineUnavailable(RuntimeError):
    """TensorRT engines cannot be built or run here (no TensorRT, or no CUDA GPU). Nothing was written."""


def cudart() -> Any | None:
    """cuda-python's runtime module (cuda.bindings.runtime, or the pre-12.6 `cuda.cudart` layout), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except Exception:  # ImportError, or a broken install raising anything at import
            continue
    return None


def _cuda_call(fn_name: str, *args: Any) -> Any | None:
    """Call a cudart function returning (err, value); the value on success, None on any failure."""
    rt = cudart()
    if rt is None:
        return None
    try:
        err, *values = getattr(rt, fn_name)(*args)
    except Exception:
        return None
    if err != rt.cudaError_t.cudaSuccess or not values:
        return None
    return values[0]


def cuda_error_text() -> str:
    """Why cudaGetDeviceCount fails here (for error messages); empty when it succeeds."""
    rt = cudart()
    if rt is None:
        return "cuda-python is not installed"
    try:
        err, _ = rt.cudaGetDeviceCount()
        if err == rt.cudaError_t.cudaSuccess:
            return ""
        return str(rt.cudaGetErrorString(err)[1].decode())
    except Exception as exc:  # a missing libcuda can surface as any exception
        return str(exc)


def cuda_device_count() -> int:
    """Number of CUDA devices; 0 on any failure (no driver, no cuda-python, no device). Never raises."""
    count = _cuda_call("cudaGetDeviceCount")
    return int(count) if count else 0


def _tensorrt_module() -> ModuleType | None:
    """The real TensorRT module, or None. `import tensorrt` also succeeds for tensorrt-stubs (an empty namespace
    package of .pyi files), so a Builder attribute and a version are what prove it is real."""
    try:
        trt = importlib.import_module("tensorrt")
    except Exception:
        return None
    if not hasattr(trt, "Builder") or not hasattr(trt, "__version__"):
        return None
    return trt


def set_device(device: int) -> bool:
    """Make `device` current for this thread (TensorRT builds and runs on the current device)."""
    rt = cudart()
    if rt is None or cuda_device_count() <= device:
        return False
    try:
        return bool(rt.cudaSetDevice(device)[0] == rt.cudaError_t.cudaSuccess)
    except Exception:
        return False


def tensorrt_version() -> str | None:
    trt = _tensorrt_module()
    return str(trt.__version__) if trt is not None else None


def load_tensorrt() -> ModuleType:
    """The TensorRT module, after checking a CUDA device exists; EngineUnavailable with every reason otherwise."""
    reasons = []
    trt = _tensorrt_module()
    if trt is None:
        reasons.append("TensorRT is not installed (no `tensorrt` module with a Builder; tensorrt-stubs alone is "
                       "only type stubs). Install the TensorRT Python wheel matching your CUDA, or use JetPack's")
    if cuda_device_count() == 0:
        why = cuda_error_text()
        reasons.append("no CUDA GPU found" + (f" ({why})" if why else ""))
    if reasons:
        raise EngineUnavailable("; ".join(reasons))
    assert trt is not None
    return trt


def make_logger(trt: Any) -> Any:
    """An ILogger that forwards to `logging` and keeps errors for the exception message."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                _log.error("TensorRT: %s", msg)
            elif level == int(trt.ILogger.Severity.WARNING):
                _log.warning("TensorRT: %s", msg)
            else:
                _log.debug("TensorRT: %s", msg)

    return _Logger()


def dims_to_list(dims: Any) -> list[int]:
    """A TensorRT Dims as a list (Dims is indexable and sized; its stubs declare no __iter__)."""
    return [int(dims[i]) for i in range(len(dims))]


def _version_text(v: int | None) -> str | None:
    """CUDA encodes versions as 1000 * major + 10 * minor (12060 -> '12.6')."""
    if not v:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def gpu_properties(device: int = 0) -> dict[str, Any] | None:
    """Name, compute capability, memory and integration of one device; None without a device."""
    if cuda_device_count() <= device:
        return None
    prop = _cuda_call("cudaGetDeviceProperties", device)
    if prop is None:
        return None
    name = prop.name
    name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
    return {
        "gpu_name": name.strip(),
        "compute_capability": f"{prop.major}.{prop.minor}",
        "total_memory_bytes": int(prop.totalGlobalMem),
        "integrated": bool(prop.integrated),  # True on Jetson: CPU and GPU share DRAM
        "can_map_host_memory": bool(prop.canMapHostMemory),
    }


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace").replace("\0", "").strip()
    except OSError:
        return None


def parse_tegra_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 3.0, GCID: ...' -> '36.3.0'."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def jetpack_for_l4t(l4t: str | None) -> str | None:
    if not l4t:
        return None
    parts = l4t.split(".")
    try:
        return _JETPACK_BY_L4T.get((int(parts[0]), int(parts[1])))
    except (ValueError, IndexError):
        return None


def _run_quiet(args: list[str]) -> str | None:
    """Output of a small system tool, or None when absent, failing or slow."""
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _jetpack_package_version() -> str | None:
    out = _run_quiet(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    return out.split("-")[0] if out else None


def nvpmodel_mode() -> str | None:
    """The power mode name from `nvpmodel -q` ('NV Power Mode: MAXN' -> 'MAXN')."""
    out = _run_quiet(["nvpmodel", "-q"])
    if not out:
        return None
    m = re.search(r"NV Power Mode:\s*(\S+)", out)
    return m.group(1) if m else None


def _freq_pinned(min_path: Path, max_path: Path) -> bool | None:
    lo, hi = _read_text(min_path), _read_text(max_path)
    if not lo or not hi or not lo.isdigit() or not hi.isdigit():
        return None
    return int(lo) >= int(hi)


def jetson_clocks_state() -> str | None:
    """'on' when jetson_clocks pinned CPU and GPU clocks at their maximum, 'off' when not, None when unknown.

    jetson_clocks sets each clock's minimum to its maximum; reading that back needs no root, unlike `--show`.
    """
    cpu = _freq_pinned(Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq"),
                       Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"))
    gpu = None
    for dev in sorted(Path("/sys/class/devfreq").glob("*")):
        if "gpu" in dev.name or "ga10b" in dev.name or "gv11b" in dev.name:
            gpu = _freq_pinned(dev / "min_freq", dev / "max_freq")
            break
    known = [s for s in (cpu, gpu) if s is not None]
    if not known:
        return None
    return "on" if all(known) else "off"


def jetson_info() -> dict[str, Any] | None:
    """Jetson model, L4T, JetPack, power mode and clock state; None when this is not a Jetson."""
    tegra = _read_text(TEGRA_RELEASE)
    model = _read_text(DEVICE_TREE_MODEL)
    if tegra is None and not (model and "jetson" in model.lower()):
        return None
    l4t = parse_tegra_release(tegra or "")
    return {
        "model": model,
        "l4t": l4t,
        "jetpack": _jetpack_package_version() or jetpack_for_l4t(l4t),
        "nvpmodel": nvpmodel_mode(),
        "jetson_clocks": jetson_clocks_state(),
    }


def environment(device: int = 0) -> dict[str, Any]:
    """What an engine depends on and a timing should record. Keys are always present; unknown values are None."""
    gpu = gpu_properties(device) or {}
    return {
        "tensorrt_version": tensorrt_version(),
        "cuda_runtime_version": _version_text(_cuda_call("cudaRuntimeGetVersion")),
        "cuda_driver_version": _version_text(_cuda_call("cudaDriverGetVersion")),
        "device_count": cuda_device_count(),
        "device": device,
        "gpu_name": gpu.get("gpu_name"),
        "compute_capability": gpu.get("compute_capability"),
        "total_memory_bytes": gpu.get("total_memory_bytes"),
        "integrated": gpu.get("integrated"),
        "can_map_host_memory": gpu.get("can_map_host_memory"),
        "jetson": jetson_info(),
    }
