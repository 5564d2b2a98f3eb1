"""What one sweep point measures, as plain JSON-able data passed to the worker subprocess."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ddrf.model_dir import PLAN_SUFFIX

SAMPLERS = ("cached", "uncached", "unrolled")


@dataclass(frozen=True)
class PointSpec:
    """One configuration to time in its own process.

    sampler: "cached" = encode the condition once, then K denoiser calls (the runtime's sampler);
    "uncached" = recompute the condition at every step (K full forwards); "unrolled" = the one-graph sampler.
    """

    target: str  # model directory, or a TensorRT .plan (engine mode)
    backend: str = "ort-cpu"
    precision: str = "fp32"
    tile: int = 256
    batch: int = 1
    steps: int | None = None  # None: the card's sampling_steps
    sampler: str = "cached"
    runs: int = 10
    warmup: int = 2
    threads: int | None = None
    checkpoint: str | None = None  # torch backend: run directory or model.safetensors
    scene: str | None = None  # directory the tiles are read from (None: the bundled sample scene)
    layer_profile: bool = True  # TensorRT: per-layer times of each engine
    halo: int | None = None  # ddrf-run's --halo: sets the border each window leaves to the blend (None: the card's)
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PointSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def read(cls, path: str | Path) -> "PointSpec":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def key(self) -> dict[str, Any]:
        """The sweep coordinates that identify a result row."""
        return {"backend": self.backend, "precision": self.precision, "tile": self.tile, "batch": self.batch,
                "steps": self.steps, "sampler": self.sampler}


def is_engine(target: str | Path) -> bool:
    return Path(target).suffix.lower() in (PLAN_SUFFIX, ".engine")
