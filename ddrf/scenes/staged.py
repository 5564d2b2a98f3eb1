"""A staged model's scene-wide maps (ddrf.model.staged): stage 1 over the whole scene in windows, stage 2 over its
map at 1 / 2^split resolution; ddrf-run's windows then run stage 3 with a halo of a few pixels, reading the map under
them (`DeepMap.under`). Each stage's windows carry the halo of its own levels, so no window needs the whole
network's (96 PAN pixels for the bundled ratio-2 model) and the output does not depend on any window size.

The maps span the scene padded by the card's halo on every side (read past the edge by reflection, as every window
is), so the output near the scene's edge is the one a single window over the scene with that halo gives.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ddrf.scenes.tiling import round_up, stage_windows, window_alignment

if TYPE_CHECKING:
    from ddrf.runtime.fuser import Fuser
    from ddrf.scenes.scene import Scene

# Stage 1's windows (PAN pixels) and stage 2's (its own pixels, the same PAN footprint at split 2): a speed and
# memory choice only, like --tile. Stage 2's are small because its middle self-attention holds a (queries x scene
# tokens) matrix per head: 512 of its own pixels a side took 1.7 GiB more for the bundled ratio-2 model.
STAGE_WINDOW = 512
DEEP_WINDOW = 128
# A scene's maps (stage 1's and stage 2's, every member's) up to this many bytes stay in memory; larger ones go to an
# unnamed temporary file (TMPDIR), so that ddrf-run's memory does not grow with the scene (8 bytes per PAN pixel
# each for the bundled ratio-2 model: 1.1 GB at 8192 x 8192)
MAP_MEMORY = 256 * 2**20


class SceneMap:
    """A float32 (C, rows, columns) map written and read by regions, in memory or in an unnamed temporary file
    (channels last, so that a region's row is one read)."""

    def __init__(self, channels: int, rows: int, cols: int, in_memory: bool) -> None:
        self.shape = (channels, rows, cols)
        self.array: np.ndarray | None = None
        self.file: Any = None
        if in_memory:
            self.array = np.zeros((rows, cols, channels), np.float32)
        else:
            self.file = tempfile.TemporaryFile(prefix="ddrf-map-")
            self.file.truncate(rows * cols * channels * 4)

    def _offset(self, row: int, col: int) -> int:
        return (row * self.shape[2] + col) * self.shape[0] * 4

    def write(self, rows: slice, cols: slice, values: np.ndarray) -> None:
        block = np.ascontiguousarray(np.moveaxis(values, 0, -1), np.float32)
        if self.array is not None:
            self.array[rows, cols] = block
            return
        for k, row in enumerate(range(rows.start, rows.stop)):
            self.file.seek(self._offset(row, cols.start))
            self.file.write(block[k].tobytes())

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        if rows.start < 0 or cols.start < 0 or rows.stop > self.shape[1] or cols.stop > self.shape[2]:
            raise ValueError(f"rows {rows.start}..{rows.stop}, columns {cols.start}..{cols.stop} lie outside the "
                             f"map's {self.shape[1]} x {self.shape[2]}")
        if self.array is not None:
            return np.moveaxis(self.array[rows, cols], -1, 0)
        block = np.empty((rows.stop - rows.start, cols.stop - cols.start, self.shape[0]), np.float32)
        for k, row in enumerate(range(rows.start, rows.stop)):
            self.file.seek(self._offset(row, cols.start))
            self.file.readinto(memoryview(block[k]).cast("B"))
        return np.moveaxis(block, -1, 0)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.array = self.file = None


@dataclass
class DeepMap:
    """Stage 2's output over the padded scene, its first pixel at PAN row `top`, column `left` (negative: past the
    scene's edge), each of its pixels `scale` PAN pixels a side."""

    values: SceneMap
    top: int
    left: int
    scale: int

    def under(self, origins: list[tuple[int, int]], height: int, width: int) -> np.ndarray:
        """(N, C, height / scale, width / scale): the map under same-sized windows at these PAN origins."""
        rows, cols = height // self.scale, width // self.scale
        parts = []
        for row, col in origins:
            r, c = (row - self.top) // self.scale, (col - self.left) // self.scale
            try:
                parts.append(self.values.read(slice(r, r + rows), slice(c, c + cols)))
            except ValueError:
                raise ValueError(f"window at row {row}, column {col} ({height} x {width}) lies outside the deep "
                                 "map") from None
        return np.stack(parts)


def deep_maps(scene: "Scene", fuser: "Fuser", members: list[tuple[int, int]],
              contexts: dict[int, dict[str, np.ndarray]], prepare: Any) -> dict[int, DeepMap]:
    """Per member (seed, view 0), stage 2's map of the whole scene. `prepare(pairs, origins, members)` is what
    ddrf-run's windows are prepared by (`ddrf.scenes.engines.member_batches`), so stage 1 sees their inputs."""
    staged = fuser.card.staged
    scale = 2 ** int(staged["split"])
    pad, height, width = _padded_extent(scene, fuser)
    entry_c, pooled_c, deep_c = fuser.stage_channels
    map_bytes = scene_map_bytes(scene, fuser, len(members))
    in_memory = map_bytes <= MAP_MEMORY
    if not in_memory:
        check_map_room(scene.name, map_bytes)

    def new_map(channels: int) -> SceneMap:
        return SceneMap(channels, height // scale, width // scale, in_memory)

    entries = {j: (new_map(entry_c), new_map(pooled_c)) for j in range(len(members))}
    halo = int(staged["encoder_halo"])
    windows = list(grid(height, width, STAGE_WINDOW, halo))
    try:
        for k, ((rows, cols), (row_core, col_core), (row_place, col_place)) in enumerate(windows):
            row, col = rows.start - pad, cols.start - pad
            pan, ms, _ = scene.read_pair(row, col, rows.stop - rows.start, cols.stop - cols.start)
            core = (slice(None), _scaled(row_core, scale), _scaled(col_core, scale))
            for j, (lms, guide, noise) in enumerate(prepare([(pan, ms)], [(row, col)], members)):
                last = k == len(windows) - 1 and j == len(members) - 1
                for target, values in zip(entries[j], fuser.stage_entry(lms, guide, noise, contexts[j], last)):
                    target.write(_scaled(row_place, scale), _scaled(col_place, scale), values[0][core])
        maps = {}
        for j, (entry, pooled) in entries.items():
            maps[j] = DeepMap(new_map(deep_c), -pad, -pad, scale)
            _deep_levels(fuser, entry, pooled, maps[j].values, contexts[j], int(staged["deep_halo"]),
                         last=j == len(members) - 1)
        return maps
    finally:
        for pair in entries.values():
            for each in pair:
                each.close()


def _padded_extent(scene: "Scene", fuser: "Fuser") -> tuple[int, int, int]:
    """(pad, height, width) of the maps' PAN extent: the scene padded by the card's halo on every side."""
    align = window_alignment(scene.ratio, fuser.multiple)
    pad = round_up(max(int(fuser.card.halo), int(fuser.card.staged["decoder_halo"])), align)
    return pad, round_up(scene.height, align) + 2 * pad, round_up(scene.width, align) + 2 * pad


def scene_map_bytes(scene: "Scene", fuser: "Fuser", members: int) -> int:
    """Bytes of a staged run's scene maps (stage 1's and stage 2's, every member's)."""
    scale = 2 ** int(fuser.card.staged["split"])
    _, height, width = _padded_extent(scene, fuser)
    return members * sum(fuser.stage_channels) * (height // scale) * (width // scale) * 4


def maps_on_disk(scene: "Scene", fuser: "Fuser", members: int) -> int:
    """Bytes a staged run's maps take in TMPDIR: 0 where they stay in memory (up to MAP_MEMORY)."""
    size = scene_map_bytes(scene, fuser, members)
    return size if size > MAP_MEMORY else 0


def check_map_room(name: str, map_bytes: int) -> None:
    """Refuse before stage 1 where the temporary folder cannot hold the scene's maps (else the run would fail
    after most of its work)."""
    folder = tempfile.gettempdir()
    free = shutil.disk_usage(folder).free
    if free < map_bytes:
        raise ValueError(f"{name}: a staged run keeps {map_bytes / 1e9:.1f} GB of scene maps in {folder} (TMPDIR), "
                         f"which has {free / 1e9:.1f} GB free: set TMPDIR to a folder with room, or run without "
                         "--tile (the default window needs no maps)")


def _deep_levels(fuser: "Fuser", entry: SceneMap, pooled: SceneMap, out: SceneMap, context: dict[str, np.ndarray],
                 halo: int, last: bool) -> None:
    """Stage 2 over stage 1's map into `out`, in windows of DEEP_WINDOW of its own pixels; `last`: the scene's last
    map (the session's memory is released after its last window)."""
    windows = list(grid(*entry.shape[1:], DEEP_WINDOW, halo))
    for k, ((rows, cols), (row_core, col_core), (row_place, col_place)) in enumerate(windows):
        deep = fuser.stage_deep(entry.read(rows, cols)[None], pooled.read(rows, cols)[None], context,
                                last and k == len(windows) - 1)[0]
        out.write(row_place, col_place, deep[:, row_core, col_core])


def grid(height: int, width: int, tile: int, halo: int) -> list[tuple[tuple[slice, slice], ...]]:
    """(window, core within the window, core within the map), each as (rows, columns), over a height x width map."""
    return [((rows, cols), (row_core, col_core), (row_place, col_place))
            for rows, row_core, row_place in stage_windows(height, tile, halo)
            for cols, col_core, col_place in stage_windows(width, tile, halo)]


def _scaled(part: slice, scale: int) -> slice:
    return slice(part.start // scale, part.stop // scale)
