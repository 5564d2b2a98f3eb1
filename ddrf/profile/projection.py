"""Whole-scene time projected from a measured tile latency, with ddrf-run's own tiling plan (halo overlap included)."""
from __future__ import annotations

import re
from typing import Any

from ddrf.scenes.tiling import TileGrid, window_alignment


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' in PAN pixels (e.g. 10000x8000) -> (height, width)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"scene size {text!r} is not WIDTHxHEIGHT in PAN pixels (e.g. 10000x10000)")
    return int(m.group(2)), int(m.group(1))


def grid_for(height: int, width: int, tile: int, halo: int, ratio: int, multiple: int) -> TileGrid:
    """The windows ddrf-run would use (ddrf.scenes.streaming.plan_grid)."""
    return TileGrid.plan(height, width, tile, halo, window_alignment(ratio, multiple))


def project(result: dict[str, Any], height: int, width: int, halo: int, ratio: int, multiple: int
            ) -> dict[str, Any]:
    """Projected fusion time of a height x width scene: ddrf-run's engine calls (a call never spans two row strips
    nor two column chunks) at the mean measured latency of one batch (read, pre-process, inference, post-process
    and write of the tiles; cold start excluded)."""
    grid = grid_for(height, width, int(result["tile"]), halo, ratio, multiple)
    calls = grid.calls(int(result["batch"]))
    batch_s = result["latency_ms"]["total"]["mean"] / 1e3
    seconds = calls * batch_s
    megapixels = height * width / 1e6
    return {**{k: result[k] for k in ("backend", "precision", "tile", "batch", "steps", "sampler")},
            "height": height, "width": width, "megapixels": megapixels, "halo": grid.halo,
            "windows": grid.fused_count(), "window_shape": [grid.tile_rows, grid.tile_cols], "calls": calls,
            "batch_latency_ms": batch_s * 1e3,
            "halo_overhead": grid.work() / (height * width),
            "projected_s": seconds, "seconds_per_megapixel": seconds / megapixels,
            "cold_start_s": result["cold_start_ms"]["total"] / 1e3}
