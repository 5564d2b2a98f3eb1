"""Where an exported model's time goes in ONNX Runtime (CPU, one thread): per-operator shares of the encoder and of
one denoiser step, from ORT's own profiler.

    PYTHONPATH=. python benchmarks/ort_op_profile.py MODEL_DIR [MODEL_DIR ...] [--size 256] [--repeats 3]

Random inputs of size x size (batch 1); two warm-up runs, then `repeats` profiled runs, whose wall times are given as
their median. Several models are profiled alternately, so a load drift on a shared machine falls on all of them.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path: Path, prefix: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.enable_profiling, options.intra_op_num_threads, options.profile_file_prefix = True, 1, prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(model: Path, size: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    image = {"lms": rng.random((1, 4, size, size), dtype=np.float32),
             "pan": rng.random((1, 1, size, size), dtype=np.float32)}
    plain = ort.InferenceSession(str(model / "encoder.onnx"), providers=["CPUExecutionProvider"])
    condition = plain.run(None, image)
    step = ort.InferenceSession(str(model / "denoiser.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in step.get_inputs()]
    t_type = np.int64 if step.get_inputs()[names.index("t")].type == "tensor(int64)" else np.float32
    denoise = {"x_t": rng.standard_normal((1, 4, size, size), dtype=np.float32), "t": np.array([999], dtype=t_type),
               **dict(zip([n for n in names if n.startswith("cond")], condition))}
    return image, denoise


def profile(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], repeats: int) -> tuple[float, dict[str, float]]:
    """(median wall seconds, the six largest operator shares of kernel time)."""
    for _ in range(2):
        sess.run(None, feeds)
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, feeds)
        walls.append(time.perf_counter() - start)
    by_op: collections.Counter[str] = collections.Counter()
    for event in json.loads(Path(sess.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    return statistics.median(walls), {k: v / total for k, v in by_op.most_common(6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            image, denoise = feeds_for(model, args.size)
            for stage, feeds in (("encoder", image), ("denoiser", denoise)):
                wall, shares = profile(session(model / f"{stage}.onnx", f"{tmp}/{stage}"), feeds, args.repeats)
                ops = ", ".join(f"{k} {100 * v:.0f} %" for k, v in shares.items())
                print(f"{model} {stage} {args.size}x{args.size}: {1000 * wall:.0f} ms; {ops}")


if __name__ == "__main__":
    main()
