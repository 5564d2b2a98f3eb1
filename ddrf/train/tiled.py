"""A torch model through the runtime's tiling: the same windows, halo, feathered blend and keyed noise as `ddrf-run`.

For measuring tile invariance and scoring checkpoints "through the tiled path" without an export. The windows,
weights and row blending are ddrf.scenes' own (`plan_grid`, `fuse_into`); only the scene (in-memory arrays,
reflected outside like the GeoTIFF reader) and the engine (torch sampler instead of ONNX) are stand-ins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ddrf.radiometry import Radiometry, scene_radiometry
from ddrf.runtime.fuser import InputPreparation
from ddrf.scenes.streaming import RunSettings, Timings, fuse_into, plan_grid
from ddrf.schedule import CosineSchedule
from ddrf.train.diffusion import Diffusion


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    index = np.mod(index, 2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


@dataclass
class ArrayScene:
    """PAN (H, W) and MS (H/r, W/r, B) arrays read like ddrf.scenes.Scene: windows reach outside by reflection."""

    pan: np.ndarray
    ms: np.ndarray
    ratio: int
    name: str = "arrays"

    @property
    def height(self) -> int:
        return int(self.pan.shape[0])

    @property
    def width(self) -> int:
        return int(self.pan.shape[1])

    @property
    def band_names(self) -> list[str]:
        return [f"b{i + 1}" for i in range(self.ms.shape[-1])]

    def read_pair(self, row0: int, col0: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = self.ratio
        rows, cols = np.arange(row0, row0 + height), np.arange(col0, col0 + width)
        pan = self.pan[np.ix_(_reflect(rows, self.height), _reflect(cols, self.width))]
        ms_rows = _reflect(np.arange(row0 // r, (row0 + height) // r), self.ms.shape[0])
        ms_cols = _reflect(np.arange(col0 // r, (col0 + width) // r), self.ms.shape[1])
        valid = ((rows >= 0) & (rows < self.height))[:, None] & ((cols >= 0) & (cols < self.width))[None, :]
        return pan, self.ms[np.ix_(ms_rows, ms_cols)], valid


@dataclass
class TorchEngine:
    """The pipeline's Engine protocol over a torch DDRF and its card: InputPreparation (radiometry, interp23,
    padding, origin-keyed noise) exactly as the ONNX Fuser, then the torch DDIM sampler."""

    model: Any
    card: Any
    steps: int
    seed: int = 0
    samples: int = 1
    label: str = "torch"
    radiometry: Radiometry | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.prep = InputPreparation(self.card)
        self.bands, self.ratio, self.multiple = list(self.card.bands), int(self.card.ratio), self.prep.multiple
        self.spread_calibration = float(self.card.spread_calibration)
        self.diffusion = Diffusion(CosineSchedule.from_dict(self.card.schedule), self.card.target, self.card.residual,
                                   self.card.residual_scale)

    def start_scene(self, scene: Any) -> None:
        self.radiometry = scene_radiometry(self.card.normalisation, scene.ms, scene.pan[..., None])

    def prepare(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> Any:
        return pairs, origins  # preparation happens in `fuse`, beside the torch sampler

    def run(self, prepared: Any) -> list[np.ndarray]:
        return self.fuse(*prepared)

    def fuse(self, pairs: list[tuple[np.ndarray, np.ndarray]], origins: list[tuple[int, int]]) -> list[np.ndarray]:
        assert self.radiometry is not None, "start_scene first"
        runs = []
        for k in range(self.samples):
            prepared = [self.prep.prepare(pan, ms, self.radiometry, self.seed + k, o) for (pan, ms), o in
                        zip(pairs, origins)]
            lms, guide, noise = (torch.from_numpy(np.stack(p)) for p in zip(*prepared))
            fused = self.diffusion.sample(self.model, lms, guide, self.steps, noise=noise).numpy()
            runs.append([self.radiometry.ms_from_model(np.moveaxis(f[:, :pan.shape[0], :pan.shape[1]], 0, -1))
                         for f, (pan, _) in zip(fused, pairs)])
        return [np.stack([run[i] for run in runs]) for i in range(len(pairs))]

    def summary(self) -> dict[str, Any]:
        return {"kind": "torch", "steps": self.steps}


class _Rows:
    """A RasterSink stand-in that keeps the released rows of each column chunk."""

    def __init__(self) -> None:
        self.chunks: list[list[np.ndarray]] = []

    def start_chunk(self, first: int, end: int, fused_width: int) -> None:
        self.chunks.append([])

    def write_rows(self, values: np.ndarray, valid: np.ndarray) -> None:
        self.chunks[-1].append(np.asarray(values, dtype=np.float64))

    def image(self) -> np.ndarray:
        return np.concatenate([np.concatenate(rows, axis=0) for rows in self.chunks], axis=1)


def fuse_tiled(engine: Any, scene: ArrayScene, tile: int, halo: int = 32, batch: int = 1) -> np.ndarray:
    """The (H, W, B) blended output `ddrf-run` would write for this scene with this tile, halo and batch."""
    settings = RunSettings(tile=tile, halo=halo, batch=batch)
    reader: Any = scene  # duck-typed: the streaming code reads height, width, ratio, band_names and read_pair only
    rows = _Rows()
    sink: Any = rows  # start_chunk and write_rows are all the streaming code calls
    grid = plan_grid(reader, engine, settings)
    engine.start_scene(scene)
    with torch.no_grad():
        fuse_into(reader, engine, grid, settings, [sink], Timings(), lambda n: None)
    return rows.image()


def random_model(cfg: Any, seed: int = 0) -> Any:
    """A DDRF with random weights everywhere, the zero-initialised output and modulation convs included (an untrained
    model returns LMS exactly, which would hide any tile dependence): for measuring tiling without training."""
    from ddrf.model import DDRF

    torch.manual_seed(seed)
    model = DDRF(cfg)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and not module.weight.any():
                torch.nn.init.normal_(module.weight, std=0.05)
                torch.nn.init.normal_(module.bias, std=0.05)  # type: ignore[arg-type]  # every DDRF conv that starts at zero has a bias
    return model.eval()


def tile_differences(outputs: dict[int, np.ndarray], whole: np.ndarray) -> dict[int, dict[str, float]]:
    """Per tile size: worst band's p99 and max |tile - whole| as fractions of that band's std in `whole`."""
    std = whole.reshape(-1, whole.shape[-1]).std(axis=0)
    out = {}
    for tile, fused in outputs.items():
        diff = np.abs(fused - whole).reshape(-1, whole.shape[-1])
        out[tile] = {"p99": float(np.max(np.percentile(diff, 99, axis=0) / std)),
                     "max": float(np.max(diff.max(axis=0) / std))}
    return out
