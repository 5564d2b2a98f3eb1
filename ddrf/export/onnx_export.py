"""Checkpoint -> ONNX graphs (opset 17, dynamic batch/height/width), cleaned, checked and carrying the model card.

Every graph is exported and checked in memory before anything is written, and ddrf.model_dir writes the directory
all or nothing, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
from torch import nn

from ddrf.card import ModelCard, unweighted_border
from ddrf.export.graphs import (DenoiserGraph, EncoderGraph, ScenePassGraph, SceneSamplerGraph, StagedDecoderGraph,
                                StagedDeepGraph, StagedEntryGraph, UnrolledSamplerGraph)
from ddrf.model import DDRF
from ddrf.model.staged import owner_starts
from ddrf.model_dir import (CARD_METADATA_KEY, GRAPH_ROLE_KEY, ONNX_SUFFIX, SCENE_IO, condition_names, graph_stem,
                            write_model_dir)
from ddrf.schedule import CosineSchedule, SamplerPlan, make_plan

OPSET = 17
# The FP16 graph runs the compute-heavy operators in half precision and everything else (normalisations, softmax,
# reductions, the timestep embedding, the sampler arithmetic) in FP32: explicit Casts make the graph strongly typed,
# as TensorRT 11 needs, and keep GroupNorm statistics and softmax sums from overflowing or losing precision.
FP16_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})

@dataclass
class ExportResult:
    out_dir: Path
    graphs: dict[str, Path] = field(default_factory=dict)  # file stem -> path
    card: ModelCard | None = None  # the card as written, with the graphs' hashes

    def sizes(self) -> dict[str, int]:
        return {name: path.stat().st_size for name, path in self.graphs.items()}


def _dynamic_axes(shapes_a: list[torch.Size], shapes_b: list[torch.Size], names: list[str]) -> dict[str, dict[int, str]]:
    """Axes that change between two traced sizes are dynamic; the batch axis always is."""
    axes: dict[str, dict[int, str]] = {}
    for name, a, b in zip(names, shapes_a, shapes_b):
        axes[name] = {0: "batch"}
        for dim, (da, db) in enumerate(zip(a, b)):
            if dim > 0 and da != db:
                axes[name][dim] = f"{name}_dim{dim}"
    return axes


def output_margin(card: ModelCard) -> int:
    """The widest border the unrolled samplers may leave uncomputed: what ddrf-run's blend gives no weight with the
    card's halo, in whole margin steps; 0 where a window statistic makes every pixel depend on the whole window."""
    return card.croppable(unweighted_border(card.halo))


def sample_inputs(card: ModelCard, batch: int, size: int) -> dict[str, torch.Tensor]:
    """Seeded random lms, pan and noise of the card's graph shapes (tracing; benchmarks/gpu_torch.py)."""
    generator = torch.Generator().manual_seed(0)
    bands, guides = card.graph_bands, len(card.guide_bands)
    return {"lms": torch.rand(batch, bands, size, size, generator=generator),
            "pan": torch.rand(batch, guides, size, size, generator=generator),
            "noise": torch.randn(batch, bands, size, size, generator=generator)}


def _to_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
             dynamic_axes: dict[str, dict[int, str]]) -> onnx.ModelProto:
    buffer = io.BytesIO()
    module.eval()  # the exporter restores the wrapper's mode recursively afterwards: keep it (and the model) in eval
    with torch.no_grad():  # a file-like target works, though the stubs name only paths
        torch.onnx.export(module, args, buffer,  # type: ignore[arg-type]
                          opset_version=OPSET, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
                          dynamo=False)
    return _declare_inputs(onnx.load_from_string(buffer.getvalue()), dict(zip(input_names, args)), dynamic_axes)


def _declare_inputs(model: onnx.ModelProto, inputs: dict[str, torch.Tensor],
                    dynamic_axes: dict[str, dict[int, str]]) -> onnx.ModelProto:
    """Every named input stays a graph input, used or not (the exporter drops unused ones): a stage's inputs are the
    layout's (GRAPH_IO) whatever the network's configuration, e.g. scene_tokens of a staged graph whose levels
    hold no self-attention, so the runtime feeds every graph of a stage alike."""
    from onnx import TensorProto, helper

    present = {i.name for i in model.graph.input}
    for name, tensor in inputs.items():
        if name not in present:
            axes = dynamic_axes.get(name, {})
            shape = [axes.get(dim, size) for dim, size in enumerate(tensor.shape)]
            model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    return model


