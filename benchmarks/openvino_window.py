"""One ddrf-run window of an exported model in ONNX Runtime (as ddrf-run opens it) against OpenVINO's CPU plugin in
fp32 (and with --bf16 in bf16), alternated in one process: is OpenVINO a faster CPU backend for the same graph?

    pip install openvino   # not a dependency of ddrf-edge
    PYTHONPATH=. python benchmarks/openvino_window.py [--model ddrf/assets/models/landsat_ratio2] [--side 704]

The model's one-graph sampler (sampler_k1.onnx) runs on random inputs of side x side after its scene pass (on a
256 x 256 context window), 2 threads each; OpenVINO with INFERENCE_PRECISION_HINT f32, since its default on CPUs
with bf16 instructions is bf16, whose 8-bit mantissa breaks issue 9's tile-invariance bound (docs/BENCHMARKS.md,
"On a GPU"). Prints both outputs' largest difference and the median of `--repeats` alternated runs each.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ddrf.runtime.backends import OrtBackend
from ort_op_profile import stage_feeds


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("ddrf/assets/models/landsat_ratio2"))
    p.add_argument("--side", type=int, default=704)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--bf16", action="store_true", help="also OpenVINO at its bf16 inference precision")
    args = p.parse_args(argv)
    import openvino as ov

    (_, feeds), = stage_feeds(args.model, args.side, args.threads)  # the sampler's inputs, after the scene pass
    ort_sampler = OrtBackend(args.model / "sampler_k1.onnx", threads=args.threads)
    feeds = {name: feeds[name] for name in ort_sampler.input_names}
    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_NUM_THREADS": args.threads})
    runs = {"onnxruntime": lambda: ort_sampler.run(feeds)[ort_sampler.output_names[0]]}
    for precision in ["f32", "bf16"] if args.bf16 else ["f32"]:
        compiled = core.compile_model(core.read_model(args.model / "sampler_k1.onnx"), "CPU",
                                      {"INFERENCE_PRECISION_HINT": precision})
        request = compiled.create_infer_request()
        runs[f"openvino {ov.__version__.split('-')[0]} {precision}"] = (
            lambda request=request, output=compiled.outputs[0]: request.infer(feeds)[output])
    outputs = [np.asarray(run()) for run in runs.values()]  # also the warm-up
    print(f"{args.model} sampler, {args.side} x {args.side}, {args.threads} threads; output std "
          f"{outputs[0].std():.3f}; largest difference from ONNX Runtime's output: "
          + ", ".join(f"{name} {np.abs(out - outputs[0]).max():.2e}" for name, out in zip(list(runs)[1:], outputs[1:])))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    for name, values in seconds.items():
        print(f"  {name}: median {statistics.median(values):.3f} s per window "
              f"({', '.join(f'{v:.3f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
