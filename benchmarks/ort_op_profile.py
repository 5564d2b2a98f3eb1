"""Where an exported model's time goes in ONNX Runtime (CPU): per-operator shares of what ddrf-run runs per window,
from ORT's own profiler, and the rate of the convolutions.

    PYTHONPATH=. python benchmarks/ort_op_profile.py MODEL_DIR [MODEL_DIR ...] [--size 256] [--repeats 3] [--threads 1]

A model directory with a one-graph 1-step sampler (sampler_k1.onnx) is profiled on it, as ddrf-run runs it; with
scene statistics its scene pass runs first, once, on a 256 x 256 context window. Otherwise the encoder and one
denoiser step are profiled. Random inputs of size x size (batch 1); two warm-up runs, then `repeats` profiled runs,
whose wall times are given as their median. Several models are profiled alternately, so a load drift on a shared
machine falls on all of them. With torch installed and the weights in the directory (model.safetensors), the
convolution FLOPs of one encode and one denoise step at that size (torch.utils.flop_counter, 2 per multiply-add) are
divided by the median wall time and by the time inside the Conv kernels.
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

from ddrf.card import read_card

SHOWN = 8  # operator types listed per graph


def session(path: Path, threads: int, prefix: str | None = None) -> ort.InferenceSession:
    """Options as ddrf-run's (ddrf/runtime/backends.py): pools that sleep, no memory pattern."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_mem_pattern = False
    if prefix:
        options.enable_profiling, options.profile_file_prefix = True, prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def images(rng: np.random.Generator, bands: int, size: int) -> dict[str, np.ndarray]:
    return {"lms": rng.random((1, bands, size, size), dtype=np.float32),
            "pan": rng.random((1, 1, size, size), dtype=np.float32),
            "noise": rng.standard_normal((1, bands, size, size), dtype=np.float32)}


def stage_feeds(model: Path, size: int, threads: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(graph stem, its inputs) for each graph profiled."""
    rng = np.random.default_rng(0)
    bands = int(read_card(model / "card.json").model["ms_bands"])
    if (model / "sampler_k1.onnx").is_file():
        feeds = images(rng, bands, size)
        if (model / "scene_k1.onnx").is_file():
            stats, tokens = session(model / "scene_k1.onnx", threads).run(None, images(rng, bands, 256))
            feeds |= {"scene_stats": stats, "scene_tokens": tokens}
        return [("sampler_k1", feeds)]
    image = images(rng, bands, size)
    image.pop("noise")
    condition = session(model / "encoder.onnx", threads).run(None, image)
    step = session(model / "denoiser.onnx", threads)
    names = [i.name for i in step.get_inputs()]
    t_type = np.int64 if step.get_inputs()[names.index("t")].type == "tensor(int64)" else np.float32
    denoise = {"x_t": rng.standard_normal((1, bands, size, size), dtype=np.float32),
               "t": np.array([999], dtype=t_type), **dict(zip([n for n in names if n.startswith("cond")], condition))}
    return [("encoder", image), ("denoiser", denoise)]


def profile(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], repeats: int) -> tuple[float, dict[str, float]]:
    """(median wall seconds, kernel seconds per operator type per run, largest first)."""
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
            by_op[event["args"]["op_name"]] += event["dur"] * 1e-6 / (repeats + 2)  # every run is profiled
    return statistics.median(walls), dict(by_op.most_common())


def conv_flops(model: Path, size: int) -> float | None:
    """Convolution FLOPs of one encode and one denoise step at size x size, or None without torch or weights (the
    attention's are left out: eager torch takes them over the window, a scene-statistics graph over the scene). The
    decoder leaves out the card's output margin, as the graph does (so scene statistics are recorded, then replayed)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    if not (model / "model.safetensors").is_file():
        return None
    from ddrf.train.checkpoint import load_checkpoint

    from ddrf.model.scene import recorded, replayed

    net, card = load_checkpoint(model / "model.safetensors")
    card.output_margin = read_card(model / "card.json").output_margin  # the graphs' card, not the weights'
    c, g = int(card.model["ms_bands"]), int(card.model["guide_bands"])
    x, t, lms, pan = torch.randn(1, c, size, size), torch.tensor([999.0]), torch.rand(1, c, size, size), torch.rand(
        1, g, size, size)

    def step(margin: int) -> torch.Tensor:
        return net.denoise(x, t, *net.encode(lms, pan), margin=margin)

    with torch.inference_mode():
        if card.scene_statistics:
            stats, tokens = recorded(net.scene_tape, lambda: step(0))
        with FlopCounterMode(display=False) as counter:
            if card.scene_statistics:
                replayed(net.scene_tape, stats, tokens, lambda: step(card.output_margin))
            else:
                step(card.output_margin)
    return float(sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            total_wall, conv_seconds = 0.0, 0.0
            for stage, feeds in stage_feeds(model, args.size, args.threads):
                wall, seconds = profile(session(model / f"{stage}.onnx", args.threads, f"{tmp}/{stage}"), feeds,
                                        args.repeats)
                total_wall, conv_seconds = total_wall + wall, conv_seconds + seconds.get("Conv", 0.0)
                kernel = sum(seconds.values())
                ops = ", ".join(f"{k} {100 * v / kernel:.1f} %" for k, v in list(seconds.items())[:SHOWN])
                print(f"{model} {stage} {args.size}x{args.size}, {args.threads} thread(s): {1000 * wall:.0f} ms; "
                      f"{ops}", flush=True)
            flops = conv_flops(model, args.size)
            if flops:
                print(f"{model}: {flops / 1e9:.2f} GFLOP of convolutions (encode + one step) -> "
                      f"{flops / 1e9 / total_wall:.1f} GFLOP/s over the median wall, "
                      f"{flops / 1e9 / conv_seconds:.1f} GFLOP/s inside the Conv kernels")


if __name__ == "__main__":
    main()
