"""Fixtures of the scene-run tests: the tiny random-weight DDRF exported to ONNX (committed under
tests/data/tiny_model, written by its make_tiny_model.py) and writable copies of the sample scene (optionally with a
nodata block), and the Maxar naming fixture cut into a tiled delivery. Imported by tests/test_scene_run.py and
others."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

SAMPLE = Path(__file__).parents[1] / "ddrf" / "assets" / "sample_scene" / "LC80200392015216LGN00"
BANDS = ["blue", "green", "red", "nir"]
TINY_MODEL = Path(__file__).parent / "data" / "tiny_model" / "model"


def export_tiny_model(out_dir: Path) -> Path:
    """4-band, ratio-2 DDRF with 3 levels (size multiple 4), full self-attention and GroupNorm in the middle.

    Random weights; the zero-initialised modulation layers are randomised too (so every path is live) and the
    output conv is scaled down, so the fused image is LMS plus a content- and noise-dependent residual of a few
    percent, like a trained model's, instead of saturating.
    """
    import torch

    from ddrf.card import ModelCard, Normalisation
    from ddrf.export.onnx_export import export_model
    from ddrf.model import DDRF, DDRFConfig

    config = DDRFConfig(4, base_width=8, channel_mults=(1, 2, 2), enc_blocks=1, dec_blocks=2, attn_levels=(),
                        heads=2, wave_heads=2, ffn_mult=1, time_dim=16, norm_groups=4, dropout=0.0)
    torch.manual_seed(0)
    model = DDRF(config)
    with torch.no_grad():
        for param in model.parameters():
            if not param.abs().sum():
                param.normal_(0.0, 0.05)
        model.out[-1].weight.mul_(0.05)
        model.out[-1].bias.zero_()
    card = ModelCard(model=config.to_dict(), bands=BANDS, ratio=2, sensor="Landsat8",
                     normalisation=Normalisation(kind="bit_depth", bits=16), sampling_steps=2)
    export_model(model, card, out_dir, fp16=False)
    return out_dir


def copy_scene(dest: Path, nodata_block: tuple[int, int, int] | None = None) -> Path:
    """A writable copy of the sample scene; `nodata_block` = (pan row, pan col, pan size) set to 0 = nodata in
    the PAN and (halved) in every MS band, all files tagged nodata 0."""
    import rasterio

    shutil.copytree(SAMPLE, dest)
    if nodata_block is None:
        return dest
    row, col, size = nodata_block
    for path in sorted(dest.glob("*_B[2-58].TIF")):
        scale = 1 if path.stem.endswith("B8") else 2
        with rasterio.open(path, "r+") as ds:
            data = ds.read(1)
            data[row // scale:(row + size) // scale, col // scale:(col + size) // scale] = 0
            ds.write(data, 1)
            ds.nodata = 0
    return dest


def band_mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def reordered_generic_scene(target: Path) -> Path:
    """The sample scene as a generic pair: pan.tif, and ms.tif with its bands in the order red, green, blue, nir
    and no band descriptions, so only --bands names them (the file-name convention would assume blue first)."""
    import rasterio

    target.mkdir()
    (pan,) = SAMPLE.glob("*_B8.TIF")
    shutil.copy(pan, target / "pan.tif")
    bands = [next(SAMPLE.glob(f"*_B{number}.TIF")) for number in (4, 3, 2, 5)]
    with rasterio.open(bands[0]) as src:
        profile = dict(src.profile, count=len(bands))
    with rasterio.open(target / "ms.tif", "w", **profile) as dst:
        for index, path in enumerate(bands, 1):
            with rasterio.open(path) as src:
                dst.write(src.read(1), index)
    return target


MAXAR = Path(__file__).parent / "data/scenes/naming/maxar"
MAXAR_ORDER = "012345678010_01_P001"


def maxar_tiled_product(dest: Path, with_til: bool = True) -> Path:
    """The Maxar naming fixture delivered as Maxar tiles a large product: each image cut 2 x 2 at uneven offsets
    (PAN rows 0-11 / 12-31, cols 0-19 / 20-31; the MS at half those), `...-P2AS_R1C1-...TIF` and so on, each tile
    with its own geotransform, and a `.TIL` per image naming the tiles and their offsets in Maxar's ODL form."""
    for folder, kind, cuts in (("PAN", "P", (12, 20)), ("MUL", "M", (6, 10))):
        source = next((MAXAR / f"{MAXAR_ORDER}_{folder}").glob("*.TIF"))
        target = dest / f"{MAXAR_ORDER}_{folder}"
        target.mkdir(parents=True)
        with rasterio.open(source) as src:
            profile, data = src.profile, src.read()
        rows, cols = [(0, cuts[0]), (cuts[0], data.shape[1])], [(0, cuts[1]), (cuts[1], data.shape[2])]
        groups = []
        for r, (r0, r1) in enumerate(rows, 1):
            for c, (c0, c1) in enumerate(cols, 1):
                name = f"20JUN15093522-{kind}2AS_R{r}C{c}-{MAXAR_ORDER}.TIF"
                tile = dict(profile, height=r1 - r0, width=c1 - c0,
                            transform=profile["transform"] @ Affine.translation(c0, r0))
                with rasterio.open(target / name, "w", **tile) as dst:
                    dst.write(data[:, r0:r1, c0:c1])
                groups.append(f'BEGIN_GROUP = TILE_{len(groups) + 1}\n\tfilename = "{name}";\n'
                              f"\tULColOffset = {c0};\n\tULRowOffset = {r0};\n\tURColOffset = {c1 - 1};\n"
                              f"\tURRowOffset = {r0};\n\tLRColOffset = {c1 - 1};\n\tLRRowOffset = {r1 - 1};\n"
                              f"\tLLColOffset = {c0};\n\tLLRowOffset = {r1 - 1};\nEND_GROUP = TILE_{len(groups) + 1}")
        if with_til:
            (target / f"20JUN15093522-{kind}2AS-{MAXAR_ORDER}.TIL").write_text(
                f'version = "AA";\nbandId = "{kind}";\nnumTiles = {len(groups)};\ntileUnits = "Pixels";\n'
                f"tileOverlap = 0;\n" + "\n".join(groups) + "\nEND;\n")
    return dest