def clean_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and dead-node removal (onnxslim), then the ONNX checker and shape inference. The inputs stay
    those declared, used or not (`_declare_inputs`; onnxslim drops unused ones)."""
    import onnxslim

    declared = [onnx.ValueInfoProto.FromString(i.SerializeToString()) for i in model.graph.input]
    slimmed = onnxslim.slim(model)
    slimmed = slimmed if isinstance(slimmed, onnx.ModelProto) else model
    kept = {i.name for i in slimmed.graph.input}
    slimmed.graph.input.extend(i for i in declared if i.name not in kept)
    slimmed = onnx.shape_inference.infer_shapes(slimmed, check_type=True, strict_mode=True)
    onnx.checker.check_model(slimmed, full_check=True)
    return slimmed


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Mixed-precision copy: FP16_OPS in FP16 (their weights stored in FP16), the rest FP32, I/O FP32."""
    from onnx import TensorProto, helper, numpy_helper

    half = onnx.ModelProto()
    half.CopyFrom(model)
    graph = half.graph
    initializers = {i.name: i for i in graph.initializer}
    users: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    casts: dict[str, str] = {}  # FP32 tensor -> its FP16 copy
    nodes = []

    def fp16_name(name: str) -> str:
        if name not in casts:
            casts[name] = f"{name}__fp16"
            init = initializers.get(name)
            if init is not None and init.data_type == TensorProto.FLOAT and users[name] <= FP16_OPS:
                graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(init).astype("float16"),
                                                                 casts[name]))
            else:
                nodes.append(helper.make_node("Cast", [name], [casts[name]], to=TensorProto.FLOAT16,
                                              name=f"{name}__to_fp16"))
        return casts[name]

    for node in graph.node:
        if node.op_type not in FP16_OPS:
            nodes.append(node)
            continue
        inputs = [fp16_name(n) if n else n for n in node.input]
        outputs = list(node.output)
        del node.input[:], node.output[:]
        node.input.extend(inputs)
        node.output.extend(f"{o}__fp16" for o in outputs)
        casts.update({o: f"{o}__fp16" for o in outputs})  # an FP16 reader takes the FP16 output, no cast round trip
        nodes.append(node)
        nodes.extend(helper.make_node("Cast", [f"{o}__fp16"], [o], to=TensorProto.FLOAT, name=f"{o}__to_fp32")
                     for o in outputs)
    unused = [i for i in graph.initializer if i.name in casts and users.get(i.name, set()) <= FP16_OPS]
    for init in unused:
        graph.initializer.remove(init)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    half = onnx.shape_inference.infer_shapes(half, check_type=True, strict_mode=True)
    onnx.checker.check_model(half, full_check=True)
    return half

