"""ONNX -> TensorRT plan, with optimisation profiles, a persistent timing cache and a sidecar. TensorRT 8.6..11.

Precision: on TensorRT <= 10, FP16 comes from BuilderFlag.FP16 applied to an FP32 ONNX (weak typing). TensorRT 11
removed that flag: every network is strongly typed, so FP16 must already be in the ONNX (an FP16 or mixed export).
An FP16/mixed ONNX is also built strongly typed on 10.x, so the precisions the export chose (FP32 norms and softmax)
are kept. EXPLICIT_BATCH is set on 8.x only (ignored on 10, gone on 11). Enum members are used by name throughout.

Over 300 lines on purpose: one build and the version differences it must handle, followed by its one caller for a
whole model directory; splitting them would scatter the TensorRT version rules.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ddrf.card import ModelCard, default_window
from ddrf.engines.probe import dims_to_list, environment, load_tensorrt, make_logger, set_device
from ddrf.engines.sidecar import EngineSidecar, Profile
from ddrf.files import cannot_make, sha256_file, write_bytes_atomic, write_files_atomic
from ddrf.model_dir import (CARD_METADATA_KEY, CONTEXT_BATCH, CONTEXT_PIXELS, CONTEXT_SIDE, PLAN_SUFFIX, ModelDir,
                            sidecar_path_for)

if TYPE_CHECKING:
    import tensorrt as trt_t

log = logging.getLogger("ddrf.engines")

PRECISIONS = ("fp16", "fp32")
# A shape range: {"min": shape, "opt": shape, "max": shape} or (min, opt, max).
ShapeRange = Mapping[str, Sequence[int]] | Sequence[Sequence[int]]


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build the network; the message holds TensorRT's own errors."""


def _as_range(name: str, rng: ShapeRange) -> dict[str, list[int]]:
    if isinstance(rng, Mapping):
        shapes = [list(map(int, rng[k])) for k in ("min", "opt", "max")]
    else:
        shapes = [list(map(int, s)) for s in rng]
    if len(shapes) != 3:
        raise ValueError(f"profile for {name!r}: need min, opt and max shapes, got {len(shapes)}")
    lo, opt, hi = shapes
    if not len(lo) == len(opt) == len(hi):
        raise ValueError(f"profile for {name!r}: min/opt/max ranks differ: {lo} {opt} {hi}")
    if any(d < 1 for d in lo) or not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise ValueError(f"profile for {name!r}: need 1 <= min <= opt <= max per dimension: {lo} {opt} {hi}")
    return {"min": lo, "opt": opt, "max": hi}


def normalise_profiles(profiles: Mapping[str, ShapeRange] | Sequence[Mapping[str, ShapeRange]] | None
                       ) -> list[Profile]:
    """One profile (input -> range) or a list of them, validated, as the sidecar stores them."""
    if profiles is None:
        return []
    items = [profiles] if isinstance(profiles, Mapping) else list(profiles)
    return [{name: _as_range(name, rng) for name, rng in p.items()} for p in items]


def nchw_range(channels: int, tile: Sequence[int], batch: Sequence[int] = (1, 1, 1)) -> dict[str, list[int]]:
    """Range of an NCHW input over square tiles and batch sizes: tile = (min, opt, max) side, likewise batch."""
    return {k: [int(b), int(channels), int(t), int(t)] for k, b, t in zip(("min", "opt", "max"), batch, tile)}


def _trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def _onnx_has_fp16(onnx_path: Path) -> bool:
    """Whether the ONNX already carries FP16 tensors (an FP16/mixed export). False when onnx is not installed."""
    try:
        import onnx
    except ImportError:
        return False
    model = onnx.load(str(onnx_path), load_external_data=False)
    half = onnx.TensorProto.FLOAT16
    g = model.graph
    if any(t.data_type == half for t in g.initializer):
        return True
    typed = list(g.input) + list(g.output) + list(g.value_info)
    if any(v.type.tensor_type.elem_type == half for v in typed):
        return True
    return any(n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute) for n in g.node)


