"""Checkpoints: safetensors weights (model + EMA, the card in the metadata), a JSON card beside them, and a resume
state (optimizer, scheduler, scaler, step, RNG states). Every file is written atomically (temp + rename).

Layout of a run directory: model.safetensors, card.json, resume.pt, config.yaml, train_log.csv.
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from ddrf.card import ModelCard, read_card, write_card
from ddrf.files import write_bytes_atomic
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
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            card = ModelCard.from_json((f.metadata() or {})[CARD_METADATA_KEY])
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise ValueError(f"{weights}: not a ddrf checkpoint ({exc})") from exc
    split = {p: {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + ".")} for p in ("model", "ema")}
    return split["model"], split["ema"], _card_of_record(weights, card)


def _card_of_record(weights: Path, embedded: ModelCard) -> ModelCard:
    """The card.json beside the weights, where there is one: an export records there what serving needs (halo,
    scene statistics, calibrated spread, step count) and the weights' metadata keeps the card they were trained
    with. Refused when it describes another network."""
    beside = weights.parent / CARD_NAME
    if not beside.is_file():
        return embedded
    card = read_card(beside)
    fields = ("model", "bands", "ratio", "normalisation", "residual", "residual_scale", "target", "schedule")
    differing = [f for f in fields if getattr(card, f) != getattr(embedded, f)]
    if differing:
        raise ValueError(f"{beside}: describes another network than {weights.name} ({', '.join(differing)} differ)")
    return card


def load_checkpoint(path: str | Path, ema: bool = True,
                    device: str | torch.device = "cpu") -> tuple["DDRF", ModelCard]:
    """A DDRF model (EMA weights by default, eval mode) and its card, from a run directory or .safetensors file."""
    from ddrf.model import DDRF, DDRFConfig

    model_state, ema_state, card = read_weights(path)
    model = DDRF(DDRFConfig.from_dict(card.model))
    state = ema_state if ema else model_state
    model.load_state_dict(state or model_state or ema_state)  # an inference checkpoint holds one set only
    return model.to(device).eval(), card


def write_inference_weights(path: str | Path, out_file: str | Path) -> None:
    """The EMA weights alone (what inference uses), with the card: half the size of a training checkpoint."""
    _, ema_state, card = read_weights(path)
    data = st_save(_tensors("ema", ema_state), metadata={CARD_METADATA_KEY: card.to_json()})
    write_bytes_atomic(out_file, data)


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
