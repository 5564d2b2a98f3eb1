"""Time every ddrf.metrics function on a 2048x2048x8 image (11-bit-like DN) and print/write the figures.

Usage: .venv/bin/python benchmarks/metrics_speed.py [--size 2048] [--bands 8] [--repeat 3] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from ddrf import metrics as M  # noqa: E402


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    # smooth-ish DN field plus noise: realistic enough that no metric hits a degenerate branch
    ref = np.cumsum(rng.normal(0, 4, (a.size, a.size, a.bands)), axis=1) % 1500 + 200
    fused = ref + rng.normal(0, 20, ref.shape)
    pan = ref.mean(axis=2)
    ms = ref[::4, ::4]
    cases = {
        "Q2n": lambda: M.q2n(fused, ref),
        "SAM": lambda: M.sam(fused, ref),
        "ERGAS": lambda: M.ergas(fused, ref, 4),
        "SCC": lambda: M.scc(fused, ref),
        "Q": lambda: M.q_index(fused, ref),
        "PSNR": lambda: M.psnr(fused, ref, 2047),
        "SSIM": lambda: M.ssim(fused, ref, 2047),
        "QNR (classic)": lambda: M.qnr(fused, pan, ms, 4),
    }
    cases["D_lambda (Khan)"] = lambda: M.d_lambda_khan(fused, ref, 4, "WV3")
    cases["D_s (HQNR)"] = lambda: M.d_s(fused, pan, ref, 4, "WV3")
    res = {name: _best(fn, a.repeat) for name, fn in cases.items()}
    info = {"shape": [a.size, a.size, a.bands], "repeat": a.repeat, "best_seconds": res,
            "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "numpy": np.__version__}
    for name, t in res.items():
        print(f"{name:18s} {t:8.3f} s")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(info, fh, indent=2)


if __name__ == "__main__":
    main()