def _strongly_typed(trt: Any, precision: str, onnx_path: Path, requested: bool | None) -> bool:
    major = _trt_major(trt)
    if major >= 11:
        return True
    has_flag = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if requested and not has_flag:
        raise EngineBuildError(f"TensorRT {trt.__version__} has no strongly typed networks (needs 9.1+)")
    if requested is not None:
        return requested
    return has_flag and precision == "fp16" and _onnx_has_fp16(onnx_path)


def _network_flags(trt: Any, strongly_typed: bool) -> int:
    flags = 0
    names = trt.NetworkDefinitionCreationFlag
    if _trt_major(trt) < 10 and hasattr(names, "EXPLICIT_BATCH"):
        flags |= 1 << int(names.EXPLICIT_BATCH)
    if strongly_typed and hasattr(names, "STRONGLY_TYPED"):
        flags |= 1 << int(names.STRONGLY_TYPED)
    return flags


def _parser_errors(parser: "trt_t.OnnxParser") -> list[str]:
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = f"node {err.node()}"
        for attr in ("node_operator", "node_name"):  # 9.1+: which op, which node
            if hasattr(err, attr):
                where += f" {getattr(err, attr)()}"
        out.append(f"{where}: {err.desc()}")
    return out


def _parse(trt: Any, builder: "trt_t.Builder", logger: Any, onnx_path: Path, flags: int
           ) -> tuple["trt_t.INetworkDefinition", "trt_t.OnnxParser"]:
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file, so external weights beside it are found
        details = "\n  ".join(_parser_errors(parser) or logger.errors or ["(no details)"])
        raise EngineBuildError(f"TensorRT {trt.__version__} could not parse {onnx_path}:\n  {details}")
    return network, parser


def _network_io(network: "trt_t.INetworkDefinition") -> list[dict[str, Any]]:
    io = []
    for mode, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            t = get(i)
            io.append({"name": t.name, "mode": mode, "dtype": t.dtype.name, "shape": dims_to_list(t.shape)})
    return io


def _has_half(trt: Any, network: "trt_t.INetworkDefinition") -> bool:
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if any(layer.get_output(j).dtype == trt.float16 for j in range(layer.num_outputs)):
            return True
    return False


def _add_profiles(trt: Any, builder: "trt_t.Builder", config: "trt_t.IBuilderConfig", network: "trt_t.INetworkDefinition",
                  profiles: list[Profile]) -> None:
    """Add each profile; every dynamic input must be covered, and only inputs of the network may be named."""
    inputs = {network.get_input(i).name: dims_to_list(network.get_input(i).shape) for i in range(network.num_inputs)}
    dynamic = {n for n, s in inputs.items() if any(d < 0 for d in s)}
    for k, prof in enumerate(profiles):
        unknown = set(prof) - set(inputs)
        if unknown:
            raise EngineBuildError(f"profile {k} names {sorted(unknown)}, not inputs of the network {sorted(inputs)}")
        missing = dynamic - set(prof)
        if missing:
            raise EngineBuildError(f"profile {k} gives no shape range for dynamic inputs {sorted(missing)}")
        p = builder.create_optimization_profile()
        for name, rng in prof.items():
            if len(rng["min"]) != len(inputs[name]):
                raise EngineBuildError(f"profile {k}: {name} has rank {len(inputs[name])}, range {rng['min']}")
            p.set_shape(name, trt.Dims(rng["min"]), trt.Dims(rng["opt"]), trt.Dims(rng["max"]))
        config.add_optimization_profile(p)
    if dynamic and not profiles:
        raise EngineBuildError(f"the network has dynamic inputs {sorted(dynamic)}: give optimisation profiles "
                               "(min/opt/max shape per input)")


def check_timing_cache(path: Path) -> None:
    """The timing cache is written after each build: a path it cannot take is refused before the first one."""
    problem = "is a directory" if path.is_dir() else cannot_make(path.parent)
    if problem:
        raise ValueError(f"{path}: --timing-cache cannot be written ({problem})")


