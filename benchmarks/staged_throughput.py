"""ddrf-run's wall time and peak RSS against --tile, staged and one-graph windows side by side in one run.

    PYTHONPATH=. python benchmarks/staged_throughput.py --before /tmp/wt_before [--tiles 256,384,512] [--reps 2]

On the sample scene mirrored to 2048 x 2048 PAN (benchmarks/run_benchmarks.py: make_scene), each `ddrf-run --tile T`
of this checkout (a staged model below its default window runs staged) alternates with the same command of another
checkout given by --before (PYTHONPATH; one whose ddrf-run runs every tile through the one-graph sampler, e.g. a
worktree of the commit before staged execution), and the default run (no --tile) of both. Every command runs in a
fresh process (peak RSS from wait4); printed: the median wall time and peak RSS per command and the ratio of the
medians, before / this checkout.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from run_benchmarks import make_scene  # noqa: E402
from scene_throughput import DDRF_RUN, log, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--tiles", default="256,384,512")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    tiles: list[int | None] = [int(t) for t in args.tiles.split(",")] + [None]
    with tempfile.TemporaryDirectory(prefix="ddrf-staged-") as tmp:
        scene = make_scene(Path(tmp) / "scene", 2048, 2048)
        runs: dict[tuple[str, int | None], list[dict]] = {}
        for rep in range(args.reps):
            for tile in tiles:
                for who, path in (("this checkout", ROOT), ("before", args.before)):
                    cmd = [str(DDRF_RUN), str(scene), "-o", f"{tmp}/out", "--overwrite", "--no-progress"]
                    cmd += ["--tile", str(tile)] if tile else []
                    log(f"rep {rep + 1}: {who} --tile {tile or 'default'}")
                    result = timed(cmd, {**os.environ, "PYTHONPATH": str(path)})
                    if result["exit"]:
                        raise SystemExit(f"{' '.join(cmd)} failed: {result['error']}")
                    runs.setdefault((who, tile), []).append(result)
    print("| --tile | this checkout: wall s (median), peak RSS MiB | before: wall s, peak RSS MiB | before / this |")
    print("|---|---|---|---|")
    for tile in tiles:
        now, old = ([statistics.median(r["wall_s"] for r in runs[(who, tile)]),
                     max(r["peak_rss_mib"] for r in runs[(who, tile)])] for who in ("this checkout", "before"))
        print(f"| {tile or 'default'} | {now[0]:.1f}, {now[1]:.0f} | {old[0]:.1f}, {old[1]:.0f} | "
              f"x{old[0] / now[0]:.2f} |")


if __name__ == "__main__":
    main()
