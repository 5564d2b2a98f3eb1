"""Can a locality term teach v1 to need a 32-pixel halo instead of 96? A probe of the training term; it diverges.

    PYTHONPATH=. python benchmarks/locality_term.py --weight 300 --lr 1e-4 [--loss mse|l1] [--steps 200]
        [--stats grad|constant] [--dataset ../shared/data/landsat7_fusebox] [--init ddrf/assets/models/landsat_ratio2]

ddrf-run keeps what lies more than 3/4 of the halo inside each window (`ddrf.card.unweighted_border`). The bundled
v1 network sees past a small halo (four levels), so it needs a 96-pixel halo to be tile-invariant; a 32-pixel one
would cut its model pixels per output pixel at the 704 window from 1.89 to 1.21 and allow 128-pixel tiles.

The term: each step also draws `--batch` patches of 8 halos, predicts them whole (the target: no gradient; scene
statistics recorded over the batch, as ddrf-run's scene pass does), predicts a window of 4 halos cut from the middle
(moved by up to half a halo) replaying those statistics, and penalises the difference over what the window would
keep with that halo. `--stats grad` lets the term's gradient reach the statistics, `constant` replays them as
constants. The task loss is the trainer's own (configs/landsat7_bundled.yaml, batch 12 of 64 x 64, warm-started
from `--init`, the LR warmed up over 100 steps). Printed every 10 steps: task loss, the term (unweighted), gradient norm.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ddrf.card import unweighted_border
from ddrf.model.layers import crop
from ddrf.model.scene import recorded, replayed
from ddrf.train.config import load_config
from ddrf.train.datasets import draw_batch
from ddrf.train.loop import Dist, Trainer

WINDOW_HALOS, PATCH_HALOS = 4, 8
CONFIG = Path(__file__).parents[1] / "configs" / "landsat7_bundled.yaml"


def window_offset(halo: int, step: int, rng: np.random.Generator) -> int:
    """Where the window starts in the patch: centred, moved by up to half a halo, on the patches' step grid."""
    jitter = halo // 2 // step
    return (PATCH_HALOS - WINDOW_HALOS) * halo // 2 + step * int(rng.integers(-jitter, jitter + 1))


def locality_term(trainer: Trainer, batch: dict[str, torch.Tensor], halo: int, offset: int,
                  generator: torch.Generator, loss: str, constant: bool) -> torch.Tensor:
    model, diffusion = trainer.model, trainer.diffusion
    x0 = diffusion.clean_variable(batch["gt"], batch["lms"])
    steps = diffusion.sample_timesteps(x0.shape[0], generator)
    x_t, _ = diffusion.training_pair(x0, steps, torch.randn(x0.shape, generator=generator))
    t = steps.to(torch.float32)
    whole: list[torch.Tensor] = []  # the patches' own prediction, taken while their statistics are recorded
    stats, tokens = recorded(model.scene_tape, lambda: whole.append(model(x_t, t, batch["lms"], batch["pan"])))
    if constant:
        stats, tokens = stats.detach(), tokens.detach()
    side = WINDOW_HALOS * halo
    cut = (..., slice(offset, offset + side), slice(offset, offset + side))
    part = replayed(model.scene_tape, stats, tokens, lambda: model(x_t[cut], t, batch["lms"][cut], batch["pan"][cut]))
    border = unweighted_border(halo)
    difference = F.mse_loss if loss == "mse" else F.l1_loss
    return difference(crop(part, border), crop(whole[0].detach()[cut], border))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight", type=float, required=True)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--loss", choices=("mse", "l1"), default="mse")
    parser.add_argument("--stats", choices=("grad", "constant"), default="grad")
    parser.add_argument("--halo", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dataset", default="../shared/data/landsat7_fusebox")
    parser.add_argument("--init", default="ddrf/assets/models/landsat_ratio2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(CONFIG, [f"data.source=fusebox:{args.dataset}", f"model.init={args.init}",
                               f"optim.lr={args.lr}", "optim.warmup=100", "optim.steps=1200"])
    trainer = Trainer(cfg, Path("unused"), Dist(), None)  # its model, data, diffusion and optimiser; nothing saved
    patches: Any = copy.copy(trainer.source)  # the same prepared Wald images, drawn 8 halos wide
    patches.patch = PATCH_HALOS * args.halo
    for step in range(args.steps):
        rng, gen = np.random.default_rng(step), torch.Generator().manual_seed(step)
        trainer.model.train()
        task = trainer.diffusion.loss(trainer.model, draw_batch(trainer.source, rng, cfg.optim.batch), gen)
        offset = window_offset(args.halo, patches.step, rng)
        term = locality_term(trainer, draw_batch(patches, rng, args.batch), args.halo, offset, gen, args.loss,
                             args.stats == "constant")
        trainer.opt.zero_grad(set_to_none=True)
        (task + args.weight * term).backward()
        norm = torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), cfg.optim.grad_clip)
        trainer.opt.step()
        trainer.sched.step()
        if step % 10 == 0:
            print(f"step {step:4d}  task {float(task):.4f}  term {float(term):.3g}  grad norm {float(norm):.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