def _attached_cache(config: "trt_t.IBuilderConfig", data: bytes) -> Any | None:
    """The cache made from `data` once attached to `config`, or None. TensorRT answers with return values, not
    exceptions: create_timing_cache gives None for bytes it cannot read (another TensorRT version, a damaged file),
    set_timing_cache False for a cache timed on another GPU (strict check: ignore_mismatch=False)."""
    try:
        cache = config.create_timing_cache(data)
    except Exception:  # a binding that raises instead: the same answer
        return None
    return cache if cache is not None and config.set_timing_cache(cache, False) else None


def _load_timing_cache(config: "trt_t.IBuilderConfig", path: Path | None) -> None:
    """Attach the cache at `path` (or a fresh one). One from another TensorRT or GPU starts an empty cache rather
    than failing the build, or leaving the config without a cache to save after it."""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = _attached_cache(config, data)
    if cache is None and data:
        log.warning("timing cache %s was made by another TensorRT version or GPU (or is damaged); starting an "
                    "empty one", path)
        cache = _attached_cache(config, b"")
    if cache is None:
        raise EngineBuildError("TensorRT could not create an empty timing cache")


def _configure(trt: Any, builder: "trt_t.Builder", network: "trt_t.INetworkDefinition", precision: str,
               typed: bool, profiles: list[Profile], workspace_bytes: int | None, optimization_level: int,
               timing_cache: Path | None, detailed_profiling: bool) -> "trt_t.IBuilderConfig":
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if hasattr(config, "builder_optimization_level"):  # 8.6+
        config.builder_optimization_level = int(optimization_level)
    if detailed_profiling:  # layer names and tactics in the profile and the inspector, at no run-time cost
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if precision == "fp16" and not typed:
        config.set_flag(trt.BuilderFlag.FP16)
    _add_profiles(trt, builder, config, network, profiles)
    _load_timing_cache(config, timing_cache)
    return config


def _onnx_card(onnx_path: Path) -> dict[str, Any] | None:
    """The model card the export stored in the ONNX metadata, when onnx is installed and it is there."""
    try:
        import json

        import onnx

        meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        return dict(json.loads(meta[CARD_METADATA_KEY])) if CARD_METADATA_KEY in meta else None
    except Exception:
        return None


