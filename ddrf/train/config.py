"""Training configuration: a YAML file of sections, with `section.key=value` overrides from the command line."""
from __future__ import annotations

import copy
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ddrf.card import CALIBRATION_FIELDS, LMS_BORDERS, fits


@dataclass
class DataConfig:
    source: str = ""  # fusebox:DIR | pancollection:FILE.h5 | geotiff:PAN.tif,MS.tif[,MS2.tif...]
    test_acquisitions: list[str] = field(default_factory=lambda: ["P034R032"])  # held out, never trained on
    scenes: list[int] | None = None  # FuseBox scene numbers (None: all)
    bands: list[str] | None = None  # band names (FuseBox selection; names for PanCollection / GeoTIFF)
    sensor: str | None = None  # Wald degradation sensor (default: the pair's)
    bits: int | None = None  # bit depth (default: the pair's; PanCollection: from divisor)
    divisor: float | None = None  # PanCollection DN divisor (None: the reader's default for the file)
    ratio: int | None = None  # PanCollection ratio (None: from the array shapes)
    lms: str = "interp23"  # PanCollection LMS: recompute by interp23 (as at runtime) or take the file's
    lms_border: str = "symmetric"  # interp23 border: symmetric (like a tile with its halo) or circular (toolbox)
    normalisation: str = "bit_depth"  # Wald pairs: bit_depth | scene (per-image percentiles; carries across sensors)
    percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])  # scene normalisation: low, high
    simulate_ratio: int | None = None  # Wald pairs: simulate this ratio (4) from ratio-2 pairs (Landsat)
    patch: int = 64  # square patch size on the PAN grid
    augment: bool = True  # random flips and 90-degree rotations
    # one random band per patch: the model fuses one band at a time with weights shared by all bands, so it takes
    # any band set (the card's band_wise)
    band_wise: bool = False
    # distillation: a model directory whose output through ddrf-run's tiled path (ONNX Runtime, its default steps)
    # replaces the reference of every Wald pair; with teacher_full_resolution the pairs also join undegraded, the
    # teacher's full-resolution output their reference (data no reference exists for otherwise)
    teacher: str | None = None
    teacher_full_resolution: bool = False


SERVING_FIELDS = {"halo", "scene_statistics", "staged", *CALIBRATION_FIELDS}


@dataclass
class ModelSection:
    preset: str = "small"  # small | small_v2 (tile-invariant) | reference
    overrides: dict[str, Any] = field(default_factory=dict)  # any DDRFConfig field
    # warm start: a run directory or .safetensors whose EMA weights start this run (new optimiser and LR schedule);
    # its topology must match; residual_scale=auto takes its scale (the weights learned that scale), a number
    # rescales its output layer to that scale
    init: str | None = None
    # card fields the run's checkpoints carry for serving, kept from a base model (ddrf-finetune sets them): its halo,
    # scene statistics and staged graphs (the same topology needs them to stay tile-invariant) and its spread
    # calibration (inherited, not refitted), so that any export of the run serves as the base does
    serving: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiffusionConfig:
    target: str = "x0"
    residual: bool = True
    num_timesteps: int = 1000
    s: float = 0.008
    sampling_steps: int = 4  # recorded in the card as the deployment default
    # multiplies HRMS - LMS: a number, or "auto" = 1 / std of the residual over `scale_patches` training patches
    residual_scale: float | str = 1.0
    scale_patches: int = 512


@dataclass
class OptimConfig:
    steps: int = 10000
    batch: int = 16  # global batch (split over DDP ranks)
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup: int = 500  # linear warm-up steps, then cosine to min_lr_ratio * lr
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.995
    ema_start: int = 0  # before this step the EMA copies the weights
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; CUDA only, fp32 elsewhere)
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: leave torch's default)
    device: str = "auto"  # auto | cpu | cuda
    max_minutes: float | None = None  # end this invocation (saving) once it has trained this long: a time budget


@dataclass
class LogConfig:
    every: int = 10  # CSV log interval (steps)
    checkpoint_every: int = 1000  # checkpoint + resume state interval (steps); the last step always saves
    progress: bool = True  # tqdm progress bar
    tensorboard: bool = False  # if the tensorboard package is installed


