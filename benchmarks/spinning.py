"""Encoder + denoiser per window as ddrf-run calls them, ONNX Runtime pools spinning vs sleeping, alternated.

    python benchmarks/spinning.py [--model DIR] [--tile 256] [--windows 12] [--threads 2]

Prints each denoiser call's milliseconds and CPU seconds per window for both settings: spinning pools (ONNX
Runtime's default) burn the cores between calls and, on a shared machine, make the timings bimodal.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]


def session(path: Path, threads: int, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # a model that ships the stepwise graphs (landsat_ratio2 ships only its one-graph sampler)
    p.add_argument("--model", type=Path, default=ROOT / "ddrf" / "assets" / "models" / "landsat_ratio4")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--windows", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    pairs = {s: (session(args.model / "encoder.onnx", args.threads, s), session(args.model / "denoiser.onnx",
                                                                               args.threads, s)) for s in (True, False)}
    side = args.tile
    times: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for k in range(2 * args.windows):
        spinning = bool(k % 2) if (k // 2) % 2 else not k % 2  # A B B A A B ...
        encoder, denoiser = pairs[spinning]
        lms = rng.standard_normal((1, 4, side, side), np.float32)
        pan = rng.standard_normal((1, 1, side, side), np.float32)
        start_cpu = time.process_time()
        cond = dict(zip([o.name for o in encoder.get_outputs()], encoder.run(None, {"lms": lms, "pan": pan})))
        feed = {**cond, "x_t": rng.standard_normal((1, 4, side, side), np.float32), "t": np.array([500.0], np.float32)}
        start = time.perf_counter()
        denoiser.run(None, {i.name: feed[i.name] for i in denoiser.get_inputs()})
        times[spinning].append(1e3 * (time.perf_counter() - start))
        cpu[spinning].append(time.process_time() - start_cpu)
    for spinning in (True, False):
        t = times[spinning]
        print(f"spinning {'on ' if spinning else 'off'}: denoiser ms median {statistics.median(t):.0f}, "
              f"min {min(t):.0f}, max {max(t):.0f}, each {[round(x) for x in t]}; "
              f"CPU s per window {statistics.median(cpu[spinning]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
