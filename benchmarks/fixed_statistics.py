"""Would one fixed set of statistics serve the default model as well as the scene's own? (An experiment.)

`landsat_ratio2` (v1) takes its GroupNorm moments, attention contexts and self-attention tokens once per scene,
over context windows the scene chooses (ddrf.scenes.tiling.context_windows). So its output over an area depends on
the scene's extent (benchmarks/scene_extent.py). Statistics fixed once, over training windows, would not:

    record    one context over training windows (never P034R032): 128-px windows, two per image (--side,
              --per-image), each recorded
              alone and their statistics averaged; the tokens of four of them taken jointly  -> an .npz
    evaluate  ddrf-eval's held-out table (reduced, ratio 2, the tiled path) with that context replayed in every
              scene instead of the scene's own
    finetune  the model trained further with such a context (re-recorded with the current weights every 50
              steps), or (--window) as it was trained, for an equal-budget comparison

    PYTHONPATH=. python benchmarks/fixed_statistics.py record [--model M] --out ctx.npz
    PYTHONPATH=. python benchmarks/fixed_statistics.py evaluate --context ctx.npz [--model M]
    PYTHONPATH=. python benchmarks/fixed_statistics.py finetune --out RUN [--window] [--steps 900]
    (then: ddrf-export onnx RUN -o RUN/model --no-fp16 --steps 1 --weights --scene-statistics --halo 96 --unrolled 1)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = "fusebox:../shared/data/landsat7_fusebox"
MODEL = "ddrf/assets/models/landsat_ratio2"
SIDE, PER_IMAGE, TOKEN_WINDOWS, RERECORD = 128, 2, 4, 50


def training_windows(card: Any, data: str, side: int = SIDE,
                     per_image: int = PER_IMAGE) -> tuple[list[tuple[np.ndarray, ...]], list[int]]:
    """Prepared (LMS, guide, noise) batches of one window each, drawn from every training image (Wald-degraded,
    each normalised by its own scene statistics), and the indices of those whose tokens are taken jointly."""
    from ddrf.data.landsat7 import _ACQUISITIONS
    from ddrf.evaluate.datasets import open_dataset
    from ddrf.radiometry import scene_radiometry
    from ddrf.runtime.fuser import InputPreparation

    prep, rng = InputPreparation(card), np.random.default_rng(0)
    training = ",".join(a for _, _, a in _ACQUISITIONS if a != "P034R032")
    windows = []
    for sample in open_dataset(data, acquisitions=training).samples("reduced"):
        pan, ms = sample.pan, sample.ms
        radiometry = scene_radiometry(card.normalisation, ms, pan[..., None])
        for _ in range(per_image):
            r = int(rng.integers(0, (pan.shape[0] - side) // 8 + 1)) * 8
            c = int(rng.integers(0, (pan.shape[1] - side) // 8 + 1)) * 8
            pair = (pan[r:r + side, c:c + side], ms[r // 2:(r + side) // 2, c // 2:(c + side) // 2])
            windows.append(prep.prepare_batch([pair], radiometry, 0, [(r, c)]))
    return windows, [int(i) for i in rng.permutation(len(windows))[:TOKEN_WINDOWS]]


def joint(windows: list[tuple[np.ndarray, ...]], picked: list[int]) -> list[np.ndarray]:
    return [np.concatenate(parts) for parts in zip(*(windows[i] for i in picked))]


def record(args: argparse.Namespace) -> None:
    from ddrf.runtime.fuser import Fuser

    fuser = Fuser(args.model, threads=2)
    windows, picked = training_windows(fuser.card, args.data, args.side, args.per_image)
    stats = np.mean([fuser.scene_context(*w)["scene_stats"] for w in windows], axis=0).astype(np.float32)
    tokens = fuser.scene_context(*joint(windows, picked))["scene_tokens"]
    np.savez(args.out, scene_stats=stats, scene_tokens=tokens)
    print(f"{args.out}: statistics averaged over {len(windows)} windows, tokens of {len(picked)}")


def use_fixed_context(path: str) -> None:
    """Every ModelEngine of this process replays the context in `path` instead of its scene's."""
    from ddrf.scenes.engines import ModelEngine

    fixed = dict(np.load(path))
    start_scene = ModelEngine.start_scene

    def fixed_start(self: ModelEngine, scene: Any, border: int = 0) -> None:
        start_scene(self, scene, border)
        self.contexts = {j: fixed for j in self.contexts}

    ModelEngine.start_scene = fixed_start  # type: ignore[method-assign]