def build_engine(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], precision: str = "fp16",
                 profiles: Mapping[str, ShapeRange] | Sequence[Mapping[str, ShapeRange]] | None = None,
                 workspace_bytes: int | None = None, optimization_level: int = 3,
                 timing_cache: str | os.PathLike[str] | None = None, strongly_typed: bool | None = None,
                 card: Mapping[str, Any] | None = None, detailed_profiling: bool = True, device: int = 0,
                 sidecar_path: str | os.PathLike[str] | None = None, command: str | None = None) -> EngineSidecar:
    """Build a TensorRT plan from an ONNX file and write it with its sidecar (engine_path + '.json').

    Raises EngineUnavailable (no TensorRT or no GPU), EngineBuildError (parse/build failed), ValueError (bad
    arguments). On any error nothing is written at engine_path or the sidecar path.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    if not 0 <= optimization_level <= 5:
        raise ValueError(f"optimization_level must be 0..5, got {optimization_level}")
    profs = normalise_profiles(profiles)
    trt = load_tensorrt()  # probes for a GPU first: creating a Builder without one can crash the process
    set_device(device)
    typed = _strongly_typed(trt, precision, onnx_path, strongly_typed)
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path, _network_flags(trt, typed))
    if _trt_major(trt) >= 11 and precision == "fp16" and not _has_half(trt, network):  # the parsed types decide
        raise EngineBuildError(f"TensorRT {trt.__version__} builds strongly typed networks only (BuilderFlag.FP16 "
                               f"is gone): {onnx_path} has no FP16 tensors. Export an FP16/mixed ONNX, or build "
                               "with precision='fp32'")
    cache_path = Path(timing_cache) if timing_cache is not None else None
    config = _configure(trt, builder, network, precision, typed, profs, workspace_bytes, optimization_level,
                        cache_path, detailed_profiling)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        details = "\n  ".join(logger.errors or ["(no details; rerun with logging at DEBUG)"])
        raise EngineBuildError(f"TensorRT {trt.__version__} could not build {onnx_path}:\n  {details}")
    data = bytes(memoryview(plan))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    env = environment(device)
    sidecar = EngineSidecar(
        tensorrt_version=str(trt.__version__), gpu_name=env["gpu_name"] or "",
        compute_capability=env["compute_capability"] or "", precision=precision,
        cuda_version=env["cuda_runtime_version"], driver_version=env["cuda_driver_version"], jetson=env["jetson"],
        strongly_typed=typed, profiles=profs, io=_network_io(network), onnx_path=str(onnx_path),
        onnx_sha256=sha256_file(onnx_path), engine_sha256=hashlib.sha256(data).hexdigest(),
        builder_optimization_level=optimization_level, workspace_bytes=workspace_bytes,
        timing_cache=str(cache_path) if cache_path else None,
        card=dict(card) if card is not None else _onnx_card(onnx_path), command=command)
    side = Path(sidecar_path) if sidecar_path is not None else sidecar_path_for(engine_path)
    # sidecar last: a crash between the renames leaves a sidecar whose engine_sha256 does not match, refused
    write_files_atomic([(engine_path, data), (side, (sidecar.to_json() + "\n").encode())])
    return sidecar


# --- a whole model directory (ddrf-export engine) -------------------------------------------------------------
def _ort_inputs(onnx_path: Path) -> dict[str, list[int | None]]:
    """Input name -> shape (None where dynamic), read with ONNX Runtime (a base dependency, unlike onnx)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return {i.name: [d if isinstance(d, int) else None for d in i.shape] for i in sess.get_inputs()}


