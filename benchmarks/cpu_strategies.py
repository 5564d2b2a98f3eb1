"""Ways to spend the CPU on one model's windows, each in its own process (so its peak RSS is its own).

    PYTHONPATH=. python benchmarks/cpu_strategies.py MODEL_DIR [MODEL_DIR ...] [--size 256] [--repeats 5]

Per model directory (it must hold sampler_k1.onnx for the one-graph rows: `ddrf-export onnx ... --unrolled 1`), on
one random size x size window (ratio from the card), K = 1, the median time per window of:
- `stepwise, 1 thread` / `stepwise, 2 threads`: the encoder and denoiser sessions, one window per call;
- `batch 2, 2 threads`: two windows per call;
- `2 windows at once, 1 thread each`: two threads each running one window through the same 1-thread sessions (ONNX
  Runtime takes concurrent runs);
- `one graph, 2 threads`: the unrolled one-step sampler (what ddrf-run uses where the model ships it).
Outputs of the one-graph sampler are checked against the stepwise ones (max |difference| in model units).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASES = ("stepwise, 1 thread", "stepwise, 2 threads", "batch 2, 2 threads", "2 windows at once, 1 thread each",
         "one graph, 2 threads")

CHILD = r'''
import json, resource, statistics, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from ddrf.runtime.fuser import Fuser
model, case, size, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
threads = 1 if case in ("stepwise, 1 thread", "2 windows at once, 1 thread each") else 2
fuser = Fuser(model, steps=1, threads=threads, unrolled=case.startswith("one graph"))
rng = np.random.default_rng(0)
c, g = len(fuser.card.bands), len(fuser.card.guide_bands)
n = 2 if case in ("batch 2, 2 threads",) else 1
lms, pan, noise = (rng.standard_normal((n, k, size, size)).astype(np.float32) for k in (c, g, c))
pool = ThreadPoolExecutor(2)
def once():
    if case.startswith("2 windows"):
        return [f.result() for f in [pool.submit(fuser.fuse_normalised, lms, pan, noise) for _ in range(2)]][0]
    return fuser.fuse_normalised(lms, pan, noise)
out = once()
times = []
for _ in range(repeats):
    start = time.perf_counter(); once(); times.append(time.perf_counter() - start)
per_window = statistics.median(times) / (2 if case.startswith(("batch 2", "2 windows")) else 1)
np.save(sys.argv[5], out[:1])
print(json.dumps({"ms": 1000 * per_window, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def run_case(model: str, case: str, size: int, repeats: int, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", CHILD, model, case, str(size), str(repeats), str(out)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    import numpy as np

    print(f"load average {os.getloadavg()[0]:.1f}; {args.size} x {args.size} window, median of {args.repeats}")
    print("| model | strategy | ms per window | peak RSS MiB |\n|---|---|---|---|")
    for model in args.models:
        results = {}
        saved = {case: args.tmp / f"cpu_strategy_{k}.npy" for k, case in enumerate(CASES)}
        for case in CASES:
            results[case] = run_case(model, case, args.size, args.repeats, saved[case])
            print(f"| {Path(model).name} | {case} | {results[case]['ms']:.0f} | {results[case]['rss_mib']:.0f} |",
                  flush=True)
        one, two = (np.load(saved[c]) for c in (CASES[4], CASES[1]))
        print(f"| {Path(model).name} | one graph against stepwise: max |difference| "
              f"{float(np.abs(one - two).max()):.2e} (model units) | | |")


if __name__ == "__main__":
    main()
