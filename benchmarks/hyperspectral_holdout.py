"""Hyperspectral fusion scored with a spatial hold-out: EO-1 Hyperion (128 bands) + ALI PAN, ratio 3.

    PYTHONPATH=. python benchmarks/hyperspectral_holdout.py --data ../shared/data/hyperion_ali_paris --out runs/hyperion \\
        [--config configs/hyperion_holdout.yaml] [--json runs/hyperion.json]

The pair (HySure's Paris data, arrays without georeferencing; GPL-3 distribution, read from its path and never
copied into the repository) is written as GeoTIFF pairs on a stated local grid: EPSG:32631 (Paris's UTM zone), PAN
10 m and Hyperion 30 m pixels sharing their top-left corner, an arbitrary origin. Reflectance is stored as uint16
reflectance x 10000 (the usual scaled-reflectance DN): the toolbox's Q2n rounds its inputs to uint16, so it needs DN,
not reflectance in 0..1.3 (SAM, ERGAS and PSNR do not depend on the scale, and the model normalises per scene). The top half (Hyperion rows 0-35,
PAN rows 0-107) trains DDRF with the config (Wald's protocol at ratio 3); the bottom half (rows 36-71 and 108-215),
never trained on, is scored by `ddrf-eval pairs:` at the reduced protocol (Wald, generic MTF gains, border 0)
for GSA, MTF-GLP-HPM, MTF-GLP-FS and the trained model through ddrf-run's tiled path.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy.io import loadmat

from ddrf.files import write_text_atomic

HALVES = {"top": (0, 36), "bottom": (36, 72)}  # Hyperion rows, end exclusive
RATIO, CRS, ORIGIN = 3, "EPSG:32631", (440000.0, 5400000.0)
SCALE = 10000  # reflectance -> uint16 DN
METHODS = "GSA,MTF-GLP-HPM,MTF-GLP-FS"
METRICS = ("SAM", "ERGAS", "Q2n", "PSNR")


def write_halves(data: Path, out: Path) -> None:
    arrays = loadmat(str(data / "paris_data_hs_pan.mat"))
    cube, pan = (np.rint(arrays[k] * SCALE).astype(np.uint16) for k in ("HSim", "PCim"))  # (72, 58, 128), (216, 174)
    for name, (a, b) in HALVES.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        top = ORIGIN[1] - 30.0 * a
        _write(folder / "paris_pan.tif", pan[RATIO * a:RATIO * b, :, None], 10.0, top)
        _write(folder / "paris_ms.tif", cube[a:b], 30.0, top)


def _write(path: Path, image: np.ndarray, pixel: float, top: float) -> None:
    profile = {"driver": "GTiff", "height": image.shape[0], "width": image.shape[1], "count": image.shape[2],
               "dtype": "uint16", "crs": CRS, "transform": from_origin(ORIGIN[0], top, pixel, pixel)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.transpose(2, 0, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("configs/hyperion_holdout.yaml"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    write_halves(args.data, args.out)
    top = args.out / "top"
    run, model = args.out / "run", args.out / "model"
    subprocess.run(["ddrf-train", str(args.config), f"data.source=geotiff:{top}/paris_pan.tif,{top}/paris_ms.tif",
                    "--out", str(run), "--overwrite"], check=True)
    subprocess.run(["ddrf-export", "onnx", str(run), "-o", str(model), "--overwrite"], check=True,
                   stdout=subprocess.DEVNULL)
    scores = args.out / "scores.json"
    subprocess.run(["ddrf-eval", f"pairs:{args.out / 'bottom'}", "--methods", f"{METHODS},ddrf:{model}",
                    "--mode", "reduced", "--json", str(scores), "--overwrite"], check=True)
    summary = json.loads(scores.read_text())["summary"]["reduced"]
    table = {method: {m: stats[m]["mean"] for m in METRICS} for method, stats in summary.items()}
    print("| method | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
    for method, row in table.items():
        print(f"| {method} | " + " | ".join(f"{row[m]:.4f}" if m == "Q2n" else f"{row[m]:.3f}" for m in METRICS)
              + " |")
    if args.json:
        write_text_atomic(args.json, json.dumps({"config": str(args.config), "scores": table}, indent=1))


if __name__ == "__main__":
    main()
