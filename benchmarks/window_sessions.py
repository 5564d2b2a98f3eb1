"""Time and peak RSS of one-graph sampler windows by window side and by how the two cores are spent.

    PYTHONPATH=. python benchmarks/window_sessions.py [MODEL_DIR] [--sizes 536,704,880] [--windows 4]

Each (size, case) runs in its own process (its peak RSS is its own, imports included), on random inputs of one
size x size window, after one warm-up window, with ddrf-run's session options (`ddrf.runtime.backends.OrtBackend`).
The scene pass, where the model has one, runs first on a 128 x 128 window and its outputs feed every window.
- `one at a time, 2 threads`: what ddrf-run does;
- `two at once, 1 thread each`: two Python threads share one 1-thread session (ONNX Runtime takes concurrent runs);
- `shared arena grown as asked`: one at a time, but the session allocates from an arena registered with ONNX
  Runtime's environment whose chunks grow by what is asked (`arena_extend_strategy` 1), not by powers of two.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = ("one at a time, 2 threads", "two at once, 1 thread each", "shared arena grown as asked")

CHILD = r'''
import json, resource, sys, threading, time
import numpy as np
from ddrf.runtime.backends import OrtBackend
model, case, size, windows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if case.startswith("shared arena"):
    import onnxruntime as ort
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))
    class Shared(ort.SessionOptions):  # what OrtBackend builds, plus the entry
        def __init__(self):
            super().__init__()
            self.add_session_config_entry("session.use_env_allocators", "1")
    ort.SessionOptions = Shared
rng = np.random.default_rng(0)
def inputs(backend, side, given):
    feed = dict(given)
    for name in backend.input_names:
        if name not in feed:
            channels = backend.input_shapes[name][1]
            feed[name] = rng.standard_normal((1, channels, side, side)).astype(np.float32)
    return feed
context = {}
try:
    scene = OrtBackend(f"{model}/scene_k1.onnx", threads=2, once=True)
    context = scene.run(inputs(scene, 128, {}))
except ValueError:
    pass  # no scene pass: a model without scene statistics
threads = 1 if case.startswith("two at once") else 2
sampler = OrtBackend(f"{model}/sampler_k1.onnx", threads=threads)
feed = inputs(sampler, size, context)
sampler.run(feed)
start = time.perf_counter()
if case.startswith("two at once"):
    workers = [threading.Thread(target=lambda: [sampler.run(feed) for _ in range(windows // 2)]) for _ in range(2)]
    [w.start() for w in workers]
    [w.join() for w in workers]
else:
    for _ in range(windows):
        sampler.run(feed)
seconds = (time.perf_counter() - start) / windows
print(json.dumps({"s_per_window": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="ddrf/assets/models/landsat_ratio2")
    parser.add_argument("--sizes", default="536,704,880")
    parser.add_argument("--windows", type=int, default=4, help="timed windows per case (even)")
    args = parser.parse_args()
    print("| window | case | s per window | peak RSS MiB |\n|---|---|---|---|")
    for size in [int(s) for s in args.sizes.split(",")]:
        for case in CASES:
            done = subprocess.run([sys.executable, "-c", CHILD, args.model, case, str(size), str(args.windows)],
                                  capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {size} | {case} | {result['s_per_window']:.2f} | {result['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
