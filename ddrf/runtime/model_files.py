"""Where a model's graphs and card live: one directory per model.

    card.json                 the model card
    encoder.onnx              condition encoder: lms, pan -> cond_*
    denoiser.onnx             step denoiser: x_t, t, cond_* -> prediction
    sampler_k{K}.onnx         optional: the K-step sampler unrolled into one graph: lms, pan, noise -> fused
    *_fp16.onnx               FP16 variants;  *.plan + *.plan.json: TensorRT engines and their sidecars
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ddrf.card import ModelCard, read_card

CARD_NAME = "card.json"


def graph_name(stage: str, precision: str = "fp32", steps: int | None = None) -> str:
    """File stem of a graph: encoder, denoiser or sampler_k{steps}, with an _fp16 suffix for FP16."""
    if stage not in ("encoder", "denoiser", "sampler"):
        raise ValueError(f"unknown graph stage {stage!r}")
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
    stem = f"sampler_k{steps}" if stage == "sampler" else stage
    return stem if precision == "fp32" else f"{stem}_fp16"


@dataclass(frozen=True)
class ModelFiles:
    root: Path
    card: ModelCard

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "ModelFiles":
        root = Path(path)
        if root.is_file() and root.name == CARD_NAME:
            root = root.parent
        if not root.is_dir():
            raise ValueError(f"{root}: not a model directory (expected a folder with {CARD_NAME} and ONNX graphs)")
        card_path = root / CARD_NAME
        if not card_path.is_file():
            raise ValueError(f"{root}: no {CARD_NAME} in the model directory")
        return cls(root, read_card(card_path))

    def graph(self, stage: str, precision: str = "fp32", steps: int | None = None, suffix: str = ".onnx") -> Path:
        path = self.root / (graph_name(stage, precision, steps) + suffix)
        if not path.is_file():
            raise ValueError(f"{path}: missing (export it with ddrf-export)")
        return path

    def unrolled_steps(self, precision: str = "fp32") -> list[int]:
        """Step counts for which an unrolled sampler graph exists."""
        tail = "_fp16.onnx" if precision == "fp16" else ".onnx"
        found = []
        for p in self.root.glob("sampler_k*" + tail):
            digits = p.name[len("sampler_k"):-len(tail)]
            if digits.isdigit():
                found.append(int(digits))
        return sorted(found)
