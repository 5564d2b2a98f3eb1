"""What ddrf-run's fixed glibc mmap threshold costs, side by side in one run: wall time and peak RSS per threshold.

    python benchmarks/mmap_threshold.py [--size 2048x2048] [--reps 2] [--thresholds 131072,1048576,4194304]

ddrf-run fixes MALLOC_MMAP_THRESHOLD_ (ddrf.cli.bounded_heap) so that freed window-sized blocks go back to the
system and peak RSS stays bounded at any scene size; a user's MALLOC_MMAP_THRESHOLD_ wins over it. Each threshold
runs the default ddrf-run on one scene mirrored from the sample scene, in its own child (peak RSS from wait4), the
order rotating within each repetition so that load drifts fall on all. Outputs are compared byte for byte.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_benchmarks import make_scene, md_table  # noqa: E402
from scene_throughput import DDRF_RUN, load, log, timed  # noqa: E402


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="2048x2048", help="PAN HEIGHTxWIDTH")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--thresholds", default="131072,1048576,4194304",
                   help="bytes, comma-separated; 131072 is what ddrf-run sets")
    args = p.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    thresholds = [int(t) for t in args.thresholds.split(",")]
    runs: dict[int, list[dict]] = {t: [] for t in thresholds}
    digests: dict[int, set[str]] = {t: set() for t in thresholds}
    with tempfile.TemporaryDirectory(prefix="ddrf-mmap-") as tmp_name:
        tmp = Path(tmp_name)
        scene = make_scene(tmp / "scene", height, width)
        for rep in range(args.reps):
            order = thresholds[rep % len(thresholds):] + thresholds[:rep % len(thresholds)]
            for threshold in order:
                out = tmp / f"out_{threshold}_{rep}"
                env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(threshold)}
                run = timed([str(DDRF_RUN), str(scene), "-o", str(out), "--no-progress"], env)
                if run["exit"]:
                    raise SystemExit(f"mmap_threshold: ddrf-run failed at {threshold}: {run['error']}")
                runs[threshold].append(run)
                digests[threshold].add(digest(out / f"{scene.name}.tif"))
                log(f"threshold {threshold}: {run['wall_s']:.1f} s, {run['peak_rss_mib']:.0f} MiB, "
                    f"load {run['load']:.2f}")
    megapixels = height * width / 1e6
    print(f"{args.size}, {args.reps} alternated runs each, load at the end {load():.2f}")
    rows = []
    for threshold in thresholds:
        walls = [r["wall_s"] for r in runs[threshold]]
        rows.append([str(threshold), ", ".join(f"{w:.1f}" for w in walls),
                     f"{megapixels / statistics.median(walls):.3f}",
                     f"{statistics.median(r['cpu_s'] for r in runs[threshold]):.1f}",
                     f"{max(r['peak_rss_mib'] for r in runs[threshold]):.0f}", ", ".join(sorted(digests[threshold]))])
    print(md_table(["MALLOC_MMAP_THRESHOLD_", "wall s (each)", "MP/s (median)", "median CPU s", "peak RSS MiB (max)",
                    "output"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
