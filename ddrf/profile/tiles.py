"""The inputs of a profiled tile fusion: windows of a real GeoTIFF scene (read as ddrf-run reads them) or synthetic
arrays when no scene fits the model, and where the fused windows are written (as GeoTIFFs, as ddrf-run writes)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ddrf.profile.spec import PointSpec
from ddrf.runtime.fuser import InputPreparation

if TYPE_CHECKING:
    from ddrf.card import ModelCard
    from ddrf.scenes.scene import Scene


def sample_scene_dir() -> Path:
    from ddrf.assets import SAMPLE_SCENE

    return SAMPLE_SCENE


def open_scene(directory: Path, card: "ModelCard") -> "tuple[Scene | None, str | None]":
    """(the scene whose windows a point reads, None) or (None, why the model cannot read this directory's)."""
    from ddrf.scenes.scene import Scene

    try:
        scene = Scene.from_directory(directory, card.scene_bands)
    except (ValueError, OSError) as exc:
        return None, " ".join(str(exc).split())
    if int(scene.ratio) != int(card.ratio):
        return None, f"{directory.name} has ratio {scene.ratio}, the model {card.ratio}"
    return scene, None


class TileSource:
    """Reads the point's windows and writes fused windows; `scene` is None (synthetic tiles) when no scene fits."""

    def __init__(self, helper: InputPreparation, spec: PointSpec, tile: int, out_dir: Path) -> None:
        self.helper, self.tile, self.batch, self.out_dir = helper, tile, spec.batch, out_dir
        self.origins = [(0, k * tile) for k in range(spec.batch)]
        self.note: str | None = None
        self.scene = self._open_scene(spec)
        if self.scene is not None:
            from ddrf.scenes.engines import preview_radiometry

            self.radiometry = preview_radiometry(self.scene, helper.card)
            self.crs, self.transform, self.dtype = self.scene.crs, self.scene.transform, np.dtype(self.scene.dtype)
            self.bits = self.scene.bits
        else:
            self._synthetic(helper)

    def _open_scene(self, spec: PointSpec) -> "Scene | None":
        scene, why = open_scene(Path(spec.scene) if spec.scene else sample_scene_dir(), self.helper.card)
        if why:
            self.note = f"read not timed: {why}; synthetic tiles used"
        return scene

    def _synthetic(self, helper: InputPreparation) -> None:
        from affine import Affine

        rng = np.random.default_rng(0)
        ratio, bands, guides = helper.card.ratio, len(helper.card.bands), len(helper.card.guide_bands)
        side = self.tile - self.tile % ratio
        self.arrays = [(rng.uniform(100, 4000, (side, side) if guides == 1 else (side, side, guides)),
                        rng.uniform(100, 4000, (side // ratio, side // ratio, bands))) for _ in self.origins]
        self.radiometry = helper.radiometry(*self.arrays[0])
        self.crs, self.transform, self.dtype, self.bits = None, Affine(1, 0, 0, 0, -1, 0), np.dtype("uint16"), 16

    def read(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.scene is None:
            return self.arrays
        return [self.scene.read_pair(r, c, self.tile, self.tile)[:2] for r, c in self.origins]

    def write(self, fused: list[np.ndarray]) -> None:
        import rasterio

        from ddrf.scenes.writer import geotiff_profile, quantise

        for k, values in enumerate(fused):
            valid = np.ones(values.shape[:2], dtype=bool)
            out = quantise(values, valid, self.dtype, self.bits, None)
            profile = geotiff_profile(out.shape[0], out.shape[1], out.shape[2], self.dtype, self.crs,
                                      self.transform, None)
            profile.update(blockxsize=min(512, _block(out.shape[1])), blockysize=min(512, _block(out.shape[0])))
            with rasterio.open(self.out_dir / f"tile_{k}.tif", "w", **profile) as dst:
                dst.write(np.moveaxis(out, -1, 0))


def _block(n: int) -> int:
    """GeoTIFF tiles are multiples of 16."""
    return max(16, n - n % 16)
