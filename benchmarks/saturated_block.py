"""How far a saturated block (a cloud at the file's largest value) moves ddrf-run's output away from it.

The bundled sample scene and a copy with a PAN block (and the MS block under it) at 65535 in every file are fused
with the same model; printed per band: p99 and max of |block - clean| as a % of the band's std, over the columns
from FAR on (the block ends at column SIDE). docs/RELIABILITY.md, row 95.

    python benchmarks/saturated_block.py [--model NAME] [--side 96] [--place corner|edge] [--shared]

`--shared`: both runs take the clean scene's normalisation and statistics (`ddrf-run --statistics-from`).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import rasterio

SAMPLE = Path(__file__).resolve().parents[1] / "ddrf/assets/sample_scene/LC80200392015216LGN00"
CEILING = 65535


def saturate(scene: Path, side: int, place: str) -> None:
    """A side x side PAN block, and the MS block under it, at the ceiling: top left, or mid-height on the left."""
    for path in scene.glob("*_B[2-58].TIF"):
        with rasterio.open(path, "r+") as ds:
            data = ds.read(1)
            block = side if path.name.endswith("_B8.TIF") else side // 2
            row = 0 if place == "corner" else (data.shape[0] - block) // 2
            data[row:row + block, :block] = CEILING
            ds.write(data, 1)


def fuse(scene: Path, out: Path, model: str | None, statistics_from: Path | None) -> np.ndarray:
    command = ["ddrf-run", str(scene), "-o", str(out), "--no-progress"] + (["--model", model] if model else [])
    command += ["--statistics-from", str(statistics_from)] if statistics_from else []
    subprocess.run(command, check=True, capture_output=True)
    with rasterio.open(out / f"{scene.name}.tif") as ds:
        return ds.read().astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a bundled model name or model directory (default: the one ddrf-run picks)")
    parser.add_argument("--side", type=int, default=96, help="PAN side of the block")
    parser.add_argument("--place", choices=("corner", "edge"), default="corner")
    parser.add_argument("--far", type=int, default=300, help="first output column measured")
    parser.add_argument("--shared", action="store_true", help="both runs with --statistics-from the clean scene")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clean, block = Path(tmp) / "clean" / SAMPLE.name, Path(tmp) / "block" / SAMPLE.name
        shutil.copytree(SAMPLE, clean)
        shutil.copytree(SAMPLE, block)
        saturate(block, args.side, args.place)
        reference = clean if args.shared else None
        want, got = fuse(clean, Path(tmp) / "a", args.model, reference), fuse(block, Path(tmp) / "b", args.model, reference)
    far = np.abs(got - want)[..., args.far:].reshape(len(want), -1)
    std = want[..., args.far:].reshape(len(want), -1).std(axis=1)
    print(f"model {args.model or '(ddrf-run picks)'}{', shared statistics' if args.shared else ''}, block {args.side} px at the {args.place}, columns >= {args.far}")
    print("band | p99 % of std | max % of std | max DN")
    for band, (p99, top, s) in enumerate(zip(np.percentile(far, 99, axis=1), far.max(axis=1), std), 1):
        print(f"{band} | {100 * p99 / s:.2f} | {100 * top / s:.2f} | {top:.0f}")


if __name__ == "__main__":
    main()
