"""Peak memory of ddrf-run on a synthetic many-band cube (hyperspectral-like), a classical method, this checkout and
optionally another (a `git worktree` of an earlier commit), one after the other:

    python benchmarks/many_bands.py --bands 200 --ratio 3 --ms-side 200 [--before /tmp/wt_old]

The cube: a smooth PAN pattern with noise, each MS band a gain and offset of it, block-averaged by the ratio (the same
data for every checkout). Prints peak RSS (MiB) and wall seconds per checkout.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]


def make_cube(folder: Path, bands: int, ratio: int, ms_side: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    side = ms_side * ratio
    yy, xx = np.mgrid[0:side, 0:side] / side
    base = 300 + 200 * np.sin(6 * xx) * np.cos(5 * yy) + 40 * rng.standard_normal((side, side))
    ms = np.stack([base * (0.5 + 0.1 * (k % 7)) + 400 + 30 * k for k in range(bands)])
    ms = ms.reshape(bands, ms_side, ratio, ms_side, ratio).mean(axis=(2, 4))
    grid = {"driver": "GTiff", "dtype": "uint16", "crs": "EPSG:32633"}
    pan_path, ms_path = folder / "pan.tif", folder / "ms.tif"
    with rasterio.open(pan_path, "w", width=side, height=side, count=1,
                       transform=from_origin(500000, 4000000, 1.0, 1.0), **grid) as dst:
        dst.write((base + 500).clip(1, 60000).astype("uint16"), 1)
    with rasterio.open(ms_path, "w", width=ms_side, height=ms_side, count=bands,
                       transform=from_origin(500000, 4000000, float(ratio), float(ratio)), **grid) as dst:
        dst.write(ms.clip(1, 60000).astype("uint16"))
    return pan_path, ms_path


def peak_run(checkout: Path, pan: Path, ms: Path, out: Path, method: str) -> tuple[float, float]:
    """(peak RSS MiB, wall s) of one ddrf-run of `checkout`'s code."""
    code = "from ddrf.cli import run_app; run_app()"
    args = ["/usr/bin/time", "-f", "%M", sys.executable, "-c", code, "--pan", str(pan), "--ms", str(ms), "-o",
            str(out), "--method", method, "--threads", "1", "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(args, env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True, text=True,
                          cwd=out.parent.parent)  # not a checkout: python -c puts the current folder first
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: ddrf-run failed: {done.stderr.strip().splitlines()[-2:]}")
    return int(done.stderr.strip().splitlines()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--ratio", type=int, default=3)
    ap.add_argument("--ms-side", type=int, default=200)
    ap.add_argument("--method", default="GSA")
    ap.add_argument("--before", type=Path, default=None, help="another checkout to measure the same way")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddrf-bands-") as tmp:
        pan, ms = make_cube(Path(tmp), a.bands, a.ratio, a.ms_side)
        for name, checkout in (("this checkout", ROOT), ("before", a.before)):
            if checkout is not None:
                peak, wall = peak_run(checkout, pan, ms, Path(tmp) / name.replace(" ", "_") / "out.tif", a.method)
                print(f"{name}: {a.bands} bands, PAN {a.ms_side * a.ratio} px, {a.method}: peak RSS {peak:.0f} MiB, "
                      f"{wall:.1f} s", flush=True)


if __name__ == "__main__":
    main()
