"""Memory per window of an exported model, computed from its graphs (ONNX shape inference), not measured.

    python benchmarks/window_memory.py [--model DIR] [--tile 512] [--batch 4]

For one call at tile x tile, batch N (FP32): the weights; the model inputs and outputs (what crosses between host
and device per call on a GPU backend, and the host buffers ddrf-run keeps per batch); the condition features (kept
on the device between the encoder and the K denoiser calls; for a one-graph sampler with scene statistics, the scene
pass's recording, kept for the whole scene); the largest single activation; and the peak of the
tensors alive at once (inputs, condition and outputs included) running the nodes in graph order with every tensor
freed after its last reader: what a runtime with perfect buffer reuse needs (real runtimes add workspace, e.g.
cuDNN's, and allocator rounding). ddrf-run itself adds, per column chunk, its blender and writer buffers
(ddrf/scenes/tiling.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import shape_inference

from ddrf.card import ModelCard
from ddrf.model_dir import graph_stem
from ddrf.scenes.tiling import CONTEXT_SIDE, CONTEXT_WINDOWS

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


def concrete(dims: list[Any], batch: int, tile: int, stride: int = 1) -> list[int]:
    """Fill symbolic dimensions: batch first, spatial sides from the tile (divided by the input's stride)."""
    out = []
    for k, d in enumerate(dims):
        out.append(d if isinstance(d, int) and d > 0 else batch if k == 0 else tile // stride)
    return out


def tensor_bytes(value: onnx.ValueInfoProto) -> int:
    dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
    if not dims or any(d <= 0 for d in dims):
        return 0
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).itemsize
    return int(np.prod(dims)) * itemsize


def fixed(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> onnx.ModelProto:
    for value in model.graph.input:
        if value.name in shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name]):
                dim.Clear()
                dim.dim_value = size
    return shape_inference.infer_shapes(model, data_prop=True)


