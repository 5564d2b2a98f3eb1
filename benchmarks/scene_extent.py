"""How ddrf-run's output over one area changes with the scene's extent: the sample scene against a crop of it.

Overlapping scenes (neighbouring Landsat rows and paths, an area of interest cut from a scene) should give the same
pixels where they overlap. The crop keeps PAN columns [FIRST, END) of every file (georeferenced, the MTL as is);
both are fused with the same model and compared over the crop, leaving out a halo of 96 px from a cut edge (the
window's edge effects are not the point). Printed per band, as a % of the band's std: p99, max and mean of
|crop - whole|, and the signed mean (a shift of tone).

    python benchmarks/scene_extent.py [--columns 0,384] [--model NAME] [--shared | --fixed-context CTX.npz]

`--shared`: both runs take the whole scene's normalisation and statistics (`ddrf-run --statistics-from`).
`--fixed-context`: the default model with one context replayed in every scene (benchmarks/fixed_statistics.py).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

SAMPLE = Path(__file__).resolve().parents[1] / "ddrf/assets/sample_scene/LC80200392015216LGN00"
EDGE = 96  # PAN px left out next to a cut edge


def crop_scene(source: Path, target: Path, first: int, end: int) -> None:
    """A copy of the scene keeping PAN columns [first, end) (MS columns at half those)."""
    shutil.copytree(source, target)
    for path in target.glob("*.TIF"):
        with rasterio.open(path) as ds:
            ratio = 1 if path.name.endswith("_B8.TIF") else 2
            window = Window(first // ratio, 0, (end - first) // ratio, ds.height)
            data, profile = ds.read(window=window), dict(ds.profile)
            profile.update(width=window.width, transform=ds.window_transform(window))
        with rasterio.open(path, "w", **profile) as out:
            out.write(data)


def fuse(scene: Path, out: Path, model: str | None, shared: bool) -> np.ndarray:
    """ddrf-run in this process (so that --fixed-context reaches it)."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    options = (["--model", model] if model else []) + (["--statistics-from", str(SAMPLE)] if shared else [])
    result = CliRunner().invoke(app, [str(scene), "-o", str(out), "--no-progress", *options])
    if result.exit_code:
        raise SystemExit(result.output)
    with rasterio.open(out / f"{scene.name}.tif") as ds:
        return ds.read().astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", default="0,384", help="FIRST,END: the PAN columns the crop keeps")
    parser.add_argument("--model", help="a bundled model name or model directory (default: the one ddrf-run picks)")
    parser.add_argument("--shared", action="store_true", help="both runs with --statistics-from the whole scene")
    parser.add_argument("--fixed-context", help="an .npz of benchmarks/fixed_statistics.py record")
    args = parser.parse_args()
    if args.fixed_context:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fixed_statistics import use_fixed_context

        use_fixed_context(args.fixed_context)
    first, end = (int(v) for v in args.columns.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        crop = Path(tmp) / "crop" / SAMPLE.name
        crop_scene(SAMPLE, crop, first, end)
        whole = fuse(SAMPLE, Path(tmp) / "w", args.model, args.shared)
        part = fuse(crop, Path(tmp) / "c", args.model, args.shared)
    keep = slice(EDGE if first else 0, (end - first) - (EDGE if end < whole.shape[2] else 0))
    want, got = whole[:, :, first:end][:, :, keep].reshape(len(whole), -1), part[:, :, keep].reshape(len(whole), -1)
    difference, std = np.abs(got - want), want.std(axis=1)
    print(f"model {args.model or '(ddrf-run picks)'}{', fixed context' if args.fixed_context else ''}{', shared statistics' if args.shared else ''}, crop of PAN columns {first}-{end}, {EDGE} px from a cut edge "
          "left out; % of each band's std")
    print("band | p99 | max | mean | signed mean")
    for band in range(len(want)):
        figures = (np.percentile(difference[band], 99), difference[band].max(), difference[band].mean(),
                   (got[band] - want[band]).mean())
        print(f"{band + 1} | " + " | ".join(f"{100 * f / std[band]:.2f}" for f in figures))


if __name__ == "__main__":
    main()