def _cond_scales(encoder: Path, side: int) -> dict[str, int]:
    """cond_i -> how many times smaller than the tile its spatial size is, from one tiny CPU run of the encoder."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(encoder), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([1 if k == 0 else (d if isinstance(d, int) else side) for k, d in enumerate(i.shape)],
                              np.float32) for i in sess.get_inputs()}
    outs = sess.run(None, feeds)
    return {o.name: max(side // int(v.shape[2]), 1) for o, v in zip(sess.get_outputs(), outs) if v.ndim == 4}


def _input_range(shape: list[int | None], tiles: Sequence[int], batches: Sequence[int], scale: int
                 ) -> dict[str, list[int]]:
    """min/opt/max for one input: dynamic axis 0 is the batch, dynamic axes 2 and 3 the tile side / scale."""
    def dims(b: int, t: int) -> list[int]:
        return [d if d is not None else (b if k == 0 else max(t // scale, 1)) for k, d in enumerate(shape)]

    return {k: dims(b, t) for k, b, t in zip(("min", "opt", "max"), batches, tiles)}


def model_profile(onnx_path: Path, tiles: Sequence[int], batches: Sequence[int],
                  cond_scales: Mapping[str, int], multiple: int = 1) -> Profile:
    """Ranges of every dynamic input: images by tile and batch; a scene-statistics sampler's `scene_tokens`
    (A, 2, C, L) by the most tokens its scene pass can record (CONTEXT_PIXELS at the network's coarsest level)."""
    profile = {}
    for name, shape in _ort_inputs(onnx_path).items():
        if None not in shape:
            continue
        if name == "scene_tokens":
            most = CONTEXT_PIXELS // multiple ** 2
            profile[name] = {k: [d if d is not None else n for d in shape] for k, n in
                             (("min", 1), ("opt", most), ("max", most))}
        else:
            profile[name] = _input_range(shape, tiles, batches, cond_scales.get(name, 1))
    return profile


def window_profile(card: ModelCard, tile: int | None = None, max_tile: int | None = None, batch: int = 1,
                   max_batch: int = 1) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(min, opt, max) window sides and batches of the engines' profile. By default the window ddrf-run uses on a
    GPU for this model's halo (`ddrf.card.default_window`) is both the optimum and the largest, so that a default
    engine runs a default ddrf-run; batch 1, as ddrf-run's GPU default (a larger window instead of a batch). The
    smallest window keeps at least `multiple` pixels once the card's output margin is left out."""
    default = default_window(card.halo, "cuda")[0]
    tile = tile or default
    max_tile = max_tile or max(tile, default)
    multiple = card.size_multiple
    smallest = multiple + 2 * card.output_margin
    if any(v % multiple for v in (tile, max_tile)) or not smallest <= tile <= max_tile or not 1 <= batch <= max_batch:
        raise ValueError(f"need {smallest} <= tile <= max_tile, both multiples of {multiple}, and 1 <= batch <= "
                         f"max_batch; got tile {tile}, max_tile {max_tile}, batch {batch}, max_batch {max_batch}")
    return (smallest, tile, max_tile), (1, batch, max_batch)


def build_model_engines(model_dir: str | os.PathLike[str], tile: int | None = None, max_tile: int | None = None,
                        batch: int = 1, max_batch: int = 1, workspace_bytes: int | None = None,
                        optimization_level: int = 3,
                        timing_cache: str | os.PathLike[str] | None = None, overwrite: bool = False) -> list[Path]:
    """FP16 engines `<stem>_fp16.plan` (+ `.plan.json` sidecars) for every graph of a `ddrf-export onnx` directory.

    TensorRT <= 10 builds from the FP32 graphs with BuilderFlag.FP16; 11 from the `_fp16.onnx` graphs. Profiles
    span tiles of [multiple, max_tile] PAN pixels (optimal at `tile`) and batches [1, max_batch] (optimal `batch`).
    """
    model = ModelDir.open(model_dir)
    root, card = model.root, model.card
    multiple = card.size_multiple
    tiles, batches = window_profile(card, tile, max_tile, batch, max_batch)
    stages = model.graph_stages()
    if not stages:
        raise ValueError(f"{root}: no ONNX graphs (run ddrf-export onnx first)")
    targets = {(stage, k): model.path(stage, "fp16", k, PLAN_SUFFIX) for stage, k in stages}
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"engines exist: {existing}; pass --overwrite to replace them")
    if timing_cache is not None:
        check_timing_cache(Path(timing_cache))
    trt = load_tensorrt()  # before any work: a clear error where engines cannot be built
    prefer_fp16_graph = _trt_major(trt) >= 11
    cmd = (f"ddrf-export engine {root} --tile {tiles[1]} --max-tile {tiles[2]} --batch {batch} "
           f"--max-batch {max_batch} --optimization-level {optimization_level} --overwrite"
           + (f" --workspace-mb {workspace_bytes >> 20}" if workspace_bytes else "")
           + (f" --timing-cache {timing_cache}" if timing_cache else ""))
    scales: dict[str, int] = {}
    written = []
    for (stage, k), target in targets.items():
        fp32, fp16 = model.path(stage, "fp32", k), model.path(stage, "fp16", k)
        src = fp16 if (prefer_fp16_graph and fp16.is_file()) or not fp32.is_file() else fp32
        if stage == "denoiser" and not scales:
            encoder = model.path("encoder")
            scales = _cond_scales(encoder if encoder.is_file() else model.path("encoder", "fp16"), 2 * multiple)
        if stage == "scene":  # the context windows: at most CONTEXT_BATCH of at most CONTEXT_SIDE a side
            stage_tiles, stage_batches = (multiple, CONTEXT_SIDE // 2, CONTEXT_SIDE), (1, CONTEXT_BATCH, CONTEXT_BATCH)
        else:
            stage_tiles, stage_batches = tiles, batches
        build_engine(src, target, "fp16", profiles=model_profile(src, stage_tiles, stage_batches, scales, multiple),
                     workspace_bytes=workspace_bytes, optimization_level=optimization_level,
                     timing_cache=timing_cache, card=card.to_dict(), command=cmd)
        written.append(target)
    return written