def live_peak(model: onnx.ModelProto, sizes: dict[str, int]) -> int:
    """Peak bytes of tensors alive at once running the nodes in graph order, each freed after its last reader
    (graph inputs and outputs live throughout): the activation memory of a runtime with perfect buffer reuse."""
    last_use = {name: k for k, node in enumerate(model.graph.node) for name in node.input}
    pinned = {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
    live = sum(sizes.get(n, 0) for n in pinned)
    alive: dict[str, int] = {}
    peak = live
    for k, node in enumerate(model.graph.node):
        for name in node.output:
            if name not in pinned:
                alive[name] = sizes.get(name, 0)
        peak = max(peak, live + sum(alive.values()))
        for name in [n for n in alive if last_use.get(n, -1) <= k]:
            del alive[name]
    return peak


def graph_memory(path: Path, shapes: dict[str, list[int]]) -> dict[str, Any]:
    model = fixed(onnx.load(str(path)), shapes)
    weights = sum(int(np.prod(t.dims)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
                  for t in model.graph.initializer)
    sizes = {v.name: tensor_bytes(v) for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    inter = [tensor_bytes(v) for v in model.graph.value_info]
    outputs = {o.name: tensor_bytes(o) for o in model.graph.output}
    return {"weights": weights, "inputs": sum(tensor_bytes(i) for i in model.graph.input if i.name in shapes),
            "outputs": outputs, "largest": max(inter + list(outputs.values())), "live_peak": live_peak(model, sizes),
            "output_shapes": {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}}


def window_memory(model_dir: Path, tile: int, batch: int) -> dict[str, Any]:
    card = ModelCard.from_dict(json.loads((model_dir / "card.json").read_text()))
    bands = card.graph_bands  # 1 for a band-wise model, which runs its graphs once per band
    if (model_dir / f"{graph_stem('encoder')}.onnx").is_file():
        return two_graph_memory(model_dir, tile, batch, bands)
    return sampler_memory(model_dir, tile, batch, bands, card.sampling_steps)


def two_graph_memory(model_dir: Path, tile: int, batch: int, bands: int) -> dict[str, Any]:
    """Encoder once, then the denoiser per step, its condition features kept between them."""
    enc = graph_memory(model_dir / "encoder.onnx", {"lms": [batch, bands, tile, tile], "pan": [batch, 1, tile, tile]})
    cond_shapes = enc["output_shapes"]
    den_shapes = {"x_t": [batch, bands, tile, tile], "t": [batch], **cond_shapes}
    den = graph_memory(model_dir / "denoiser.onnx", den_shapes)
    cond = sum(enc["outputs"].values())
    return {"tile": tile, "batch": batch, "weights_mib": (enc["weights"] + den["weights"]) / MIB,
            "host_to_device_mib": (enc["inputs"] + den_shapes["x_t"][0] * bands * tile * tile * 4) / MIB,
            "device_to_host_mib": sum(den["outputs"].values()) / MIB, "cond_mib": cond / MIB,
            "largest_activation_mib": max(enc["largest"], den["largest"]) / MIB,
            "live_peak_mib": max(enc["live_peak"], den["live_peak"]) / MIB}


def recorded_shapes(scene_path: Path, shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Output shapes of the scene pass, by running it once on zeros (shape inference cannot follow its reshapes)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(scene_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {name: np.zeros(shape, np.float32) for name, shape in shapes.items()})
    return {o.name: list(value.shape) for o, value in zip(session.get_outputs(), outputs)}


def sampler_memory(model_dir: Path, tile: int, batch: int, bands: int, steps: int) -> dict[str, Any]:
    """The unrolled K-step sampler per window; with scene statistics, fed by the scene pass's recording (made
    once per scene over CONTEXT_WINDOWS windows of CONTEXT_SIDE, the most a large scene gets): its "condition"."""
    def images(n: int, side: int) -> dict[str, list[int]]:
        return {"lms": [n, bands, side, side], "pan": [n, 1, side, side], "noise": [n, bands, side, side]}

    shapes, scene, context = images(batch, tile), None, 0
    scene_path = model_dir / f"{graph_stem('scene', steps=steps)}.onnx"
    if scene_path.is_file():
        scene = graph_memory(scene_path, images(CONTEXT_WINDOWS, CONTEXT_SIDE))
        recording = recorded_shapes(scene_path, images(CONTEXT_WINDOWS, CONTEXT_SIDE))  # token count: data-dependent
        shapes.update(recording)
        context = sum(int(np.prod(shape)) * 4 for shape in recording.values())
    sampler = graph_memory(model_dir / f"{graph_stem('sampler', steps=steps)}.onnx", shapes)
    parts = [sampler] + ([scene] if scene else [])
    return {"tile": tile, "batch": batch, "weights_mib": sum(g["weights"] for g in parts) / MIB,
            "host_to_device_mib": (sampler["inputs"] - context) / MIB,
            "device_to_host_mib": sum(sampler["outputs"].values()) / MIB, "cond_mib": context / MIB,
            "largest_activation_mib": max(g["largest"] for g in parts) / MIB,
            "live_peak_mib": max(g["live_peak"] for g in parts) / MIB}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "ddrf" / "assets" / "models" / "landsat_ratio2")
    p.add_argument("--tile", type=int, nargs="+", default=[256, 512])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    args = p.parse_args(argv)
    print("| tile | batch | weights MiB | host->device MiB | device->host MiB | condition MiB | largest activation "
          "MiB | peak live tensors MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for tile in args.tile:
        for batch in args.batch:
            m = window_memory(args.model, tile, batch)
            print(f"| {tile} | {batch} | {m['weights_mib']:.1f} | {m['host_to_device_mib']:.1f} | "
                  f"{m['device_to_host_mib']:.1f} | {m['cond_mib']:.1f} | {m['largest_activation_mib']:.1f} | "
                  f"{m['live_peak_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
