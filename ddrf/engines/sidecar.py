"""The JSON sidecar written beside every engine, and the check that refuses an engine built elsewhere.

A TensorRT plan runs only on the TensorRT version and GPU model that built it, and deserialisation is the only check
TensorRT itself makes (a crash or an opaque error). The sidecar lets the runtime refuse early with a rebuild command.
Pure Python (stdlib, ddrf.files, ddrf.model_dir): the torch-free runtime imports it.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ddrf.files import sha256_file, write_text_atomic
from ddrf.model_dir import sidecar_path_for

SIDECAR_VERSION = 1



class EngineMismatch(RuntimeError):
    """The engine was built for another TensorRT version or GPU (or its sidecar is missing or stale)."""


# One optimisation profile: input name -> {"min": shape, "opt": shape, "max": shape}.
Profile = dict[str, dict[str, list[int]]]


@dataclass
class EngineSidecar:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    precision: str  # "fp16" | "fp32"
    cuda_version: str | None = None
    driver_version: str | None = None
    jetson: dict[str, Any] | None = None  # model, l4t, jetpack, nvpmodel, jetson_clocks at build time
    strongly_typed: bool = False
    profiles: list[Profile] = field(default_factory=list)
    io: list[dict[str, Any]] = field(default_factory=list)  # name, mode, dtype, shape (-1 = dynamic)
    onnx_path: str = ""
    onnx_sha256: str = ""
    engine_sha256: str = ""
    builder_optimization_level: int = 3
    workspace_bytes: int | None = None
    timing_cache: str | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    card: dict[str, Any] | None = None  # the ModelCard as a dict, when the ONNX carried one
    command: str | None = None  # the command that built it (rerun on the target machine to rebuild)
    sidecar_version: int = SIDECAR_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EngineSidecar":
        if int(d.get("sidecar_version", SIDECAR_VERSION)) > SIDECAR_VERSION:
            raise ValueError(f"sidecar version {d['sidecar_version']} is newer than this ddrf ({SIDECAR_VERSION})")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def write_sidecar(sidecar: EngineSidecar, path: str | os.PathLike[str]) -> None:
    write_text_atomic(path, sidecar.to_json() + "\n")


def read_sidecar(path: str | os.PathLike[str]) -> EngineSidecar:
    path = Path(path)
    try:
        return EngineSidecar.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # JSON that is no object: AttributeError
        raise ValueError(f"{path}: not a valid engine sidecar ({exc})") from exc


def rebuild_command(sidecar: EngineSidecar) -> str:
    """The command that rebuilds this engine on the current machine, from what the sidecar recorded."""
    if sidecar.command:
        return sidecar.command
    # Engines built one by one (build_engine without a command): the model-directory form of the CLI.
    model_dir = str(Path(sidecar.onnx_path).parent) if sidecar.onnx_path else "MODEL_DIR"
    args = ["ddrf-export", "engine", model_dir, "--optimization-level", str(sidecar.builder_optimization_level),
            "--overwrite"]
    if sidecar.workspace_bytes:
        args += ["--workspace-mb", str(sidecar.workspace_bytes >> 20)]
    prof = sidecar.profiles[0] if sidecar.profiles else {}
    image = next((r for r in prof.values() if len(r["max"]) == 4), None)
    if image is not None:  # the tile and batch ranges, read back from the first NCHW input
        args += ["--tile", str(image["opt"][2]), "--max-tile", str(image["max"][2]),
                 "--batch", str(image["opt"][0]), "--max-batch", str(image["max"][0])]
    return " ".join(shlex.quote(a) for a in args)


def _gpu_mismatches(sidecar: EngineSidecar, env: Mapping[str, Any]) -> list[str]:
    if not env.get("gpu_name") and not env.get("compute_capability"):
        return ["no CUDA GPU found on this machine"]
    out = []
    if env.get("compute_capability") != sidecar.compute_capability:
        out.append(f"engine built for compute capability {sidecar.compute_capability} ({sidecar.gpu_name}), "
                   f"this GPU is {env.get('compute_capability')} ({env.get('gpu_name')})")
    elif env.get("gpu_name") != sidecar.gpu_name:
        # Same architecture, another model: TensorRT's tactics were timed on the other one and may not run here.
        out.append(f"engine built on {sidecar.gpu_name}, this GPU is {env.get('gpu_name')} "
                   f"(same compute capability {sidecar.compute_capability}, but plans are tuned per GPU model)")
    return out


def check_compatible(sidecar: EngineSidecar, env: Mapping[str, Any]) -> list[str]:
    """Reasons this machine (probe.environment()) cannot run the engine; empty when it can."""
    out = []
    trt = env.get("tensorrt_version")
    if not trt:
        out.append("TensorRT is not installed on this machine")
    elif trt != sidecar.tensorrt_version:
        out.append(f"engine built with TensorRT {sidecar.tensorrt_version}, this machine has TensorRT {trt}")
    return out + _gpu_mismatches(sidecar, env)


def mismatch_message(engine_path: str | os.PathLike[str], sidecar: EngineSidecar, problems: list[str]) -> str:
    """One message for the user: what differs and the command that fixes it."""
    lines = [f"{engine_path}: this engine cannot run here:"] + [f"  - {p}" for p in problems]
    lines.append(f"Rebuild it on this machine: {rebuild_command(sidecar)}")
    return "\n".join(lines)


def verify_engine(engine_path: str | os.PathLike[str], env: Mapping[str, Any],
                  sidecar_path: str | os.PathLike[str] | None = None, require_sidecar: bool = True
                  ) -> EngineSidecar | None:
    """The engine's sidecar after checking it describes this file and this machine can run it; EngineMismatch
    with a rebuild command otherwise. Reads only files: call it before any TensorRT deserialisation."""
    engine_path = Path(engine_path)
    side = Path(sidecar_path) if sidecar_path is not None else sidecar_path_for(engine_path)
    if not engine_path.is_file():
        raise FileNotFoundError(f"engine not found: {engine_path}")
    if not side.is_file():
        if not require_sidecar:
            return None
        raise EngineMismatch(f"{engine_path}: no sidecar at {side}, so whether this machine can run the engine is "
                             "unknown. Rebuild the engine with `ddrf-export engine` (it writes one), or skip the "
                             "check with require_sidecar=False")
    sidecar = read_sidecar(side)
    if sidecar.engine_sha256 and sha256_file(engine_path) != sidecar.engine_sha256:
        raise EngineMismatch(mismatch_message(engine_path, sidecar, [f"the sidecar {side} describes another "
                                                                     "engine file (sha256 differs)"]))
    problems = check_compatible(sidecar, env)
    if problems:
        raise EngineMismatch(mismatch_message(engine_path, sidecar, problems))
    return sidecar
