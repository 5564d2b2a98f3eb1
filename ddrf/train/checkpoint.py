"""Checkpoints: safetensors weights (model + EMA, the card in the metadata), a JSON card beside them, and a resume
state (optimizer, scheduler, scaler, step, RNG states). Every file is written atomically (temp + rename).

Layout of a run directory: model.safetensors, card.json, resume.pt, config.yaml, train_log.csv.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load, save as st_save

from ddrf.card import ModelCard, read_card, write_card
from ddrf.files import first_repeated, write_bytes_atomic
from ddrf.model_dir import CARD_METADATA_KEY, CARD_NAME

if TYPE_CHECKING:
    from ddrf.model import DDRF

WEIGHTS = "model.safetensors"
RESUME = "resume.pt"


def _tensors(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(run_dir: str | Path, model_state: dict[str, torch.Tensor], ema_state: dict[str, torch.Tensor],
                 card: ModelCard) -> None:
    """model.safetensors (keys model.* and ema.*, card JSON in the metadata) and card.json."""
    run_dir = Path(run_dir)
    data = st_save({**_tensors("model", model_state), **_tensors("ema", ema_state)},
                   metadata={CARD_METADATA_KEY: card.to_json()})
    write_bytes_atomic(run_dir / WEIGHTS, data)
    write_card(card, run_dir / CARD_NAME)


def _weights_path(path: str | Path) -> Path:
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    if not weights.is_file():
        raise ValueError(f"{weights}: checkpoint weights not found")
    return weights


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], ModelCard]:
    """(model state, EMA state, card) of a run directory or a .safetensors file."""
    weights = _weights_path(path)
    tensors, card, _ = _read_file(weights)
    split = {p: {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + ".")} for p in ("model", "ema")}
    return split["model"], split["ema"], _card_of_record(weights, card)


def _read_file(weights: Path) -> tuple[dict[str, torch.Tensor], ModelCard, str]:
    """Every tensor of a checkpoint file, the card it was trained with (its metadata) and the SHA-256 of the bytes they
    came from: one read, so the hash is that of the weights even if the file is replaced meanwhile."""
    try:
        data = weights.read_bytes()
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])  # safetensors: u64 size, JSON header
        text = (header.get("__metadata__") or {}).get(CARD_METADATA_KEY)
        if text is None:
            raise ValueError("no model card in its metadata")
        card = ModelCard.from_json(text)
        tensors = st_load(data)
    # JSON that is no card (other fields, not an object) raises TypeError or AttributeError
    except (SafetensorError, KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise ValueError(f"{weights}: not a ddrf checkpoint ({exc})") from exc
    return tensors, card, hashlib.sha256(data).hexdigest()


def _card_of_record(weights: Path, embedded: ModelCard) -> ModelCard:
    """The card.json beside the weights, where there is one: an export records there what serving needs (halo,
    scene statistics, calibrated spread, step count) and the weights' metadata keeps the card they were trained
    with. Refused when it describes another network."""
    beside = weights.parent / CARD_NAME
    if not beside.is_file():
        return embedded
    card = read_card(beside)
    differing = _differing_network(card, embedded)
    if differing:
        raise ValueError(f"{beside}: describes another network than {weights.name} ({', '.join(differing)} differ)")
    return card


def _differing_network(a: ModelCard, b: ModelCard) -> list[str]:
    """The card fields that make two cards describe different networks (or data conventions); the network
    configurations are compared with their defaults filled in (cards omit fields added later). A band-wise
    network's bands are those it was trained on, not part of it (fine-tuning adds the user's)."""
    from ddrf.model import DDRFConfig

    from ddrf.schedule import training_part

    fields: tuple[str, ...] = ("band_wise", "ratio", "residual", "residual_scale", "target")
    fields += () if a.band_wise and b.band_wise else ("bands",)
    same_model = DDRFConfig.from_dict(a.model) == DDRFConfig.from_dict(b.model)
    same_mapping = a.normalisation.mapping() == b.normalisation.mapping()
    same_schedule = training_part(a.schedule) == training_part(b.schedule)  # an export may move the sampler's steps
    return (([] if same_model else ["model"]) + ([] if same_mapping else ["normalisation"])
            + ([] if same_schedule else ["schedule"]) + [f for f in fields if getattr(a, f) != getattr(b, f)])


def load_checkpoint(path: str | Path, ema: bool = True,
                    device: str | torch.device = "cpu") -> tuple["DDRF", ModelCard]:
    """A DDRF model (EMA weights by default, eval mode) and its card, from a run directory or .safetensors file."""
    from ddrf.model import DDRF, DDRFConfig

    model_state, ema_state, card = read_weights(path)
    model = DDRF(DDRFConfig.from_dict(card.model))
    state = ema_state if ema else model_state
    state = state or model_state or ema_state  # an inference checkpoint holds one set only
    misfit = _misfit(model.state_dict(), state)
    if misfit:
        raise ValueError(f"{_weights_path(path)}: its tensors do not fit the network its card describes ({misfit})")
    model.load_state_dict(state)
    return model.to(device).eval(), card


def check_inference_target(path: str | Path, out_file: Path, overwrite: bool) -> None:
    """Where write_inference_weights may write, checked before an export writes anything: never over the checkpoint
    it reads (a training run's model.* weights would be lost), nor over a file the caller did not ask to replace."""
    if not out_file.exists():
        return
    if out_file.samefile(_weights_path(path)):
        raise ValueError(f"{out_file}: is the checkpoint this export reads; its weights are already there: drop "
                         "--weights, or choose another -o")
    if not overwrite:
        raise FileExistsError(f"{out_file}: already exists (use --overwrite to replace)")


def retire_inference_weights(path: str | Path, out_file: Path) -> bool:
    """After an --overwrite export without --weights: remove the replaced model's weights at `out_file`, which
    would otherwise be read as the new model's (ddrf-finetune --model, a re-export); the checkpoint exported is kept.
    Whether a file was removed."""
    if not out_file.is_file() or out_file.samefile(_weights_path(path)):
        return False
    out_file.unlink()
    return True


def _misfit(wanted: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    """What keeps `given` from loading into a network whose state is `wanted` (a card written for another network,
    or tensors from one): the first tensor missing, extra or of another shape; empty if it loads."""
    for name, tensor in wanted.items():
        if name not in given:
            return f"{name} missing"
        if given[name].shape != tensor.shape:
            return (f"{name} is {'x'.join(map(str, given[name].shape))}, the card's network has "
                    f"{'x'.join(map(str, tensor.shape))}")
    extra = sorted(set(given) - set(wanted))
    return f"{extra[0]} is no tensor of the card's network" if extra else ""


def write_inference_weights(path: str | Path, out_file: str | Path) -> None:
    """The EMA weights alone (what inference uses), with the card: half the size of a training checkpoint."""
    _, ema_state, card = read_weights(path)
    data = st_save(_tensors("ema", ema_state), metadata={CARD_METADATA_KEY: card.to_json()})
    write_bytes_atomic(out_file, data)


def average_weights(paths: list[Path], out_dir: Path, command: str, overwrite: bool = False) -> ModelCard:
    """Write to `out_dir` the uniform mean of the EMA weights of checkpoints of one network (a "model soup": a run
    warm-started from another stays in its basin, where the mean of the two usually scores at least as well as
    either). The card is the one the first checkpoint's weights carry, less any spread calibration (fitted on other
    weights), its `training.averaged_from` naming each input with its SHA-256 and command."""
    if len(paths) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    if out_dir.exists() and not out_dir.is_dir():  # before: a raw "File exists" once every checkpoint was read
        raise ValueError(f"{out_dir}: exists and is not a directory (ddrf-export average writes {WEIGHTS} and "
                         f"{CARD_NAME} into a directory; --overwrite replaces those, never a file in its place)")
    files = [_weights_path(p) for p in paths]
    twice = first_repeated(files)
    if twice is not None:
        raise ValueError(f"{files[twice]}: given twice; the mean would weigh it double (name each checkpoint once)")
    target = (out_dir / WEIGHTS).resolve()
    if target in {f.resolve() for f in files}:
        raise ValueError(f"{out_dir}: is one of the checkpoints averaged; write the mean elsewhere")
    for existing in (target, out_dir / CARD_NAME):
        if existing.exists() and not overwrite:
            raise ValueError(f"{existing}: exists (--overwrite replaces it)")
    read = [_read_file(f) for f in files]
    first_card = read[0][1]
    states = [{k[4:]: v for k, v in tensors.items() if k.startswith("ema.")} for tensors, _, _ in read]
    for f, (_, card, _), state in zip(files, read, states):
        differing = _differing_network(card, first_card)
        if differing:
            raise ValueError(f"{f}: another network than {files[0]} ({', '.join(differing)} differ)")
        if state.keys() != states[0].keys() or any(v.shape != states[0][k].shape for k, v in state.items()):
            raise ValueError(f"{f}: its EMA tensors differ from {files[0]}'s in names or shapes")
    if not states[0]:
        raise ValueError(f"{files[0]}: holds no EMA weights to average")
    mean = {k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}
    card = first_card.uncalibrated()
    card.training = {**card.training, "command": command, "averaged_from": [
        {"path": str(f), "sha256": digest, "command": c.training.get("command")}
        for f, (_, c, digest) in zip(files, read)]}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, st_save(_tensors("ema", mean), metadata={CARD_METADATA_KEY: card.to_json()}))
    write_card(card, out_dir / CARD_NAME)
    return card


def rng_states() -> dict[str, Any]:
    """RNG states as tensors, lists and numbers only, so that resume.pt loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {"python": random.getstate(),
                              "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_resume(run_dir: str | Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(Path(run_dir) / RESUME, buf.getvalue())


def load_resume(run_dir: str | Path) -> dict[str, Any]:
    """The resume state, loaded with weights_only=True: tensors, numbers, strings and containers only, so a
    crafted resume.pt cannot run code (pickle's global lookups are refused)."""
    path = Path(run_dir) / RESUME
    if not path.is_file():
        raise ValueError(f"{path}: no resume state to continue from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ValueError(f"{path}: refused or unreadable resume state (only tensors, numbers and containers are "
                         f"loaded; {reason})") from exc
