"""In-memory PAN/MS arrays through `ddrf-run`'s streaming path: the same windows, halo, feathered blend and keyed
noise as a GeoTIFF scene, with the fused image returned as an array instead of written.

For scoring a model "through the tiled path" (ddrf-eval, benchmarks) with any engine: the runtime's ModelEngine or
train/tiled.py's torch engine. Only the scene (arrays, reflected outside like the GeoTIFF reader) and the sink (rows
kept in memory) stand in for ddrf-run's. Never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ddrf.geometry import reflect
from ddrf.scenes.engines import Engine
from ddrf.scenes.streaming import RunSettings, Timings, fuse_into, plan_grid


@dataclass
class ArrayScene:
    """PAN (H, W) and MS (H/r, W/r, B) arrays read like ddrf.scenes.Scene: windows reach outside by reflection."""

    pan: np.ndarray
    ms: np.ndarray
    ratio: int
    name: str = "arrays"
    noise_origin: tuple[int, int] = (0, 0)  # where the noise is keyed (Scene.noise_origin): arrays, their own pixels

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
        pan = self.pan[np.ix_(reflect(rows, self.height), reflect(cols, self.width))]
        ms_rows = reflect(np.arange(row0 // r, (row0 + height) // r), self.ms.shape[0])
        ms_cols = reflect(np.arange(col0 // r, (col0 + width) // r), self.ms.shape[1])
        valid = ((rows >= 0) & (rows < self.height))[:, None] & ((cols >= 0) & (cols < self.width))[None, :]
        return pan, self.ms[np.ix_(ms_rows, ms_cols)], valid

    def preview(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The whole arrays, every pixel valid (Scene.preview decimates scenes over 1024 px; arrays are in memory)."""
        pan, ms = np.asarray(self.pan, np.float64), np.asarray(self.ms, np.float64)
        return pan, np.ones(pan.shape, bool), ms, np.ones(ms.shape[:2], bool)


class RowsSink:
    """A RasterSink stand-in that keeps the released rows of each column chunk."""

    def __init__(self) -> None:
        self.chunks: list[list[np.ndarray]] = []

    def start_chunk(self, first: int, end: int, fused_width: int) -> None:
        self.chunks.append([])

    def write_rows(self, values: np.ndarray, valid: np.ndarray) -> None:
        self.chunks[-1].append(np.asarray(values, dtype=np.float64))

    def image(self) -> np.ndarray:
        return np.concatenate([np.concatenate(rows, axis=0) for rows in self.chunks], axis=1)


def fuse_arrays(engine: Engine, scene: ArrayScene, tile: int | None, halo: int | None = None,
                batch: int = 1) -> np.ndarray:
    """The (H, W, B) blended output (the mean of the engine's samples) `ddrf-run` would write for these arrays."""
    settings = RunSettings(tile=tile, halo=halo, batch=batch)
    reader: Any = scene  # duck-typed: the streaming code reads height, width, ratio, band_names and read_pair only
    rows = RowsSink()
    sink: Any = rows  # start_chunk and write_rows are all the streaming code calls
    grid = plan_grid(reader, engine, settings)
    engine.start_scene(reader, grid.unweighted_border)
    fuse_into(reader, engine, grid, settings, [sink], Timings(), lambda n: None)
    return rows.image()


def tile_differences(outputs: dict[int, np.ndarray], whole: np.ndarray) -> dict[int, dict[str, float]]:
    """Per tile size: worst band's p99 and max |tile - whole| as fractions of that band's std in `whole`."""
    std = whole.reshape(-1, whole.shape[-1]).std(axis=0)
    out = {}
    for tile, fused in outputs.items():
        diff = np.abs(fused - whole).reshape(-1, whole.shape[-1])
        out[tile] = {"p99": float(np.max(np.percentile(diff, 99, axis=0) / std)),
                     "max": float(np.max(diff.max(axis=0) / std))}
    return out
