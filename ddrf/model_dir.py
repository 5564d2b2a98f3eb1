"""The model directory: one folder per exported model, the names of its files, and the checks that they fit its card.

    card.json                 the model card (its `hashes` record the sha256 of every graph the export wrote)
    encoder.onnx              condition encoder: lms, pan -> cond_0 .. cond_{n-1}
    denoiser.onnx             step denoiser: x_t, t, cond_* -> prediction
    sampler_k{K}.onnx         optional: the K-step sampler unrolled into one graph: lms, pan, noise -> fused
                              (+ scene_stats, scene_tokens in when the card has scene_statistics)
    scene_k{K}.onnx           with scene_statistics: the K-step sampler over a scene's context windows, recording
                              lms, pan, noise -> scene_stats, scene_tokens
    staged_entry_k1.onnx      with the card's `staged` (ddrf.model.staged; K = 1 only): the shallow encoder,
                              lms, pan, noise, scene_* -> entry, pooled (both at 1/2^split resolution)
    staged_deep_k1.onnx       the deep levels over that map: entry, pooled, scene_* -> deep
    staged_decoder_k1.onnx    the shallow encoder again and decoder, then the sampler's update: lms, pan, noise,
                              deep, scene_* -> fused (the whole window)
    *_fp16.onnx               FP16 variants;  *.plan + *.plan.json: TensorRT engines and their sidecars

The export writes it (`write_model_dir`), the engine builder adds plans, the runtime and the profiler read it
(`ModelDir`). Plain Python: the torch-free runtime and the torch export both import it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from ddrf.card import ModelCard, read_card
from ddrf.files import publish_all, sha256_file, stage_bytes

CARD_NAME = "card.json"
CARD_METADATA_KEY = "ddrf_card"  # the card's JSON in an ONNX graph's metadata and in a safetensors header
GRAPH_ROLE_KEY = "ddrf_graph"  # which stage an ONNX graph is (its file stem), in its metadata
STAGED_STAGES = ("staged_entry", "staged_deep", "staged_decoder")  # file stems {stage}_k{K}
STAGES = ("encoder", "denoiser", "sampler", "scene", *STAGED_STAGES)
PRECISIONS = ("fp32", "fp16")
ONNX_SUFFIX = ".onnx"
PLAN_SUFFIX = ".plan"
SIDECAR_SUFFIX = ".json"  # an engine's sidecar: <engine file name>.json
COND_PREFIX = "cond_"
SAMPLER_PREFIX = "sampler_k"  # sampler_k{K}: the K-step unrolled sampler
SCENE_PREFIX = "scene_k"  # scene_k{K}: its scene-statistics pass
SCENE_IO = ("scene_stats", "scene_tokens")  # what the scene pass records and the sampler replays
# The scene pass sees at most this many PAN pixels, in at most CONTEXT_BATCH windows of at most CONTEXT_SIDE a side
# (ddrf.scenes.tiling.context_windows chooses them); TensorRT profiles of the scene graphs are sized from these.
CONTEXT_PIXELS, CONTEXT_BATCH, CONTEXT_SIDE = 256 * 256, 4, 256
FP16_TAIL = "_fp16"
# Graph I/O by stage: named inputs, named outputs; the condition tensors cond_0.. are matched by prefix.
GRAPH_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "encoder": (("lms", "pan"), ()),
    "denoiser": (("x_t", "t"), ("prediction",)),
    "sampler": (("lms", "pan", "noise"), ("fused",)),
    "scene": (("lms", "pan", "noise"), SCENE_IO),
    "staged_entry": (("lms", "pan", "noise", *SCENE_IO), ("entry", "pooled")),
    "staged_deep": (("entry", "pooled", *SCENE_IO), ("deep",)),
    "staged_decoder": (("lms", "pan", "noise", "deep", *SCENE_IO), ("fused",)),
}

# What a graph computes and how the runtime must feed and read it: card.json must say of these what the card the
# export wrote into each graph's metadata says, or the output is silently wrong. Not compared: the spread fit that
# ddrf-eval --fit-spread and steps_samples.py --write-calibration add to card.json after the export, training notes,
# hashes, and the serving defaults that ddrf-run's --halo and --steps override anyway (any halo is served right: a
# window is widened where the output margin exceeds its border; a step count without graphs is refused by name).
GRAPH_FACTS = ("model", "bands", "guide_bands", "ratio", "band_wise", "normalisation", "lms_border", "schedule",
               "target", "residual", "residual_scale", "scene_statistics", "output_margin", "staged")


class ModelDirError(ValueError):
    """A model directory, or one of its files, does not fit its card; the message names the file."""


def graph_stem(stage: str, precision: str = "fp32", steps: int | None = None) -> str:
    """File stem of a graph: encoder, denoiser, sampler_k{steps}, scene_k{steps} or staged_*_k{steps}, with an
    _fp16 suffix for FP16."""
    if stage not in STAGES:
        raise ValueError(f"unknown graph stage {stage!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
    stem = {"sampler": f"{SAMPLER_PREFIX}{steps}", "scene": f"{SCENE_PREFIX}{steps}"}.get(stage, stage)
    stem = f"{stage}_k{steps}" if stage in STAGED_STAGES else stem
    return stem if precision == "fp32" else stem + FP16_TAIL


def sidecar_path_for(engine_path: str | os.PathLike[str]) -> Path:
    """model.plan -> model.plan.json"""
    path = Path(engine_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def condition_names(count: int) -> list[str]:
    return [f"{COND_PREFIX}{i}" for i in range(count)]


@dataclass(frozen=True)
class ModelDir:
    root: Path
    card: ModelCard

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "ModelDir":
        root = Path(path)
        if root.is_file() and root.name == CARD_NAME:
            root = root.parent
        if not root.is_dir():
            raise ModelDirError(f"{root}: not a model directory (expected a folder with {CARD_NAME} and ONNX graphs)")
        card_path = root / CARD_NAME
        if not card_path.is_file():
            raise ModelDirError(f"{root}: no {CARD_NAME} in the model directory")
        return cls(root, read_card(card_path))

    def path(self, stage: str, precision: str = "fp32", steps: int | None = None, suffix: str = ONNX_SUFFIX) -> Path:
        """Where a graph (suffix .onnx) or engine (.plan) of this model lives, whether or not it exists."""
        return self.root / (graph_stem(stage, precision, steps) + suffix)

    def graph(self, stage: str, precision: str = "fp32", steps: int | None = None, suffix: str = ONNX_SUFFIX) -> Path:
        """An existing graph or engine, its sha256 checked where the card records one; MissingGraph if absent."""
        path = self.path(stage, precision, steps, suffix)
        if not path.is_file():
            raise MissingGraph(self._missing(path, stage, precision, steps))
        self.check_hash(path)
        return path

    def _missing(self, path: Path, stage: str, precision: str, steps: int | None) -> str:
        """What to run for an absent graph or engine: TensorRT engines are built from the ONNX graphs (FP32 or FP16)
        on the machine that runs them; a scene-statistics model needs its K-step scene and sampler graphs."""
        other = next((p for p in PRECISIONS if p != precision), precision)
        built = self.path(stage, other, steps, path.suffix)
        if path.suffix != ONNX_SUFFIX and built.is_file():  # ddrf-export engine builds FP16 engines only
            return (f"{path}: missing; the engine built for this model is {built.name} ({other}): ask for that "
                    f"precision (--precision {other})")
        if path.suffix != ONNX_SUFFIX and any(self.path(stage, p, steps).is_file() for p in PRECISIONS):
            return (f"{path}: missing; build the TensorRT engines from this model's ONNX graphs with ddrf-export "
                    f"engine {self.root} (on a machine with TensorRT and the NVIDIA GPU that will run them)")
        if stage in STAGED_STAGES:
            return (f"{path}: missing; export the staged graphs with ddrf-export onnx WEIGHTS --scene-statistics "
                    f"--unrolled {steps} --staged")
        if self.card.scene_statistics:
            return (f"{path}: missing; a model with scene statistics runs through the {steps}-step scene and sampler "
                    f"graphs: export them with ddrf-export onnx WEIGHTS --scene-statistics --unrolled {steps}")
        return f"{path}: missing (export it with ddrf-export)"

    def check_hash(self, path: Path) -> None:
        """The graph is the one the card records; one the card does not list, beside graphs it does, is another
        export's leftover (cards without hashes, written by hand or before them, are not checked)."""
        expected = self.card.hashes.get(path.name)
        if expected is None and self.card.hashes and path.suffix == ONNX_SUFFIX:
            raise ModelDirError(f"{path}: not one of the graphs {self.root / CARD_NAME} records (left by another "
                                f"export?); remove it, or export the model again")
        if expected is not None and sha256_file(path) != expected:
            raise ModelDirError(f"{path}: sha256 differs from the one {self.root / CARD_NAME} records "
                                "(the file was changed or belongs to another export)")

    def check_io(self, stage: str, path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        """The graph's tensor names are the layout's, and its condition tensors are the ones the encoder makes."""
        fixed_in, fixed_out = GRAPH_IO[stage]
        if stage == "sampler" and self.card.scene_statistics:
            fixed_in += SCENE_IO
        cond_in = [n for n in inputs if n.startswith(COND_PREFIX)]
        cond_out = [n for n in outputs if n.startswith(COND_PREFIX)]
        expected_in = list(fixed_in) + condition_names(len(cond_in))
        expected_out = list(fixed_out) + condition_names(len(cond_out))
        if stage == "encoder" and not cond_out:
            expected_out.append(f"{COND_PREFIX}0")
        if sorted(inputs) != sorted(expected_in) or sorted(outputs) != sorted(expected_out):
            raise ModelDirError(f"{path}: graph tensors {list(inputs)} -> {list(outputs)} are not a {stage} of "
                                f"{self.root / CARD_NAME} (expected {expected_in} -> {expected_out})")

    def check_condition(self, encoder_outputs: Sequence[str], denoiser_inputs: Sequence[str]) -> None:
        """The denoiser takes exactly the condition tensors the encoder makes (graphs of one export)."""
        made = sorted(n for n in encoder_outputs if n.startswith(COND_PREFIX))
        taken = sorted(n for n in denoiser_inputs if n.startswith(COND_PREFIX))
        if made != taken:
            raise ModelDirError(f"{self.root}: the encoder makes {len(made)} condition tensors but the denoiser takes "
                                f"{len(taken)}; the graphs come from different exports")

    def check_channels(self, path: Path, shapes: Mapping[str, Sequence[object]]) -> None:
        """Static channel counts of the image inputs agree with the card's band lists (one band if band-wise)."""
        bands, guides = self.card.graph_bands, len(self.card.guide_bands)
        wanted = {"lms": bands, "x_t": bands, "noise": bands, "pan": guides}
        for name, shape in shapes.items():
            channels = shape[1] if len(shape) == 4 else None
            if name in wanted and isinstance(channels, int) and channels != wanted[name]:
                listed = self.card.guide_bands if name == "pan" else (
                    ["one band at a time"] if self.card.band_wise else self.card.bands)
                raise ModelDirError(f"{path}: input {name} has {channels} channels, but {self.root / CARD_NAME} "
                                    f"lists {wanted[name]} ({', '.join(listed)})")

    def check_card(self, path: Path, metadata: Mapping[str, str]) -> None:
        """card.json says of every GRAPH_FACTS field what the graph's own card (in its metadata) says; a field that
        card lacks (the graph was exported before the field existed) is not compared."""
        if CARD_METADATA_KEY not in metadata:
            return
        try:
            written = json.loads(metadata[CARD_METADATA_KEY])
            own = ModelCard.from_dict(written)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ModelDirError(f"{path}: the card in its metadata is not a valid model card ({exc})") from exc
        for name in (n for n in GRAPH_FACTS if n in written and getattr(self.card, n) != getattr(own, n)):
            said, exported = (json.dumps(getattr(card, name), default=vars) for card in (self.card, own))
            raise ModelDirError(f"{self.root / CARD_NAME}: {name} is {said}, but {path.name} was exported with "
                                f"{exported} (the card in its metadata); restore card.json or export the model again")

    def unrolled_steps(self, precision: str = "fp32") -> list[int]:
        """Step counts for which an unrolled sampler graph exists."""
        tail = (FP16_TAIL if precision == "fp16" else "") + ONNX_SUFFIX
        found = []
        for p in self.root.glob(f"{SAMPLER_PREFIX}*{tail}"):
            digits = p.name[len(SAMPLER_PREFIX):-len(tail)]
            if digits.isdigit():
                found.append(int(digits))
        return sorted(found)

    def graph_stages(self) -> list[tuple[str, int | None]]:
        """(stage, steps) of every graph: encoder and denoiser in either precision, then the FP32 unrolled samplers."""
        fixed: list[tuple[str, int | None]] = [(s, None) for s in ("encoder", "denoiser")
                 if any(self.path(s, precision).is_file() for precision in PRECISIONS)]
        unrolled = self.unrolled_steps("fp32")
        return fixed + [("sampler", k) for k in unrolled] + [("scene", k) for k in unrolled
                                                              if self.path("scene", "fp32", k).is_file()]


class MissingGraph(ModelDirError):
    """A graph or engine the run needs is not in the model directory (not exported or not built)."""


def write_model_dir(out_dir: str | os.PathLike[str], card: ModelCard, graphs: Mapping[str, bytes],
                    overwrite: bool = False) -> ModelCard:
    """Write serialised graphs (file stem -> bytes) and a card recording their sha256, all or nothing.

    Returns the card as written; the caller's card is not changed. The card is renamed into place last. With
    `overwrite`, the graphs of the model it replaces that this export does not write, and the TensorRT engines built
    from its graphs, are removed after it (a leftover sampler_k1.onnx or encoder_fp16.plan of an earlier export
    would otherwise still be run with the new card).
    """
    out = Path(out_dir)
    engines = _layout_engines(out)  # built from the graphs replaced here: they would run the old network
    targets = [out / f"{stem}{ONNX_SUFFIX}" for stem in graphs] + [out / CARD_NAME] + engines
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: already exists (use --overwrite to replace)")
    out.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[Path, Path]] = []
    try:
        hashes: dict[str, str] = {}  # this export's graphs only: an earlier export's are not this model's
        for stem, data in graphs.items():
            final = out / f"{stem}{ONNX_SUFFIX}"
            pending.append((stage_bytes(final, data), final))
            hashes[final.name] = sha256_file(pending[-1][0])
        written = replace(card, hashes=hashes)
        pending.append((stage_bytes(out / CARD_NAME, (written.to_json() + "\n").encode()), out / CARD_NAME))
    except BaseException:
        for temp, _ in pending:
            temp.unlink(missing_ok=True)
        raise
    publish_all(pending)
    for leftover in (p for p in out.glob(f"*{ONNX_SUFFIX}") if p.name not in hashes and is_graph_name(p.name)):
        leftover.unlink()
    for engine in engines:
        engine.unlink(missing_ok=True)
    return written


def _layout_engines(out: Path) -> list[Path]:
    """The TensorRT engines of the layout in `out` and their sidecars (`ddrf-export engine` writes them)."""
    plans = [p for p in out.glob(f"*{PLAN_SUFFIX}") if is_graph_name(p.name.removesuffix(PLAN_SUFFIX) + ONNX_SUFFIX)]
    return plans + [sidecar_path_for(p) for p in plans if sidecar_path_for(p).exists()]


def is_graph_name(name: str) -> bool:
    """A file name of the model directory's graph layout (encoder, denoiser, sampler_k{K}, scene_k{K},
    staged_*_k{K}; FP16 too)."""
    stem = name.removesuffix(ONNX_SUFFIX).removesuffix(FP16_TAIL)
    prefixes = (SAMPLER_PREFIX, SCENE_PREFIX, *(f"{stage}_k" for stage in STAGED_STAGES))
    return name.endswith(ONNX_SUFFIX) and (stem in ("encoder", "denoiser") or any(
        stem.startswith(prefix) and stem[len(prefix):].isdigit() for prefix in prefixes))
