"""What every timing is recorded with: CPU, GPU/driver/CUDA/TensorRT (ddrf.engines.probe), ONNX Runtime, Jetson."""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (x86 'model name', Arm 'Model'/'Hardware'), else platform."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or None
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on the machine distorts CPU timings (record it with them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def onnxruntime_facts() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"version": None, "providers": []}
    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def profile_environment(device: int = 0) -> dict[str, Any]:
    """probe.environment() (TensorRT, CUDA runtime/driver, GPU name/capability/memory, Jetson model, nvpmodel,
    jetson_clocks) plus the CPU, memory and library versions. Never imports torch (its version comes from
    package metadata)."""
    import psutil

    from ddrf.engines.probe import environment

    ort = onnxruntime_facts()
    return {
        **environment(device),
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_usable": usable_cores(),
        "memory_total_bytes": int(psutil.virtual_memory().total),
        "load_average": load_average(),
        "onnxruntime_version": ort["version"],
        "onnxruntime_providers": ort["providers"],
        "torch_version": package_version("torch"),
        "numpy_version": package_version("numpy"),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