SECTIONS = {"data": DataConfig, "model": ModelSection, "diffusion": DiffusionConfig, "optim": OptimConfig,
            "log": LogConfig}


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "TrainConfig":
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a mapping of sections {sorted(SECTIONS)}")
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise ValueError(f"{where}: unknown section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}")
        parts = {name: _section(SECTIONS[name], d.get(name) or {}, f"{where}: {name}") for name in SECTIONS}
        _type_model_section(parts["model"], where)
        cfg = cls(**parts)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "config") -> None:
        checks = [
            (self.diffusion.target in ("eps", "x0", "v"), "diffusion.target must be eps, x0 or v"),
            (self.model.preset in ("small", "small_v2", "reference"),
             "model.preset must be small, small_v2 or reference"),
            (self.optim.steps >= 1 and self.optim.batch >= 1, "optim.steps and optim.batch must be >= 1"),
            (math.isfinite(self.optim.lr) and self.optim.lr >= 0,
             "optim.lr, the learning rate, must be a finite number >= 0"),
            (len(self.optim.betas) == 2 and all(0 <= b < 1 for b in self.optim.betas),
             "optim.betas must be two numbers in [0, 1)"),
            (self.optim.precision in ("fp32", "bf16", "fp16"), "optim.precision must be fp32, bf16 or fp16"),
            (self.optim.device in ("auto", "cpu", "cuda"), "optim.device must be auto, cpu or cuda"),
            (self.optim.threads is None or self.optim.threads >= 1, "optim.threads must be >= 1"),
            (self.diffusion.sampling_steps >= 1, "diffusion.sampling_steps must be >= 1"),
            (0 <= self.optim.ema_decay < 1, "optim.ema_decay must be in [0, 1)"),
            (self.data.patch >= 2, "data.patch must be >= 2"),
            (self.diffusion.residual_scale == "auto" or (isinstance(self.diffusion.residual_scale, (int, float))
                                                         and self.diffusion.residual_scale > 0),
             "diffusion.residual_scale must be a positive number or auto"),
            (self.data.lms in ("interp23", "file"), "data.lms must be interp23 or file"),
            (set(self.model.serving) <= SERVING_FIELDS,
             f"model.serving takes {', '.join(sorted(SERVING_FIELDS))}"),
            (self.data.lms_border in LMS_BORDERS, f"data.lms_border must be one of {', '.join(LMS_BORDERS)}"),
            (self.log.every >= 1 and self.log.checkpoint_every >= 1, "log intervals must be >= 1"),
            (bool(self.data.teacher) or not self.data.teacher_full_resolution,
             "data.teacher_full_resolution needs data.teacher"),
            (not (self.data.teacher_full_resolution and self.data.simulate_ratio),
             "data.teacher_full_resolution takes the pairs at their own ratio, not with data.simulate_ratio"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"{where}: {msg}")


def _type_model_section(model: ModelSection, where: str) -> None:
    """model.overrides are the network's fields and model.serving the card's: typed by the same rules as the sections
    (else a YAML `dropout: 1e-1` reached torch as a string)."""
    from ddrf.card import ModelCard
    from ddrf.model.config import DDRFConfig

    model.overrides = _typed(DDRFConfig, model.overrides, f"{where}: model.overrides")
    known = {k: v for k, v in model.serving.items() if k in SERVING_FIELDS}  # validate() names the others
    model.serving = {**model.serving, **_typed(ModelCard, known, f"{where}: model.serving")}


def _section(kind: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    try:
        return kind(**_typed(kind, d, where))
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _typed(kind: type, d: dict[str, Any], where: str) -> dict[str, Any]:
    """Each value as the field of `kind` it names says (the card's type rules, `ddrf.card.fits`), or one error naming
    the key; keys `kind` lacks are refused with those it has."""
    hints = typing.get_type_hints(kind)
    if unknown := set(d) - set(hints):
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(hints)}")
    typed = {k: _yaml_number(v, hints[k]) for k, v in d.items()}
    for k, v in typed.items():
        if not fits(v, hints[k]):
            written = str(kind.__annotations__[k]).replace(" | None", " or null")
            raise ValueError(f"{where}: {k} must be {written}, got {v!r}")
    return typed


def _yaml_number(value: Any, hint: Any) -> Any:
    """YAML 1.1 reads `1e-4` (no dot) as a string: where the type takes a float, such a string is that number."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return next((v for v in (_yaml_number(value, a) for a in args) if fits(v, hint)), value)
    if origin in (list, tuple) and isinstance(value, list):
        return [_yaml_number(item, args[0]) for item in value]
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`optim.steps=200`, `model.overrides.base_width=8`: dotted keys, YAML-parsed values."""
    out = copy.deepcopy(d)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value (e.g. optim.steps=200)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(raw) if raw else None
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from defaults when path is None) and apply overrides."""
    raw: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path, where = Path(path), str(path)
        if not path.is_file():
            raise ValueError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    return TrainConfig.from_dict(apply_overrides(raw, overrides or []), where)