def _with_card(model: onnx.ModelProto, card: ModelCard, role: str) -> onnx.ModelProto:
    del model.metadata_props[:]
    for key, value in ((CARD_METADATA_KEY, card.to_json()), (GRAPH_ROLE_KEY, role)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "ddrf-edge"
    return model


def build_graphs(model: DDRF, card: ModelCard, unrolled_steps: tuple[int, ...] = (),
                 trace_size: int | None = None) -> dict[str, onnx.ModelProto]:
    """FP32 ONNX graphs by file stem: encoder, denoiser and one unrolled sampler per requested step count."""
    model = model.eval().float().cpu()
    multiple = card.size_multiple
    size = trace_size or max(2 * multiple, 32) + 2 * card.output_margin  # a cropped output must keep some pixels
    small, large = sample_inputs(card, 1, size), sample_inputs(card, 2, size + multiple)
    with torch.no_grad():
        cond_small, cond_large = model.encode(small["lms"], small["pan"]), model.encode(large["lms"], large["pan"])
    cond_names = condition_names(len(cond_small))
    image_axes = {0: "batch", 2: "height", 3: "width"}
    if card.scene_statistics:  # window-statistics graphs would make the tile-dependent output this card rules out
        if not unrolled_steps:
            raise ValueError("a model with scene statistics runs through unrolled samplers only: give the step "
                             "counts to export (--unrolled K)")
        if card.sampling_steps not in unrolled_steps:  # else the model's default run finds no graphs
            given = ",".join(map(str, unrolled_steps))
            raise ValueError(f"the model runs {card.sampling_steps} steps by default, and with scene statistics only "
                             f"through unrolled samplers: export that one too (--unrolled {given},"
                             f"{card.sampling_steps}) or make another the default (--steps {unrolled_steps[0]})")
        if card.staged and 1 not in unrolled_steps:  # the staged graphs replay the 1-step scene pass's statistics
            raise ValueError(f"the staged graphs run one sampler step, with the 1-step scene pass: export it too "
                             f"(--unrolled {','.join(map(str, unrolled_steps))},1)")
        return _unrolled_graphs(model, card, unrolled_steps, small, image_axes)
    graphs = {"encoder": _to_onnx(
        EncoderGraph(model), (small["lms"], small["pan"]), ["lms", "pan"], cond_names,
        {"lms": image_axes, "pan": image_axes,
         **_dynamic_axes([c.shape for c in cond_small], [c.shape for c in cond_large], cond_names)})}
    timestep = torch.full((1,), 500.0)
    graphs["denoiser"] = _to_onnx(
        DenoiserGraph(model), (small["noise"], timestep, *cond_small), ["x_t", "t", *cond_names], ["prediction"],
        {"x_t": image_axes, "t": {0: "batch"}, "prediction": image_axes,
         **_dynamic_axes([c.shape for c in cond_small], [c.shape for c in cond_large], cond_names)})
    graphs.update(_unrolled_graphs(model, card, unrolled_steps, small, image_axes))
    return graphs


def _unrolled_graphs(model: DDRF, card: ModelCard, unrolled_steps: tuple[int, ...], small: dict[str, torch.Tensor],
                     image_axes: dict[int, str]) -> dict[str, onnx.ModelProto]:
    """sampler_k{K} per step count, and with scene statistics the scene pass scene_k{K} that feeds it."""
    graphs = {}
    schedule = CosineSchedule.from_dict(card.schedule)
    # a cropped output is smaller than the inputs: its axes get their own names
    fused_axes = ({0: "batch", 2: "fused_height", 3: "fused_width"} if card.output_margin else image_axes)
    for steps in unrolled_steps:
        plan = make_plan(schedule, steps)
        images = (small["lms"], small["pan"], small["noise"])
        axes = {"lms": image_axes, "pan": image_axes, "noise": image_axes}
        if not card.scene_statistics:
            graphs[graph_stem("sampler", steps=steps)] = _to_onnx(
                UnrolledSamplerGraph(model, plan, card.target, card.residual, card.residual_scale,
                                     card.output_margin), images,
                ["lms", "pan", "noise"], ["fused"], {**axes, "fused": fused_axes})
            continue
        recorder = ScenePassGraph(model, plan, card.target, card.residual, card.residual_scale)
        graphs[graph_stem("scene", steps=steps)] = _to_onnx(
            recorder, images, ["lms", "pan", "noise"], list(SCENE_IO), {**axes, "scene_tokens": {3: "tokens"}})
        with torch.no_grad():
            scene = recorder(*images)
        graphs[graph_stem("sampler", steps=steps)] = _to_onnx(
            SceneSamplerGraph(model, plan, card.target, card.residual, card.residual_scale, card.output_margin),
            (*images, *scene), ["lms", "pan", "noise", *SCENE_IO], ["fused"],
            {**axes, "scene_stats": {}, "scene_tokens": {3: "tokens"}, "fused": fused_axes})
        if card.staged and steps == 1:
            graphs.update(_staged_graphs(model, card, plan, images, scene, image_axes))
    return graphs


def _staged_graphs(model: DDRF, card: ModelCard, plan: SamplerPlan, images: tuple[torch.Tensor, ...],
                   scene: tuple[torch.Tensor, torch.Tensor], image_axes: dict[int, str]) -> dict[str, onnx.ModelProto]:
    """staged_entry_k1, staged_deep_k1 and staged_decoder_k1 (ddrf.model.staged), traced over `images` with the
    statistics `scene` that the 1-step scene pass recorded over them."""
    starts = owner_starts(model, *scene)  # by module identity: found here, outside every traced forward
    args = (model, plan, card.target, card.residual, card.residual_scale, card.staged["split"], starts)
    entry_graph, deep_graph, decoder_graph = StagedEntryGraph(*args), StagedDeepGraph(*args), StagedDecoderGraph(*args)
    with torch.no_grad():
        entry, pooled = entry_graph(*images, *scene)
        deep = deep_graph(entry, pooled, *scene)
    map_axes = {0: "batch", 2: "map_height", 3: "map_width"}  # level `split`'s resolution
    scene_axes = {"scene_stats": {}, "scene_tokens": {3: "tokens"}}
    image_names = ["lms", "pan", "noise"]
    return {
        graph_stem("staged_entry", steps=1): _to_onnx(
            entry_graph, (*images, *scene), [*image_names, *SCENE_IO], ["entry", "pooled"],
            {**dict.fromkeys(image_names, image_axes), **scene_axes, "entry": map_axes, "pooled": map_axes}),
        graph_stem("staged_deep", steps=1): _to_onnx(
            deep_graph, (entry, pooled, *scene), ["entry", "pooled", *SCENE_IO], ["deep"],
            {**dict.fromkeys(("entry", "pooled", "deep"), map_axes), **scene_axes}),
        graph_stem("staged_decoder", steps=1): _to_onnx(
            decoder_graph, (*images, deep, *scene), [*image_names, "deep", *SCENE_IO], ["fused"],
            {**dict.fromkeys([*image_names, "fused"], image_axes), **scene_axes, "deep": map_axes}),
    }


def export_model(model: DDRF, card: ModelCard, out_dir: str | Path, unrolled_steps: tuple[int, ...] = (),
                 fp16: bool = True, overwrite: bool = False) -> ExportResult:
    """Write card.json and the FP32 (and FP16) graphs into `out_dir`, all or nothing; `card` is not changed."""
    out_dir = Path(out_dir)
    graphs = {stem: clean_graph(g) for stem, g in build_graphs(model, card, unrolled_steps).items()}
    if fp16:
        graphs.update({f"{stem}_fp16": to_fp16(g) for stem, g in list(graphs.items())})
    embedded = ModelCard.from_dict(card.to_dict())  # graphs carry the card without their own hashes
    serialised = {stem: _with_card(graph, embedded, stem).SerializeToString() for stem, graph in graphs.items()}
    written = write_model_dir(out_dir, card, serialised, overwrite)
    return ExportResult(out_dir, {stem: out_dir / f"{stem}{ONNX_SUFFIX}" for stem in graphs}, written)