def evaluate(args: argparse.Namespace) -> None:
    from typer.testing import CliRunner

    from ddrf.evaluate.command import app

    use_fixed_context(args.context)
    result = CliRunner().invoke(app, [args.data, "--mode", "reduced", "--methods", f"ddrf:{args.model}"])
    print(result.output)
    sys.exit(result.exit_code)


def finetune(args: argparse.Namespace) -> None:
    import torch

    import ddrf.train.loop as loop
    from ddrf.model.scene import recorded, replayed
    from ddrf.model_dir import ModelDir
    from ddrf.train.config import load_config

    windows, picked = training_windows(ModelDir.open(args.model).card, args.data)
    tensors = [tuple(torch.from_numpy(a) for a in w) for w in windows]
    tokens_in = tuple(torch.from_numpy(a) for a in joint(windows, picked))
    plain_step, held = loop.Trainer.train_step, {}

    def context(trainer: Any) -> tuple[Any, Any]:
        model = trainer.model

        def stats_of(lms: Any, guide: Any, noise: Any) -> tuple[Any, Any]:
            return recorded(model.scene_tape, lambda: trainer.diffusion.sample(model, lms, guide, 1, noise=noise))

        with torch.no_grad():
            return torch.stack([stats_of(*w)[0] for w in tensors]).mean(0), stats_of(*tokens_in)[1]

    def fixed_step(self: Any) -> float:
        if self.step % RERECORD == 0 or "context" not in held:
            held["context"] = context(self)
        return replayed(self.model.scene_tape, *held["context"], lambda: plain_step(self))

    if not args.window:
        loop.Trainer.train_step = fixed_step  # type: ignore[method-assign]
    cfg = load_config("configs/landsat7_bundled.yaml", [
        f"data.source={args.data}", f"model.init={args.model}/model.safetensors", f"optim.steps={args.steps}",
        "optim.lr=1e-4", "optim.warmup=50", "optim.ema_start=0", "optim.ema_decay=0.99", "optim.threads=1",
        "optim.seed=2", "log.checkpoint_every=100", "log.every=25"])
    start = time.perf_counter()
    result = loop.train(cfg, args.out, overwrite=True, command=" ".join(["fixed_statistics.py", *sys.argv[1:]]))
    print(f"{result.end_step} steps in {time.perf_counter() - start:.0f} s; loss {np.mean(result.losses[:25]):.4f} "
          f"(first 25) -> {np.mean(result.losses[-25:]):.4f} (last 25)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "evaluate", "finetune"))
    parser.add_argument("--model", default=MODEL, help="a model directory (finetune: its model.safetensors)")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--out", help="record: the .npz; finetune: the run folder")
    parser.add_argument("--context", help="evaluate: the .npz that record wrote")
    parser.add_argument("--side", type=int, default=SIDE, help="record: the windows' PAN side")
    parser.add_argument("--per-image", type=int, default=PER_IMAGE, help="record: windows per training image")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--window", action="store_true", help="finetune with window statistics (the control)")
    args = parser.parse_args()
    if args.action in ("record", "finetune") and not args.out or args.action == "evaluate" and not args.context:
        parser.error(f"{args.action} needs {'--context' if args.action == 'evaluate' else '--out'}")
    {"record": record, "evaluate": evaluate, "finetune": finetune}[args.action](args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
